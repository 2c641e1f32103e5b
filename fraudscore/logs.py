"""Client mistakes are not server errors: keep them out of the ERROR log.

BentoML logs every rejected request body (a pydantic ``ValidationError`` raised while parsing an
endpoint's input, answered 400) at ERROR with a full traceback. That floods alerting with the
callers' errors. This filter turns exactly those records into one INFO line with no traceback; a
``ValidationError`` from anything else (say, a response model fed a NaN) stays an ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import ValidationError

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class ClientErrorFilter(logging.Filter):
    def __init__(self, input_models: Iterable[str]) -> None:
        super().__init__()
        self.input_models = frozenset(input_models)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError) and exc.title in self.input_models:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "rejected invalid request body for %s: %d validation error(s)"
            record.args = (exc.title.removesuffix("IODescriptor"), exc.error_count())
            record.exc_info = record.exc_text = None
        return True


def install(input_models: Iterable[str]) -> None:
    """Demote body-validation errors of the endpoints whose input models are named here."""
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    for old in [f for f in logger.filters if isinstance(f, ClientErrorFilter)]:
        logger.removeFilter(old)
    logger.addFilter(ClientErrorFilter(input_models))
