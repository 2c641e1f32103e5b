"""The decision log written by a process of its own (store/process.py): what a serving worker uses.

Real child processes, real SQLite files and the PostgreSQL on 127.0.0.1:5432 (``store_url``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fraudscore.store import process as process_mod
from fraudscore.store import writer_process
from fraudscore.store.process import ProcessDecisionLog
from fraudscore.store.queries import get_decision
from fraudscore.store.schema import alert_outbox, decisions
from tests.receiver import wait_for
from tests.storetools import rec


def _count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(decisions)).scalar_one()


def test_records_from_the_event_loop_reach_the_store_with_every_field(store, store_url):
    async def serve() -> ProcessDecisionLog:
        log = ProcessDecisionLog(store_url, flush_interval=0.01)
        for i in range(300):
            assert log.record(rec(f"tx-{i}", score=i % 100))
            if i % 50 == 0:
                await asyncio.sleep(0.02)  # the flushes run on this loop
        await asyncio.sleep(0.05)
        return log

    log = asyncio.run(serve())
    report = log.close(timeout=20)
    assert report == (300, 0, 0)
    assert _count(store) == 300
    got = get_decision(store, "tx-72")["decision"]
    assert (got["score"], got["decision"], got["key_name"], got["request_id"]) == (
        72, "block", "ops", "req-tx-72")
    assert got["reasons"] == [{"feature": "V14", "contribution": 0.1}]
    assert list(got["features"].values()) == [float(i + 72) for i in range(30)]


def test_without_an_event_loop_each_record_ships_at_once(store, store_url):
    log = ProcessDecisionLog(store_url)
    assert all(log.record(rec(f"tx-{i}")) for i in range(20))
    assert log.close(timeout=20) == (20, 0, 0)
    assert _count(store) == 20


def test_the_store_url_is_not_on_the_childs_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'secret-name.db'}"
    log = ProcessDecisionLog(url)
    try:
        cmdline = Path(f"/proc/{log._proc.pid}/cmdline").read_bytes()
        assert b"secret-name" not in cmdline and b"sqlite" not in cmdline
    finally:
        log.close(timeout=10)


def test_the_writer_process_runs_below_the_workers_cpu_priority(tmp_path):
    """The decision log takes the CPU the scoring leaves: its process is niced."""
    log = ProcessDecisionLog(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        want = min(19, os.getpriority(os.PRIO_PROCESS, 0) + writer_process.NICE)
        assert writer_process.NICE > 0
        assert wait_for(lambda: os.getpriority(os.PRIO_PROCESS, log._proc.pid) == want, timeout=10)
    finally:
        log.close(timeout=10)


def test_a_worker_gone_without_closing_still_gets_its_decisions_written(store, store_url):
    log = ProcessDecisionLog(store_url)
    for i in range(50):
        log.record(rec(f"tx-{i}"))
    child = log._proc
    child.stdin.close()  # what the kernel does when the worker dies outright
    child.wait(30)
    child.stdout.close()
    assert child.returncode == 0
    assert _count(store) == 50


def test_a_full_buffer_drops_the_newest_and_counts_them(store_url):
    log = ProcessDecisionLog(store_url, buffer=100, flush_interval=30)

    async def burst() -> list[bool]:
        return [log.record(rec(f"tx-{i}")) for i in range(150)]  # the flush is 30 s away

    accepted = asyncio.run(burst())
    assert accepted == [True] * 100 + [False] * 50 and log.dropped == 50
    report = log.close(timeout=20)
    assert report.written == 100 and report.dropped == 50


def test_a_writer_process_that_dies_is_reported_and_replaced(store, store_url, monkeypatch, caplog):
    monkeypatch.setattr(process_mod, "RESTART_AFTER_S", 0.0)
    log = ProcessDecisionLog(store_url, flush_interval=0.01)
    first = log._proc

    async def serve() -> None:
        for i in range(10):
            log.record(rec(f"before-{i}"))
        await asyncio.sleep(0.1)  # shipped
        assert wait_for(lambda: _count(store) == 10, 20)  # and written
        assert wait_for(lambda: log.unacknowledged == 0, 20)  # and acknowledged
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        with caplog.at_level(logging.ERROR, logger="bentoml.fraudscore.store"):
            for i in range(10):
                log.record(rec(f"after-{i}"))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)

    asyncio.run(serve())
    assert log._proc is not first and log._proc.poll() is None
    report = log.close(timeout=20)
    died = [r for r in caplog.records if "writer process exited" in r.getMessage()]
    assert len(died) == 1 and died[0].exc_info is None  # one line, no traceback
    assert "0 decisions dropped" in died[0].getMessage() and log.dropped == 0  # all 10 were written
    assert report == (10, 0, 0)  # the new child's figures
    assert _count(store) == 20


def test_the_childs_alert_hook_writes_outbox_rows_with_the_decisions(store, store_url):
    spec = ("fraudscore.alerts.outbox", "outbox_hook", [["ops-webhook"], None])
    log = ProcessDecisionLog(store_url, on_batch=spec)
    log.record(rec("blocked", score=90))
    log.record(rec("approved", score=5))
    assert log.close(timeout=20).written == 2
    with store.connect() as conn:
        rows = conn.execute(select(alert_outbox.c.transaction_id, alert_outbox.c.destination)).all()
    assert [tuple(r) for r in rows] == [("blocked", "ops-webhook")]


def test_a_hook_from_outside_the_package_is_refused():
    with pytest.raises(ValueError, match="refusing"):
        writer_process._hook(["os", "system", ["true"]])


def test_unsent_records_are_counted_whole_frames_and_cut_ones_alike():
    """A write to the pipe may end inside a frame: the records of every frame not wholly written
    stay counted as unsent, at any cut (counting by parsing the bytes read the cut frame's tail as
    garbage: 0, or a ValueError on the event loop)."""
    out = writer_process.Outgoing()
    sizes = [0, 200, 1, 37, 0, 500]  # the configuration frame, record frames, a close frame
    frames = [writer_process.frame([tuple(rec(f"t{k}-{i}")) for i in range(n)] if n else 1.0) for k, n in
              enumerate(sizes)]
    for f, n in zip(frames, sizes, strict=True):
        out.add(f, n)
    ends = [sum(len(f) for f in frames[:k + 1]) for k in range(len(frames))]
    total = len(out)
    written = 0
    for step in (1, 7, 4096, 3, 65_536, 1_000_000):  # partial writes of every size, to the end
        n = min(step, total - written)
        out.written(n)
        written += n
        whole = sum(1 for e in ends if e <= written)  # frames the pipe has taken whole
        assert out.records == sum(sizes[whole:])
        assert len(out) == total - written
    assert out.records == 0 and not out


def test_a_writer_that_dies_with_a_frame_half_written_is_counted_and_replaced(store, store_url, monkeypatch):
    """The child stops reading (SIGSTOP), the pipe fills and a frame is left half written; then the
    child dies. The next flush reports it without an exception, counts the records it never got
    whole as dropped, and a new child writes what comes after."""
    monkeypatch.setattr(process_mod, "RESTART_AFTER_S", 0.0)
    log = ProcessDecisionLog(store_url, flush_interval=0.01)
    first = log._proc

    async def serve() -> None:
        await asyncio.sleep(0.5)  # the child has read its configuration
        os.kill(first.pid, signal.SIGSTOP)
        for k in range(20):  # 20 frames of 100 records (~35 KB each): a pipe holds about two
            for i in range(100):
                log.record(rec(f"stuck-{k}-{i}"))
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.2)
        assert log._unsent.records > 0 and log._writing_fd is not None  # waiting on a full pipe
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        await asyncio.sleep(0.2)  # a flush sees the death, counts, restarts
        for i in range(10):
            log.record(rec(f"after-{i}"))
        await asyncio.sleep(0.3)

    asyncio.run(serve())
    assert log._proc is not first and log._proc.poll() is None
    # counted: the frames not wholly in the pipe, and the whole frames the stopped child never
    # read (the pipe took them; the child never acknowledged them)
    assert log.dropped == 2_000
    report = log.close(timeout=20)
    assert report.written == 10 and report.unwritten == 0
    with store.connect() as conn:
        ids = {r[0] for r in conn.execute(select(decisions.c.transaction_id))}
    assert {f"after-{i}" for i in range(10)} <= ids


def test_decisions_a_dying_writer_held_unwritten_are_counted_as_dropped(tmp_path, monkeypatch, caplog):
    """The store cannot be written (its folder does not exist), so the child holds what it got; it
    is killed. Every record it received and had not written is counted, as is what it had not
    been sent, under reason writer_died, in the log line and the metric."""
    from fraudscore.ops import metrics

    monkeypatch.setattr(process_mod, "RESTART_AFTER_S", 3600.0)  # no new child: counts stay put
    log = ProcessDecisionLog(f"sqlite:///{tmp_path}/missing/d.db", flush_interval=0.01)
    child = log._proc
    counter = metrics.DECISION_LOG_DROPPED.labels(reason="writer_died")
    before = counter._value.get()

    async def serve() -> None:
        for i in range(50):
            log.record(rec(f"held-{i}"))
        await asyncio.sleep(0.1)
        assert log._unsent.records == 0 and log.unacknowledged == 50  # in the child, unwritten
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        with caplog.at_level(logging.ERROR, logger="bentoml.fraudscore.store"):
            for i in range(7):
                log.record(rec(f"after-{i}"))
            await asyncio.sleep(0.1)  # a flush sees the death

    asyncio.run(serve())
    died = [r.getMessage() for r in caplog.records if "writer process exited" in r.getMessage()]
    assert len(died) == 1 and "50 decisions dropped (50 it had received and not written" in died[0]
    assert log.dropped == 50 and counter._value.get() - before == 50
    report = log.close(timeout=5)  # the 7 later ones never reached a writer: counted at close
    assert log.dropped == 57 and report.dropped == 57


def test_the_childs_replies_are_read_whole_from_partial_reads_and_junk_stops_them(caplog):
    """Acknowledgements and the close report arrive in pieces; a frame counts only once whole; the
    report acknowledges what it says was written or dropped; a frame the child never writes ends
    the reading with one warning instead of an error at every flush."""
    r, w = os.pipe()
    try:
        replies = writer_process.Replies(r)
        data = writer_process.frame(5) + writer_process.frame(12) + writer_process.frame(
            {"written": 20, "unwritten": 0, "dropped": 3})
        os.write(w, data[:7])  # less than the first frame
        assert replies.read() is None and replies.acked == 0
        os.write(w, data[7:25])  # the first two frames and a piece of the report
        assert replies.read() is None and replies.acked == 12
        os.write(w, data[25:])
        assert replies.read() == {"written": 20, "unwritten": 0, "dropped": 3} and replies.acked == 23
        with caplog.at_level(logging.WARNING, logger="bentoml.fraudscore.store"):
            os.write(w, writer_process.frame("junk") + writer_process.frame(99))
            replies.read()
            replies.read()
        assert replies.ended and replies.acked == 23
        assert [r.levelname for r in caplog.records] == ["WARNING"]
    finally:
        os.close(r)
        os.close(w)
