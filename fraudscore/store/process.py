"""The decision log of a serving worker, written by a process of its own.

A writer *thread* in the worker holds the worker's GIL while it encodes and drives the driver, and
the event loop waits for it. Here the worker only buffers records (``record``: an append, as in
writer.py) and, once per flush interval, on its event loop, ships them to a child process; the
child runs an ordinary :class:`~.writer.DecisionLog` (batches, retries, the alert outbox hook,
retention, metrics). Measured side by side (bench/run.py, section decisionlog): with SQLite the
workers' added CPU fell from ~59 to ~20 µs a request (the child's ~29 µs runs beside them) and
the throughput loss from 19% to 13%; with PostgreSQL both ways cost the same within the noise.

Frames on the child's stdin: a 4-byte big-endian length, then a :mod:`marshal` payload (plain
tuples, strings, numbers, bytes; loading it runs no code; marshal is not hardened against crafted
input and needs not be: both ends are this module, over a pipe no one else holds). The first
frame is the configuration (the store URL travels there, never on a command line), each later one
a list of records as tuples, and a number asks the child to close within that many seconds. On
stdout the child acknowledges, every 0.1 s, how many records it is done with (a number: written,
or dropped and counted by it), and ends with its close report (a dict). If it dies, the worker
counts what the pipe took and the child never acknowledged, with what the pipe had not taken, as
dropped (``reason="writer_died"``): a decision is never lost uncounted. (What a child wrote, or
dropped and counted itself, in its last 0.1 s is counted again: an over-count, never an
under-count.) The child ignores SIGTERM and SIGINT (the worker decides when it stops) and closes
on its own when its stdin ends, so a worker killed outright still gets what it shipped written.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from ..ops import metrics
from .records import DecisionRecord
from .writer import BATCH_MAX, CloseReport
from .writer_process import Outgoing, Replies, frame, wait_fd

log = logging.getLogger("bentoml.fraudscore.store")

RESTART_AFTER_S = 5.0  # a writer process that died is started again at most this often
MAX_UNSENT_BYTES = 8 << 20  # frames not yet taken by the child; past this, records stay buffered
FRAME_RECORDS = 5_000  # records per frame at most (~2.5 MB)
# How often the worker ships its buffer, and how long the child waits for a full batch. Longer
# than the thread writer's 50 ms: the child wakes, commits and checkpoints less often. Measured
# side by side (2026-12-01, SQLite, saturated, 16 rounds): the child's CPU per request was 28.5 µs
# at 50 ms, 24.7 at 200 ms, 23.6 at 500 ms. A decision reaches the store within ~0.2 s, at most
# ~0.4 s (the worker's wait, then the child's) plus the commit.
SHIP_INTERVAL_S = 0.2
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds fraudscore/

HookSpec = tuple[str, str, list]  # module under fraudscore., function, arguments: builds a BatchHook


class ProcessDecisionLog:
    """Same calls as :class:`~.writer.DecisionLog` (``record``, ``close``, ``buffered``,
    ``dropped``) for a process with an asyncio event loop; records are written by a
    child process. ``record`` must be called on the event loop's thread (or with no loop running:
    then each call ships at once, blocking; tests and tools only)."""

    def __init__(self, url: str, *, buffer: int = 200_000, retention_days: int | None = None,
                 on_batch: HookSpec | None = None, flush_interval: float = SHIP_INTERVAL_S,
                 batch_max: int = BATCH_MAX) -> None:
        self._config = {"url": url, "buffer": buffer, "retention_days": retention_days,
                        "on_batch": list(on_batch) if on_batch else None, "batch_max": batch_max,
                        "flush_interval": flush_interval}
        self._buf: deque[DecisionRecord] = deque()
        self._bound = buffer
        self._flush_interval = flush_interval
        self._scheduled = False
        self._closed = False
        # dropped here: buffer full, after close, or lost with a child that died (what it had
        # not acknowledged as written, and what the pipe had not taken whole)
        self._dropped = {"buffer_full": 0, "shutdown": 0, "writer_died": 0}
        self._published = dict.fromkeys(self._dropped, 0)
        self._unsent = Outgoing()  # frames the pipe did not take yet
        self._replies: Replies  # the child's acknowledgements and close report (set by _start)
        self._writing_fd: int | None = None  # the fd registered with the loop while frames wait
        self._started_at = -RESTART_AFTER_S
        self._proc: subprocess.Popen | None = None
        self._start()

    # --- the child --------------------------------------------------------------------------
    def _start(self) -> None:
        self._started_at = time.monotonic()
        path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(  # noqa: S603 (our own module, our own interpreter)
            [sys.executable, "-m", "fraudscore.store.writer_process"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True, env={**os.environ, "PYTHONPATH": path})
        os.set_blocking(self._proc.stdin.fileno(), False)
        self._replies = Replies(self._proc.stdout.fileno())
        self._unsent.clear()
        self._unsent.add(frame(self._config), 0)
        self._send()

    def _alive(self) -> bool:
        """Whether the child runs; a dead one is reported, its unsent frames counted as dropped,
        and a new one started (at most once per RESTART_AFTER_S)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return True
        if proc is not None:
            held = self.unacknowledged  # by the acks (or close report) it sent before it died
            self._forget(proc)
            unsent = self._unsent.records
            self._dropped["writer_died"] += held + unsent
            self._unsent.clear()
            log.error("decision log writer process exited with code %s; %d decisions dropped (%d it had "
                      "received and not written, %d not yet sent to it)%s",
                      proc.returncode, held + unsent, held, unsent,
                      "" if self._closed else f"; a new one starts within {RESTART_AFTER_S:.0f} s")
            self._proc = None
        if time.monotonic() - self._started_at >= RESTART_AFTER_S and not self._closed:
            self._start()
            return True
        return False

    def _forget(self, proc: subprocess.Popen) -> None:
        self._unwatch()
        self._replies.close()
        with contextlib.suppress(Exception):
            from prometheus_client import multiprocess

            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # its live gauges leave with it
                multiprocess.mark_process_dead(proc.pid)
        for f in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                f.close()

    # --- the request path -------------------------------------------------------------------
    def record(self, rec: DecisionRecord) -> bool:
        """Buffer ``rec``; False (and counted) when the buffer is full or the log closed."""
        buf = self._buf
        if len(buf) >= self._bound or self._closed:
            self._dropped["shutdown" if self._closed else "buffer_full"] += 1
            return False
        buf.append(rec)
        if not self._scheduled and not self._schedule():
            self._flush()  # no loop here: ship now
        return True

    # --- shipping (on the event loop) -------------------------------------------------------
    def _flush(self) -> None:
        self._scheduled = False
        if self._closed:
            return
        self._replies.read()
        if self._alive() and self._buf and len(self._unsent) < MAX_UNSENT_BYTES:
            self._pack(MAX_UNSENT_BYTES)
            self._send()
        self._publish()  # after _alive(): a dead child's count reaches /metrics now
        if self._buf:  # try again later (the buffer's bound keeps memory in check)
            self._schedule()

    def _schedule(self) -> bool:
        """A flush one interval from now on the running loop; False when there is no loop."""
        try:
            asyncio.get_running_loop().call_later(self._flush_interval, self._flush)
        except RuntimeError:
            return False
        self._scheduled = True
        return True

    def _pack(self, limit: float) -> None:
        """Buffered records into frames of at most FRAME_RECORDS, until ``limit`` bytes wait."""
        buf, popleft = self._buf, self._buf.popleft
        while buf and len(self._unsent) < limit:
            records = [tuple(popleft()) for _ in range(min(len(buf), FRAME_RECORDS))]
            self._unsent.add(frame(records), len(records))

    def _send(self) -> None:
        """Write what the pipe takes now; the rest when the loop says it is writable."""
        proc = self._proc
        if proc is None or not self._unsent:
            self._unwatch()
            return
        fd = proc.stdin.fileno()
        try:
            n = os.write(fd, self._unsent.data)
        except BlockingIOError:
            n = 0
        except OSError as exc:  # EPIPE: the child is gone; _alive() reports it
            if exc.errno not in (errno.EPIPE, errno.EBADF):
                raise
            self._unwatch()
            return
        self._unsent.written(n)
        if self._unsent:
            self._watch(fd)
        else:
            self._unwatch()

    def _watch(self, fd: int) -> None:
        if self._writing_fd == fd:
            return
        try:
            asyncio.get_running_loop().add_writer(fd, self._send)
            self._writing_fd = fd
        except RuntimeError:  # no loop: the next flush or close writes the rest
            pass

    def _unwatch(self) -> None:
        fd, self._writing_fd = self._writing_fd, None
        if fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_writer(fd)

    def _publish(self) -> None:
        for reason, n in self._dropped.items():
            if n > self._published[reason]:
                metrics.DECISION_LOG_DROPPED.labels(reason=reason).inc(n - self._published[reason])
                self._published[reason] = n

    # --- figures ----------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Records held in this process (the child's own buffer not included)."""
        return len(self._buf) + self._unsent.records

    @property
    def unacknowledged(self) -> int:
        """Records the child has received and not yet said it is done with (as of its last
        acknowledgement, read now)."""
        self._replies.read()
        return max(0, self._unsent.taken - self._replies.acked)

    @property
    def dropped(self) -> int:
        return sum(self._dropped.values())

    # --- shutdown ---------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> CloseReport:
        """Ship what is buffered, ask the child to write it all (at most ``timeout`` seconds) and
        return its report; what did not reach the child is counted as dropped."""
        deadline = time.monotonic() + timeout
        self._closed = True
        self._unwatch()
        self._alive()  # a child that died before is counted and reported there (no restart once closed)
        proc = self._proc
        report = {"written": 0, "unwritten": 0, "dropped": 0}
        if proc is not None:
            self._pack(float("inf"))
            self._unsent.add(frame(max(0.0, deadline - time.monotonic())), 0)  # close
            fd = proc.stdin.fileno()
            while self._unsent and time.monotonic() < deadline:
                try:
                    self._unsent.written(os.write(fd, self._unsent.data))
                except BlockingIOError:
                    wait_fd(fd, select.POLLOUT, 0.1)
                except OSError:
                    break
            # the child writes for at most the time left, then answers (after its last acks)
            got = self._replies.wait_report(deadline + 5.0)
            if got is not None:
                report = got
            else:  # no report: it died or hung (and is killed below); what it held is lost
                held = self.unacknowledged
                self._dropped["writer_died"] += held
                log.error("decision log writer process gave no close report (exit code %s); %d decisions "
                          "it had received and not written dropped", proc.poll(), held)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline + 5.0 - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc is not None:
            self._forget(proc)
        self._proc = None
        unsent = len(self._buf) + self._unsent.records
        self._dropped["shutdown"] += unsent
        self._buf.clear()
        self._unsent.clear()
        self._publish()
        if unsent:
            log.warning("decision log closed with %d decisions that never reached its writer process", unsent)
        return CloseReport(report["written"], report["unwritten"] + unsent, report["dropped"] + self.dropped)
