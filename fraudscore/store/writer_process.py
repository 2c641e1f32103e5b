"""The decision log's writer process (``python -m fraudscore.store.writer_process``), which a
serving worker starts and feeds (store/process.py, where the protocol is described), and the
frames both ends use."""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import select
import signal
import struct
import sys
import threading
import time
from collections import deque
from importlib import import_module
from typing import Any, BinaryIO

from .records import DecisionRecord
from .writer import DecisionLog

log = logging.getLogger("bentoml.fraudscore.store")
LEN = struct.Struct(">I")
# The writer's CPU priority, below the serving workers' (nice 0): the decision log is a side
# effect, and the CPU it needs is taken when the workers wait, not while they score. Measured
# side by side (bench/run.py, 2026-12-01): with 5% of the requests being 1,000-row batches the
# single route's p99 fell from 17-27 ms to 11-16 ms (alone: 6-8 ms); with single transactions at
# saturation the throughput with the log on was no lower (SQLite 0.86 of off vs 0.82 at nice 0,
# PostgreSQL 0.87 vs 0.81), the writer's CPU a decision lower (14 vs 21 µs: it wakes less often and
# writes larger batches), and no decision dropped.
NICE = 10
# How often the child tells the worker how many of its records it is done with (written, or
# dropped and counted here), so that a child which dies is known to have lost the rest.
ACK_INTERVAL_S = 0.1


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return LEN.pack(len(data)) + data


def _acknowledge(dlog: DecisionLog, fd: int, stop: threading.Event) -> None:
    """Every ACK_INTERVAL_S, when it changed: a frame holding the number of records received that
    are written or counted as dropped here. The fd is non-blocking and a frame is smaller than
    PIPE_BUF, so a write is whole or not at all: a worker that does not read costs a skipped ack,
    never a stuck writer or a cut frame."""
    done = 0
    while not stop.wait(ACK_INTERVAL_S):
        now = dlog.accounted
        if now != done:
            try:
                os.write(fd, frame(now))
                done = now
            except BlockingIOError:
                pass
            except OSError:  # the worker is gone
                return


class Replies:
    """The child's stdout as the worker reads it, never blocking: acknowledgements (a number of
    records the child is done with: written, or dropped and counted by it) and, at the end, its
    close report (a dict)."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self.acked = 0
        self.ended = False  # the child closed its end (it exited), or its stdout is closed here
        self.report: dict | None = None  # its close report, once read
        self._data = bytearray()

    def read(self) -> dict | None:
        """Take what is there: acks update ``acked``; returns the close report once it came (its
        written and dropped records are then all acknowledged)."""
        while not self.ended:
            try:
                chunk = os.read(self.fd, 65_536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.ended = True
            self._data += chunk
        buf = self._data
        while len(buf) >= 4 and len(buf) >= 4 + (size := LEN.unpack_from(buf)[0]):
            try:
                value = marshal.loads(bytes(buf[4:4 + size]))  # noqa: S302 (our own frames, private pipe)
            except (EOFError, ValueError, TypeError):
                value = None
            del buf[:4 + size]
            if isinstance(value, dict) and {"written", "dropped"} <= value.keys():
                self.report = value
                self.acked = max(self.acked, int(value["written"]) + int(value["dropped"]))
            elif isinstance(value, int) and not isinstance(value, bool):
                self.acked = max(self.acked, value)
            else:  # not what the child writes: stop reading; what it held counts as unacknowledged
                log.warning("decision log writer process wrote an unexpected frame; its acknowledgements "
                            "are no longer read")
                self.close()
                break
        return self.report

    def close(self) -> None:
        """Read no more (the worker closes the fd itself; its number may be reused)."""
        self.ended = True
        self._data.clear()

    def wait_report(self, deadline: float) -> dict | None:
        """The close report, waiting until ``deadline`` (monotonic); None if the child ended or
        the time ran out without one."""
        while (report := self.read()) is None and not self.ended:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            wait_fd(self.fd, select.POLLIN, left)
        return report


def wait_fd(fd: int, events: int, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for ``events`` on ``fd`` (poll: select() fails on fds of
    1024 and more, which a worker holding many connections hands out)."""
    poller = select.poll()
    poller.register(fd, events)
    poller.poll(max(0, int(timeout * 1000)))


