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
import time
from importlib import import_module
from typing import Any, BinaryIO

from .records import DecisionRecord
from .writer import DecisionLog

LEN = struct.Struct(">I")
# The writer's CPU priority, below the serving workers' (nice 0): the decision log is a side
# effect, and the CPU it needs is taken when the workers wait, not while they score. Measured
# side by side (bench/run.py, 2026-12-01): with 5% of the requests being 1,000-row batches the
# single route's p99 fell from 17-27 ms to 11-16 ms (alone: 6-8 ms); with single transactions at
# saturation the throughput with the log on was no lower (SQLite 0.86 of off vs 0.82 at nice 0,
# PostgreSQL 0.87 vs 0.81), the writer's CPU a decision lower (14 vs 21 µs: it wakes less often and
# writes larger batches), and no decision dropped.
NICE = 10


def frame(value: Any) -> bytes:
    data = marshal.dumps(value)
    return LEN.pack(len(data)) + data


def read_frame(f: BinaryIO, deadline: float) -> Any:
    """One frame from the child's stdout, or None at its end or past ``deadline``."""
    fd, data = f.fileno(), b""
    while True:
        if len(data) >= 4 and len(data) >= 4 + (size := LEN.unpack_from(data)[0]):
            return marshal.loads(data[4:4 + size])  # noqa: S302 (our own frames, private pipe)
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65_536)
        if not chunk:
            return None
        data += chunk


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
