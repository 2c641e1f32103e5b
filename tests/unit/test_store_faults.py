"""The store goes away and comes back: scoring never waits, nothing is lost or written twice while
the buffer holds, and every drop beyond it is counted and reported once per interval.

PostgreSQL behind a real TCP proxy that the tests cut (connections reset, new ones refused) and
restore."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select

from fraudscore.ops import metrics
from fraudscore.store.engine import create_store_engine
from fraudscore.store.migrate import migrate
from fraudscore.store.schema import decisions
from fraudscore.store.writer import DecisionLog
from tests.storetools import rec
from tests.tcpproxy import TcpProxy

LOGGER = "bentoml.fraudscore.store"


@pytest.fixture
def proxied(pg_url):
    """(engine through a proxy, proxy, direct engine) on a migrated schema."""
    migrate(pg_url)
    parts = urlsplit(pg_url)
    proxy = TcpProxy(parts.hostname, parts.port)
    via = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
    engine, direct = create_store_engine(via), create_store_engine(pg_url)
    yield engine, proxy, direct
    proxy.close()
    engine.dispose()
    direct.dispose()


@pytest.fixture
def warnings_of_the_log():
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _stored(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return conn.execute(select(func.count(), func.count(decisions.c.transaction_id.distinct()))).one()


def test_an_outage_is_buffered_and_written_once_when_the_store_returns(proxied, warnings_of_the_log):
    engine, proxy, direct = proxied
    log = DecisionLog(engine, migrate_first=False, flush_interval=0.01, batch_max=50)
    for i in range(200):
        assert log.record(rec(f"before-{i}"))
    assert _wait(lambda: log.written == 200, 10)

    proxy.cut()
    started = time.perf_counter()
    for i in range(600):  # scoring goes on: every record is accepted at once
        assert log.record(rec(f"during-{i}"))
        if i % 100 == 0:
            time.sleep(0.3)
    assert time.perf_counter() - started < 5
    assert _wait(lambda: log.down_since is not None, 10)
    assert log.written < 800 and log.buffered > 0
    proxy.restore()

    assert _wait(lambda: log.written == 800, 30), (log.written, log.buffered, log.last_error)
    assert log.down_since is None
    assert log.close(timeout=10) == (800, 0, 0)
    assert _stored(direct) == (800, 800)  # all of them, none twice
    messages = [r.getMessage() for r in warnings_of_the_log]
    assert any("decision store unreachable since" in m for m in messages)
    assert any("reachable again" in m for m in messages)


def test_beyond_the_bound_drops_are_counted_and_warned_once_per_interval(proxied, warnings_of_the_log):
    engine, proxy, direct = proxied
    proxy.cut()
    counter = metrics.DECISION_LOG_DROPPED.labels(reason="buffer_full")
    before = counter._value.get()
    log = DecisionLog(engine, migrate_first=False, buffer=100, batch_max=10, flush_interval=0.01,
                      warn_interval=0.5)
    refused = 0
    for burst in range(8):  # 2 s of traffic against a dead store
        refused += sum(not log.record(rec(f"b{burst}-{i}")) for i in range(60))
        time.sleep(0.25)
    assert refused >= 8 * 60 - 100 - 10  # at most the buffer and one batch in flight were kept
    assert log.dropped == refused
    proxy.restore()
    report = log.close(timeout=30)
    assert report.unwritten == 0 and report.dropped == refused
    assert _stored(direct)[0] == report.written == 8 * 60 - refused
    assert counter._value.get() - before == refused
    drop_lines = [r.getMessage() for r in warnings_of_the_log if r.getMessage().startswith("dropped ")]
    # one line per interval (2 s / 0.5 s, plus the final one at close), never one per record
    assert 2 <= len(drop_lines) <= 6, drop_lines
    assert sum(int(m.split()[1]) for m in drop_lines) == refused
    # each names the outage, also the last one, said after the store came back
    assert all(("store unreachable since" in m or "store unreachable from" in m) for m in drop_lines), \
        drop_lines


def test_close_with_the_store_down_reports_what_could_not_be_written(proxied, warnings_of_the_log):
    engine, proxy, _ = proxied
    proxy.cut()
    log = DecisionLog(engine, migrate_first=False, flush_interval=0.01)
    for i in range(30):
        log.record(rec(f"t{i}"))
    started = time.monotonic()
    report = log.close(timeout=1.5)
    assert time.monotonic() - started < 8
    assert report == (0, 30, 30)
    assert any("closed with 30 decisions unwritten" in r.getMessage() for r in warnings_of_the_log)