class Outgoing:
    """Frames the pipe has not taken yet, and how many records they hold. A write may end inside a
    frame: its records still count as unsent (the child has not got them whole), and the rest of
    the frame is the next thing written. (Counting by parsing the bytes failed there: the cut
    frame's tail read as garbage.)"""

    def __init__(self) -> None:
        self.data = bytearray()
        self._frames: deque[list[int]] = deque()  # [bytes not yet written, records], in order
        self.records = 0
        self.taken = 0  # records of the frames the pipe took whole, since the last clear

    def add(self, data: bytes, records: int) -> None:
        self.data += data
        self._frames.append([len(data), records])
        self.records += records

    def written(self, n: int) -> None:
        """The pipe took the first ``n`` bytes."""
        del self.data[:n]
        frames = self._frames
        while n:
            head = frames[0]
            taken = min(n, head[0])
            head[0] -= taken
            n -= taken
            if head[0] == 0:
                frames.popleft()
                self.records -= head[1]
                self.taken += head[1]

    def clear(self) -> None:
        self.taken = 0
        self.data.clear()
        self._frames.clear()
        self.records = 0

    def __len__(self) -> int:
        return len(self.data)


def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    data = f.read(n)
    return data if data is not None and len(data) == n else None


def _hook(spec: list | None):
    if not spec:
        return None
    module, name, args = spec
    if not module.startswith("fraudscore."):  # only our own code builds hooks
        raise ValueError(f"refusing batch hook from {module!r}")
    return getattr(import_module(module), name)(*args)


def child_main(stdin: BinaryIO, stdout: BinaryIO) -> int:
    from .engine import create_store_engine

    head = _read_exact(stdin, 4)
    payload = None if head is None else _read_exact(stdin, LEN.unpack(head)[0])
    if payload is None:  # the worker went away before it said anything
        return 0
    config = marshal.loads(payload)  # noqa: S302 (our own frames, private pipe)
    engine = create_store_engine(config["url"])
    dlog = DecisionLog(engine, buffer=config["buffer"], retention_days=config["retention_days"],
                       on_batch=_hook(config["on_batch"]), batch_max=config["batch_max"],
                       flush_interval=config["flush_interval"])
    make = DecisionRecord._make
    record = dlog.record
    timeout = 10.0  # when the worker is gone without a word (its stdin ended)
    out_fd = stdout.fileno()
    os.set_blocking(out_fd, False)
    stop = threading.Event()
    acks = threading.Thread(target=_acknowledge, args=(dlog, out_fd, stop), name="acks", daemon=True)
    acks.start()
    try:
        while (head := _read_exact(stdin, 4)) is not None:
            payload = _read_exact(stdin, LEN.unpack(head)[0])
            if payload is None:
                break
            message = marshal.loads(payload)  # noqa: S302 (our own frames, private pipe)
            if not isinstance(message, list):  # close, within that many seconds
                timeout = float(message)
                break
            for values in message:
                record(make(values))
    finally:
        report = dlog.close(timeout)
        engine.dispose()
        stop.set()
        acks.join()
        os.set_blocking(out_fd, True)  # the worker waits for this one frame
        with contextlib.suppress(OSError):
            stdout.write(frame(report._asdict()))
            stdout.flush()
    return 0


def _configure_logging() -> None:
    """Lines on the worker's stderr, in the worker's format (FRAUD_LOG_FORMAT)."""
    from ..ops import logs
    from ..settings import load_settings

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] [decision-log-writer] %(name)s: %(message)s")
    logs.configure(load_settings().log_format)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(NICE)
    _configure_logging()
    sys.exit(child_main(sys.stdin.buffer, sys.stdout.buffer))
