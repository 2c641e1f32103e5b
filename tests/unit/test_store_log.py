"""The decision log: record -> written -> read back, by id and in keyset pages."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fraudscore.features import FEATURES
from fraudscore.store.batches import BatchWriter
from fraudscore.store.queries import InvalidCursor, get_decision, list_decisions
from fraudscore.store.records import DecisionRecord, aware, make_record, sqlite_times, to_rows
from fraudscore.store.writer import DecisionLog
from tests.storetools import rec, write

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_recorded_decisions_are_written_and_read_back_with_every_field(store):
    log = DecisionLog(store, migrate_first=False, flush_interval=0.01)
    features = np.linspace(-3, 3, 30)
    verdict = {"transaction_id": "tx-1", "fraud_score": 72, "fraud_probability": 0.7215, "is_fraud": True,
               "decision": "block", "threshold": 60, "model_version": "fraud_detector:abc",
               "reasons": [{"feature": "V14", "contribution": 0.31}], "warnings": ["Amount out of range"]}
    assert log.record(make_record(verdict, features, route="/fraud_score/batch", key_name="shop-eu",
                                  latency_ms=2.5, request_id="r-9", review_threshold=30,
                                  created_at=T0.timestamp()))
    report = log.close(timeout=10)
    assert report == (1, 0, 0)
    got = get_decision(store, "tx-1")
    d = got["decision"]
    assert got["times_scored"] == 1 and got["shadow"] is None and got["label"] is None
    assert d["created_at"] == T0 and d["route"] == "/fraud_score/batch" and d["key_name"] == "shop-eu"
    assert (d["model_version"], d["role"], d["decision"], d["score"]) == (
        "fraud_detector:abc", "primary", "block", 72)
    assert (d["probability"], d["threshold"], d["review_threshold"]) == (0.7215, 60, 30)
    assert d["reasons"] == verdict["reasons"] and d["warnings"] == ["Amount out of range"]
    assert (d["latency_ms"], d["request_id"]) == (2.5, "r-9")
    assert list(d["features"]) == list(FEATURES) and list(d["features"].values()) == features.tolist()
    assert get_decision(store, "never-scored") is None


def test_a_transaction_scored_twice_and_by_a_shadow_model(store):
    write(store, [rec("tx", 10, at=T0), rec("tx", 80, at=T0 + timedelta(seconds=5)),
                  rec("tx", 40, at=T0 + timedelta(seconds=5), version="fraud_detector:v2", role="shadow")])
    got = get_decision(store, "tx")
    assert got["times_scored"] == 2
    assert got["decision"]["score"] == 80 and got["decision"]["role"] == "primary"  # the latest
    assert got["shadow"]["score"] == 40 and got["shadow"]["model_version"] == "fraud_detector:v2"


def test_pages_walk_the_queue_oldest_first_without_repeats_or_gaps(store):
    write(store, [rec(f"tx-{i:02d}", 45 if i % 3 else 5, at=T0 + timedelta(seconds=i)) for i in range(40)])
    write(store, [rec(f"sh-{i}", 45, at=T0 + timedelta(seconds=i), role="shadow") for i in range(5)])
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = list_decisions(store, decision="review", limit=7, cursor=cursor)
        pages += 1
        seen += [it["transaction_id"] for it in items]
        if cursor is None:
            break
        # a decision written meanwhile lands at the end of the queue, after the cursor
        if pages == 2:
            write(store, [rec("late", 45, at=T0 + timedelta(hours=1))])
    expected = [f"tx-{i:02d}" for i in range(40) if i % 3] + ["late"]
    assert seen == expected and pages == 4
    both, _ = list_decisions(store, decision="review", role=None, limit=1000)
    assert len(both) == len(expected) + 5


def test_filters(store):
    write(store, [rec("a", 5, at=T0), rec("b", 70, at=T0 + timedelta(minutes=1)),
                  rec("c", 70, at=T0 + timedelta(minutes=2), version="fraud_detector:v2"),
                  rec("d", 70, at=T0 + timedelta(minutes=3))])
    ids = lambda **kw: [i["transaction_id"] for i in list_decisions(store, **kw)[0]]  # noqa: E731
    assert ids(decision="block") == ["b", "c", "d"]
    assert ids(decision="block", model_version="fraud_detector:v1") == ["b", "d"]
    assert ids(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == ["b", "c"]
    assert ids(role="shadow") == []
    with pytest.raises(InvalidCursor):
        list_decisions(store, cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        list_decisions(store, limit=0)


def test_a_full_buffer_drops_the_newest_and_counts_every_drop(store):
    log = DecisionLog(store, buffer=100, migrate_first=False, start=False)
    accepted = [log.record(rec(f"t{i}")) for i in range(250)]
    assert accepted == [True] * 100 + [False] * 150
    assert log.dropped == 150
    log.start()
    report = log.close(timeout=10)
    assert (report.written, report.unwritten, report.dropped) == (100, 0, 150)
    kept, _ = list_decisions(store, limit=1000)
    assert [k["transaction_id"] for k in kept] == [f"t{i}" for i in range(100)]
    assert not log.record(rec("after-close")) and log.dropped == 151


def test_close_flushes_what_is_buffered(store):
    log = DecisionLog(store, migrate_first=False, flush_interval=30)  # the writer would wait 30 s
    time.sleep(0.2)
    for i in range(1_234):
        log.record(rec(f"t{i}"))
    started = time.monotonic()
    assert log.close(timeout=20) == (1_234, 0, 0)
    assert time.monotonic() - started < 15
    assert len(list_decisions(store, limit=1000)[0]) == 1000


def test_the_writer_migrates_an_empty_store_first(store_url):
    from fraudscore.store.engine import create_store_engine

    engine = create_store_engine(store_url)
    log = DecisionLog(engine, flush_interval=0.01)
    log.record(rec("first"))
    assert log.close(timeout=20).written == 1
    assert get_decision(engine, "first")["decision"]["score"] == 5
    engine.dispose()


def test_a_batch_whose_commit_may_have_failed_is_found_before_it_is_written_again(store):
    batch = [rec(f"t{i}") for i in range(3)]
    writer = BatchWriter(store)
    assert not writer.already_written(batch)
    writer.write(batch)
    assert writer.already_written(batch) and not writer.already_written([rec("t0")])


def test_records_are_cheap_values_and_become_rows():
    r = make_record({"transaction_id": "x", "fraud_score": 3, "fraud_probability": 0.031,
                     "decision": "approve", "threshold": 60, "model_version": "m"},
                    [float(i) for i in range(30)],
                    route="/fraud_score", key_name=None)
    assert isinstance(r, DecisionRecord) and isinstance(r.features, bytes) and len(r.features) == 240
    (row,) = to_rows([r], json_text=True)
    assert row[6:36] == tuple(float(i) for i in range(30)) and row[-4:-2] == (None, None)
    with pytest.raises(ValueError, match="30 features"):
        make_record({"fraud_score": 1, "fraud_probability": 0.0, "decision": "approve", "threshold": 60,
                     "model_version": "m"}, [1.0, 2.0], route="/", key_name=None)
    no_id = make_record({"fraud_score": 1, "fraud_probability": 0.0, "decision": "approve", "threshold": 60,
                         "model_version": "m"}, np.zeros(30, np.float32), route="/", key_name=None)
    assert len(no_id.transaction_id) == 36 and np.frombuffer(no_id.features).tolist() == [0.0] * 30


def test_sqlite_time_text_is_what_sqlalchemy_itself_stores():
    """The writer formats SQLite's time text itself (once per second); readers bind datetimes
    through SQLAlchemy, so the two texts must be the same or ranges and cursors would miss rows."""
    from sqlalchemy.dialects import sqlite

    bind = sqlite.DATETIME().bind_processor(sqlite.dialect())
    us = [1_764_600_000_000_000 + k for k in (0, 1, 999_999, 1_000_000, 1_000_001, 2_500_000, 1_499_999)]
    us += [0, -1, -999_999, -1_000_000, 86_400_000_000 * 365 * 30 + 123, 7]  # unordered, before 1970
    assert sqlite_times(us) == [bind(aware(t).replace(tzinfo=None)) for t in us]


def test_optional_fields_may_be_empty(store):
    verdict = {"transaction_id": "bare", "fraud_score": 1, "fraud_probability": 0.0, "decision": "approve",
               "threshold": 60, "model_version": "m"}
    write(store, [make_record(verdict, np.zeros(30), route="/v1/fraud-score", key_name=None,
                              created_at=T0.timestamp())])
    d = get_decision(store, "bare")["decision"]
    optional = ("key_name", "review_threshold", "reasons", "warnings", "latency_ms", "request_id")
    assert [d[k] for k in optional] == [None] * 6


@pytest.mark.parametrize("method", ["copy", "copy_rows", "insert"])
def test_every_postgresql_write_method_stores_the_same_values(pg_url, method):
    from fraudscore.store import pgcopy
    from fraudscore.store.engine import create_store_engine
    from fraudscore.store.migrate import migrate
    from fraudscore.store.schema import DECISION_COLUMNS

    assert sorted(pgcopy.COLUMNS) == sorted(DECISION_COLUMNS)
    engine = create_store_engine(pg_url)
    migrate(engine=engine)
    feats = np.array([1e-300, -0.0, 1e300, 123456.789, *range(26)], dtype=np.float64)
    verdict = {"transaction_id": "naïve-€-1", "fraud_score": 100, "fraud_probability": 0.999999,
               "decision": "block", "threshold": 60, "model_version": "m:1", "reasons": {"ü": [1, 2.5]},
               "warnings": []}
    BatchWriter(engine, method=method).write([
        make_record(verdict, feats, route="/x", key_name="ключ", latency_ms=0.001, request_id="r",
                    review_threshold=30, created_at=T0.timestamp() + 0.000001)])
    d = get_decision(engine, "naïve-€-1")["decision"]
    engine.dispose()
    assert list(d["features"].values()) == feats.tolist()
    assert d["created_at"] == T0 + timedelta(microseconds=1)
    assert (d["key_name"], d["reasons"], d["warnings"]) == ("ключ", {"ü": [1, 2.5]}, [])
    assert d["latency_ms"] == 0.001
    assert (d["score"], d["threshold"], d["review_threshold"], d["probability"]) == (100, 60, 30, 0.999999)


def test_an_sqlite_store_that_cannot_be_created_is_an_unreachable_store(tmp_path):
    from fraudscore.store.engine import create_store_engine

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    engine = create_store_engine(f"sqlite:///{blocker}/data/store.db")  # no exception here
    log = DecisionLog(engine, flush_interval=0.01)
    assert log.record(rec("a"))
    report = log.close(timeout=0.5)
    assert report == (0, 1, 1) and "Error" in log.last_error
    engine.dispose()
