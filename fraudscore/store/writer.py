"""The decision log: verdicts leave the request path through a bounded buffer, and one background
thread writes them to the store in batches.

Why a thread, not an asyncio task: every database call blocks, the writer must keep going while
the event loop is busy (and in processes without one: CLI, tests), and psycopg and sqlite3 release
the GIL while they wait on the network or the disk. What it costs the event loop when it does hold
the GIL is measured in bench/store.py (README, "The decision store").

When the buffer is full, the NEWEST record is dropped: ``record`` then returns False, so whatever
it accepted is never thrown away later, and an outage leaves one gap from the moment the buffer
filled until the store answered again, not holes scattered over the buffered span.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError
from tenacity import RetryCallState, Retrying, retry_if_not_exception_type, wait_random_exponential

from ..ops import metrics
from .batches import BatchHook, BatchWriter
from .engine import describe_error
from .migrate import migrate
from .records import DecisionRecord
from .retention import delete_expired

log = logging.getLogger("bentoml.fraudscore.store")

BATCH_MAX = 500  # records per transaction (bench/store.py: larger gains no throughput, costs loop latency)
FLUSH_INTERVAL_S = 0.05  # the writer's pause when the buffer holds less than a batch
WARN_INTERVAL_S = 10.0  # at most one warning per interval about drops or an unreachable store
RETENTION_INTERVAL_S = 3_600.0
# A writer thread holding the GIL makes the event loop wait up to the switch interval (5 ms by
# default) before it can run; at 0.2 ms the loop's p99 lateness grew by 0.4 ms at 5,000 decisions/s
# (0.8 ms at Python's default; bench/store.py). It is process-wide, so it is only ever lowered.
SWITCH_INTERVAL_S = 0.0002


class CloseReport(NamedTuple):
    written: int  # records written over the log's life
    unwritten: int  # records still buffered when the timeout ran out (counted as dropped)
    dropped: int  # every record never written, unwritten ones included


class DecisionLog:
    """Bounded buffer + background writer. ``record`` is the only call on the request path."""

    def __init__(self, engine: Engine, *, buffer: int = 200_000, retention_days: int | None = None,
                 on_batch: BatchHook | None = None, batch_max: int = BATCH_MAX,
                 flush_interval: float = FLUSH_INTERVAL_S, warn_interval: float = WARN_INTERVAL_S,
                 retention_interval: float = RETENTION_INTERVAL_S, migrate_first: bool = True,
                 method: str = "copy", start: bool = True) -> None:
        self._buf: deque[DecisionRecord] = deque()
        self._bound = buffer
        self._sink = BatchWriter(engine, on_batch, method)
        self._engine = engine
        self._batch_max, self._flush_interval = batch_max, flush_interval
        self._warn_interval, self._retention_interval = warn_interval, retention_interval
        self._retention_days, self._migrate_first = retention_days, migrate_first
        self._lock = threading.Lock()  # only on the drop path
        self._dropped = {"buffer_full": 0, "unwritable": 0, "shutdown": 0}
        self._published = dict.fromkeys(self._dropped, 0)
        self._warned_after_close = False
        self.written = 0
        self._written_published = 0
        self._pending: list[DecisionRecord] | None = None
        self._closing = threading.Event()
        self._closed = False
        self._deadline = float("inf")
        self.down_since: datetime | None = None
        self._outage: datetime | None = None  # an outage during the current warning interval
        self.last_error: str | None = None
        self._warned_at = time.monotonic()
        self._warned_drops = 0
        self._failure_logged_at = -float("inf")
        # the first clean-up a while after start, spread so workers do not start it together
        self._retention_due = time.monotonic() + 60 + random.uniform(0, 60)  # noqa: S311
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        if sys.getswitchinterval() > SWITCH_INTERVAL_S:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread.start()

    # --- the request path -------------------------------------------------------------------
    def record(self, rec: DecisionRecord) -> bool:
        """Buffer ``rec`` for writing; False (and counted) when the buffer is full or the log
        closed. O(1), never blocks, never raises."""
        buf = self._buf
        if len(buf) < self._bound and not self._closed:
            buf.append(rec)
            return True
        with self._lock:
            if not self._closed:
                self._dropped["buffer_full"] += 1
                return False
            self._dropped["shutdown"] += 1
            if not self._warned_after_close:
                self._warned_after_close = True
                log.warning("decisions recorded after the decision log was closed are dropped (counted)")
        return False

    # --- figures ----------------------------------------------------------------------------
    @property
    def buffered(self) -> int:
        return len(self._buf) + len(self._pending or ())

    @property
    def dropped(self) -> int:
        return sum(self._dropped.values())

    @property
    def accounted(self) -> int:
        """Records written, or dropped and counted in the metrics already (what a writer process
        acknowledges to its worker: the rest would be lost uncounted if it died now)."""
        return self._written_published + sum(self._published.values())

    # --- shutdown ---------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> CloseReport:
        """Write what is buffered, waiting at most ``timeout`` seconds (retrying a store that is
        down until then); what is left is counted as dropped and logged once."""
        self._deadline = time.monotonic() + timeout
        self._closed = True
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 5.0)
        self._warn_drops(time.monotonic())  # drops since the last warning
        unwritten = self.buffered
        if unwritten:
            with self._lock:
                self._dropped["shutdown"] += unwritten
            self._buf.clear()
            self._pending = None
            since = self.down_since.isoformat(timespec="seconds") if self.down_since else "?"
            log.warning("decision log closed with %d decisions unwritten (store unreachable since %s: %s)",
                        unwritten, since, self.last_error)
        self._publish()
        return CloseReport(self.written, unwritten, self.dropped)

    # --- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self._migrate_first:
                self._retrying(lambda: migrate(engine=self._engine))
            while True:
                if self._pending is None and self._buf:
                    popleft = self._buf.popleft
                    self._pending = [popleft() for _ in range(min(len(self._buf), self._batch_max))]
                if self._pending:
                    if not self._write(self._pending):
                        return  # closing and out of time
                    self._pending = None
                elif self._closing.is_set():
                    return
                self._housekeeping()
                if len(self._buf) < self._batch_max and not self._closing.is_set():
                    self._closing.wait(self._flush_interval)
        except Exception:  # a bug here must not pass silently; records stay counted as buffered
            log.exception("decision log writer stopped")
        finally:
            self._sink.close()
            self._publish()

    def _write(self, batch: Sequence[DecisionRecord]) -> bool:
        started = time.perf_counter()

        def attempt() -> None:
            if self._sink.commit_uncertain and self._sink.already_written(batch):
                self._sink.commit_uncertain = False
                return
            self._sink.write(batch)

        try:
            if not self._retrying(attempt):
                return False
        except (DataError, IntegrityError) as exc:  # this batch can never be written: count it
            with self._lock:
                self._dropped["unwritable"] += len(batch)
            log.error("%d decisions cannot be stored and were dropped: %s", len(batch), describe_error(exc))
            return True
        metrics.DECISION_LOG_BATCH_SECONDS.observe(time.perf_counter() - started)
        self.written += len(batch)
        if self.down_since is not None:
            log.warning("decision store reachable again (unreachable since %s)", self.down_since.isoformat())
            self.down_since = None
        return True

    def _retrying(self, fn) -> bool:
        """Run ``fn`` until it succeeds (True), backing off with jitter, or until the log is
        closing and its deadline has passed (False)."""
        retrying = Retrying(
            retry=retry_if_not_exception_type((DataError, IntegrityError)),
            wait=wait_random_exponential(multiplier=0.1, max=5.0),
            stop=lambda _state: self._closing.is_set() and time.monotonic() >= self._deadline,
            sleep=self._sleep, before_sleep=self._failed, retry_error_callback=lambda _s: False,
            reraise=True,
        )
        result = retrying(fn)
        return result is not False

    def _failed(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        metrics.DECISION_LOG_WRITE_ERRORS.inc()
        self.last_error = describe_error(exc) if exc else "unknown"
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = datetime.now(UTC)
        self._outage = self._outage or self.down_since
        if now - self._failure_logged_at >= self._warn_interval:
            self._failure_logged_at = now
            log.warning("decision store unreachable since %s (%d buffered, retrying): %s",
                        self.down_since.isoformat(timespec="seconds"), self.buffered, self.last_error)

    def _sleep(self, seconds: float) -> None:
        # sleep in short slices, keeping metrics and drop warnings current during an outage, and
        # never past the close deadline
        end = min(time.monotonic() + seconds, self._deadline)
        while (left := end - time.monotonic()) > 0:
            self._housekeeping(store_ok=False)
            if self._closing.is_set():  # shutting down: retry within 0.5 s, not after a long backoff
                end = min(end, time.monotonic() + 0.5)
                time.sleep(min(left, 0.1))
            else:
                self._closing.wait(min(left, 0.5))

    def _housekeeping(self, store_ok: bool = True) -> None:
        self._publish()
        now = time.monotonic()
        if now - self._warned_at >= self._warn_interval:
            self._warn_drops(now)
        if (store_ok and self._retention_days and now >= self._retention_due
                and not self._closing.is_set()):
            self._retain()

    def _warn_drops(self, now: float) -> None:
        dropped = self._dropped["buffer_full"]
        if dropped > self._warned_drops:
            # the cause while they were dropped: the store may be back by the time this is said
            if self.down_since is not None:
                cause = f"store unreachable since {self.down_since.isoformat(timespec='seconds')}"
            elif self._outage is not None:
                since = self._outage.isoformat(timespec="seconds")
                cause = f"store unreachable from {since} (reachable again)"
            else:
                cause = "the store is slower than the traffic"
            log.warning("dropped %d decisions in the last %.0f s (buffer of %d full): %s",
                        dropped - self._warned_drops, now - self._warned_at, self._bound, cause)
        self._warned_at, self._warned_drops, self._outage = now, dropped, self.down_since

    def _retain(self) -> None:
        try:
            deleted = delete_expired(self._engine, self._retention_days)
        except Exception as exc:  # retention waits for the next interval; writing goes on
            log.warning("decision retention failed, retrying later: %s", describe_error(exc))
            deleted = 0
        # one bounded step per pass between batches: more soon while rows remain, else wait
        self._retention_due = time.monotonic() + (1.0 if deleted else self._retention_interval)

    def _publish(self) -> None:
        buf, pending = self._buf, self._pending
        metrics.DECISION_LOG_BUFFERED.set(len(buf) + len(pending or ()))
        oldest = pending[0] if pending else (buf[0] if buf else None)
        age = time.time() - oldest.created_us / 1e6 if oldest else 0.0
        metrics.DECISION_LOG_OLDEST_SECONDS.set(max(0.0, age))
        if self.written > self._written_published:
            metrics.DECISION_LOG_WRITTEN.inc(self.written - self._written_published)
            self._written_published = self.written
        for reason, n in list(self._dropped.items()):
            if n > self._published[reason]:
                metrics.DECISION_LOG_DROPPED.labels(reason=reason).inc(n - self._published[reason])
                self._published[reason] = n
