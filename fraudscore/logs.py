"""Client mistakes are not server errors: keep them out of the ERROR log.

BentoML logs every rejected request body (a pydantic ``ValidationError``, answered 400) at ERROR
with a full traceback. That floods alerting with the callers' errors and writes their input's
shape to the log. This filter turns those records into one INFO line with no traceback.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"


class ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = "rejected invalid request body on %s [%s]: %d validation error(s)"
            record.args = (*(record.args or ())[:2], exc.error_count())
            record.exc_info = record.exc_text = None
        return True


def install() -> None:
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
