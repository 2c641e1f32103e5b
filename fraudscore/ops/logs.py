"""Logging: the line format (text or JSON) and one line per interval for events that come in floods.

``configure(fmt)`` runs when the service module is imported, in every worker of ``bentoml serve``
(BentoML has configured its handlers by then). With ``FRAUD_LOG_FORMAT=json`` every line of the
process, BentoML's and uvicorn's included, becomes one JSON object (python-json-logger):

    {"time": "...", "level": "INFO", "logger": "bentoml.fraudscore", "message": "...",
     "component": "entry_service:FraudScorer:1", ...the record's `extra` fields, top level}

The edge's line per answer that is not a 2xx carries ``request_id``, ``key`` (the key's NAME, never
the key), ``route`` (the route template, or ``other``), ``method``, ``status`` and ``latency_ms``;
a model event carries ``event`` (``model_loaded``, ``model_unavailable``, ...) and ``model_version``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
# Attributes BentoML's record filter adds for its text format: redundant in a JSON line.
_BENTOML_TEXT_ATTRS = ("levelname_bracketed", "trace_msg", "service_name")


class JsonLines(JsonFormatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, then every ``extra``
    field of the record at the top level; fields whose value is None are left out."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}", style="{", timestamp="time",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, "taskName", *_BENTOML_TEXT_ATTRS],
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        component = log_data.get("component")  # BentoML's "[entry_service:FraudScorer:1]"
        if isinstance(component, str):
            log_data["component"] = component.strip("[]")
        return {k: v for k, v in log_data.items() if v is not None}


def _keep_own_request_id(handler: logging.Handler) -> None:
    """BentoML's record filter sets ``record.request_id`` to its tracing span id (None when not
    traced), over the edge's X-Request-ID given as ``extra``: keep ours when a record has one."""
    for index, original in enumerate(handler.filters):
        if getattr(original, "_fraudscore", False) or not hasattr(original, "filter"):
            continue

        class KeepRequestId(logging.Filter):
            _fraudscore = True

            def filter(self, record: logging.LogRecord, _inner=original) -> bool | logging.LogRecord:
                ours = record.__dict__.get("request_id")
                result = _inner.filter(record)
                if ours is not None:
                    record.request_id = ours
                return result

        handler.filters[index] = KeepRequestId()


def configure(fmt: str) -> None:
    """Use ``fmt`` ("text": BentoML's own lines, unchanged; "json": :class:`JsonLines`) for every
    handler of the ``bentoml`` logger and of the root logger. Idempotent."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "text":
        return
    handlers = {*logging.getLogger("bentoml").handlers, *logging.getLogger().handlers}
    if not handlers:  # not under bentoml serve (a script, a test): one handler on stderr
        handler = logging.StreamHandler()
        logging.getLogger().addHandler(handler)
        handlers = {handler}
    for handler in handlers:
        handler.setFormatter(JsonLines())
        _keep_own_request_id(handler)


class Throttled:
    """``emit(msg, *args, extra=...)`` logs at most once per ``interval_s``; the next line says
    how many were held back. For client-caused and outage events, which an attacker or a dead
    dependency could otherwise turn into thousands of lines a second."""

    def __init__(self, logger: logging.Logger, level: int, interval_s: float) -> None:
        self._log, self._level, self._interval = logger, level, interval_s
        self._next = 0.0
        self._held = 0

    def emit(self, msg: str, *args: object, extra: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        self._next = now + self._interval
        if self._held:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, self._held, self._interval)
            extra = {**(extra or {}), "held_back": self._held}
            self._held = 0
        self._log.log(self._level, msg, *args, extra=extra)
