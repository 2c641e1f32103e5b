"""Log lines: JSON with the record's fields at the top level, BentoML's request id kept out of
ours, floods throttled with their fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from fraudscore.ops.logs import JsonLines, Throttled, configure
from fraudscore.settings import ConfigError, get_settings, load_settings


@pytest.fixture
def bentoml_handler():
    """A handler set up the way `bentoml serve` sets up its workers' (its record filter included),
    on the `bentoml` logger; removed afterwards."""
    from bentoml._internal.log import TraceRecordFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceRecordFilter())
    logger = logging.getLogger("bentoml")
    saved = logger.handlers, logger.level, logger.propagate
    logger.handlers, logger.propagate = [handler], False
    logger.setLevel(logging.INFO)
    yield stream
    logger.handlers, logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_has_the_extra_fields_at_the_top_level(bentoml_handler):
    configure("json")
    log = logging.getLogger("bentoml.fraudscore")
    log.info("POST %s -> %d", "/fraud_score", 403, extra={
        "request_id": "req-1", "key": None, "route": "/fraud_score", "status": 403, "latency_ms": 1.25})
    (line,) = _lines(bentoml_handler)
    assert line["message"] == "POST /fraud_score -> 403"
    assert line["level"] == "INFO" and line["logger"] == "bentoml.fraudscore" and "time" in line
    # ours, not BentoML's tracing span id, which its record filter writes over request_id
    assert line["request_id"] == "req-1"
    assert line["route"] == "/fraud_score" and line["status"] == 403 and line["latency_ms"] == 1.25
    assert "key" not in line  # None fields are left out
    assert not {"levelname_bracketed", "trace_msg", "args", "msg"} & line.keys()


def test_configure_twice_wraps_bentoml_filter_once(bentoml_handler):
    configure("json")
    configure("json")
    (handler,) = logging.getLogger("bentoml").handlers
    assert len(handler.filters) == 1
    logging.getLogger("bentoml.fraudscore").info("plain")  # no request id of ours: none shown
    (line,) = _lines(bentoml_handler)
    assert "request_id" not in line and line["message"] == "plain"


def test_exception_lines_carry_the_traceback(bentoml_handler):
    configure("json")
    try:
        raise RuntimeError("model exploded")
    except RuntimeError:
        logging.getLogger("bentoml.fraudscore").exception("failed", extra={"request_id": "r9"})
    (line,) = _lines(bentoml_handler)
    assert line["level"] == "ERROR" and line["request_id"] == "r9"
    assert "RuntimeError: model exploded" in line["exc_info"]


def test_text_leaves_bentoml_format_alone(bentoml_handler):
    handler = logging.getLogger("bentoml").handlers[0]
    before = handler.formatter
    configure("text")
    assert handler.formatter is before and not isinstance(handler.formatter, JsonLines)


def test_unknown_format_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="log format"):
        configure("xml")
    monkeypatch.setenv("FRAUD_LOG_FORMAT", "xml")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="FRAUD_LOG_FORMAT"):
        load_settings()
    get_settings.cache_clear()


def test_throttled_keeps_fields_and_counts_held_back(bentoml_handler, monkeypatch):
    configure("json")
    now = [100.0]
    monkeypatch.setattr("fraudscore.ops.logs.time.monotonic", lambda: now[0])
    flood = Throttled(logging.getLogger("bentoml.fraudscore"), logging.INFO, 10.0)
    for i in range(5):
        flood.emit("429 for %s", "k", extra={"request_id": f"r{i}", "status": 429})
    now[0] += 11
    flood.emit("429 for %s", "k", extra={"request_id": "r5", "status": 429})
    first, second = _lines(bentoml_handler)
    assert first["request_id"] == "r0" and "held_back" not in first
    assert second["request_id"] == "r5" and second["held_back"] == 4 and second["status"] == 429
