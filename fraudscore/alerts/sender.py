"""The background sender: claims due outbox rows, delivers them, and records what happened.

Why a thread, not an asyncio task: like the decision log's writer it must run in processes without
an event loop (CLI, tests) and while the loop is busy scoring; its waits (database, HTTP) release
the GIL, and a receiver that hangs holds this thread only, for at most the timeouts below, never a
request. Alerts are few (blocks are a fraction of a percent of traffic), so its CPU is negligible.

Outcome of one attempt: 2xx sent; 408, 429, 5xx, a timeout or a connection error retried with
exponential backoff and full jitter (429 and 503: not before ``Retry-After``, and the whole
destination pauses that long); any other status dead-lettered (the receiver refused the alert; a
redirect is not followed: the signed body goes only where it was configured to). Rows older than
the maximum age are dead-lettered too, counted and logged at WARNING once per interval.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..ops import metrics
from ..store.engine import describe_error
from . import destinations as fmt
from . import outbox

log = logging.getLogger("bentoml.fraudscore.alerts")

TIMEOUT = httpx.Timeout(5.0, connect=2.0)  # no single wait longer than 5 s, connecting 2 s
RETRY_STATUSES = frozenset({408, 429})
MAX_RETRY_AFTER_S = 3_600.0
STARTUP_QUIET_S = 10.0


@dataclass(frozen=True)
class SenderConfig:
    urls: dict[str, str]  # destination -> URL (secret: never logged)
    secret: str | None = None  # the webhook's signing key
    link_template: str | None = None
    budget_per_minute: int = 30  # Slack messages per minute; past it, one digest a minute
    max_age: timedelta = timedelta(hours=24)
    backoff_base_s: float = 0.5  # attempt n waits uniform(0, min(cap, base * 2**(n-1)))
    backoff_max_s: float = 60.0
    poll_s: float = 0.25  # how often an idle sender looks for due rows
    batch: int = 10  # rows claimed at once per destination
    lease_s: float = 120.0  # > batch x the longest attempt (5 s connect+read): no double claim
    warn_interval_s: float = 60.0
    digest_interval_s: float = 60.0


def backoff(attempts: int, base: float, cap: float, rng: random.Random = random) -> float:  # noqa: S311
    """Full jitter (tenacity's wait_random_exponential): uniform(0, min(cap, base * 2**(n-1)))."""
    return rng.uniform(0.0, min(cap, base * 2 ** max(0, attempts - 1)))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


class AlertSender:
    """Delivers the outbox of ``engine`` to the configured destinations, in a daemon thread."""

    def __init__(self, engine: Engine, config: SenderConfig, client: httpx.Client | None = None) -> None:
        self.engine, self.cfg = engine, config
        self._client = client or httpx.Client(timeout=TIMEOUT, follow_redirects=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-sender", daemon=True)
        self._paused_until: dict[str, float] = {}  # destination -> monotonic time (Retry-After)
        self._streak: dict[str, int] = {}  # destination -> failed attempts in a row
        self._slack_sent: deque[float] = deque()  # monotonic times of Slack messages, last minute
        self._next_digest = 0.0
        self._held: list[int] = []  # rows leased and not yet finished (handed back on stop)
        self._dead_since_warning: dict[str, int] = {}
        self._warned_at = time.monotonic()
        self._store_warned_at = -float("inf")
        self._failing_since: float | None = None
        self._stats_at = 0.0
        self._purge_due = time.monotonic() + 300
        self.sent = self.failed = self.dead = 0

    def start(self) -> AlertSender:
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop after the attempt in flight (bounded by the timeouts), hand back the rows leased
        and not delivered, so another sender (or this one after a restart) takes them at once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    # --- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    busy = self.run_once()
                    self._failing_since = None
                except Exception as exc:  # the store is down, or not migrated yet: try again soon
                    busy = False
                    self._failed_pass(exc)
                    self._stop.wait(2.0)
                if not busy:
                    self._stop.wait(self.cfg.poll_s)
        finally:
            self._give_back()
            self._warn_dead(force=True)

    def _failed_pass(self, exc: Exception) -> None:
        now = time.monotonic()
        if not isinstance(exc, SQLAlchemyError):  # a bug, not the store: never hidden
            if now - self._store_warned_at >= self.cfg.warn_interval_s:
                self._store_warned_at = now
                log.exception("alert sender failed (retrying)")
            return
        if self._failing_since is None:
            self._failing_since = now
        # at start the decision log's writer is still migrating the store: quiet for a few seconds
        if (now - self._failing_since >= STARTUP_QUIET_S
                and now - self._store_warned_at >= self.cfg.warn_interval_s):
            self._store_warned_at = now
            log.warning("alert outbox unreachable for %.0f s (retrying): %s", now - self._failing_since,
                        describe_error(exc))

    def run_once(self) -> bool:
        """One pass over every destination; True when something was attempted."""
        busy = False
        self._expire_and_publish()
        for dest in self.cfg.urls:
            if self._stop.is_set():
                break
            if self._paused_until.get(dest, 0.0) > time.monotonic():
                continue
            if dest == "slack":
                busy |= self._slack()
            else:
                busy |= self._each(dest, self.cfg.batch)
        return busy

    # --- destinations ------------------------------------------------------------------------
    def _each(self, dest: str, limit: int) -> bool:
        self._give_back()
        rows = outbox.claim(self.engine, dest, limit, self.cfg.lease_s)
        self._held = [r.id for r in rows]
        done = outbox.Outcomes()
        claimed_at = time.monotonic()
        try:
            for row in rows:
                if (self._stop.is_set() or self._paused_until.get(dest, 0.0) > time.monotonic()
                        or time.monotonic() - claimed_at > self.cfg.lease_s / 2):
                    break  # the rest is handed back below, long before its lease could run out
                if dest == "slack":
                    body = fmt.slack_body(fmt.slack_text(row.payload, self.cfg.link_template))
                    headers = fmt.SLACK_HEADERS
                    self._slack_sent.append(time.monotonic())
                else:
                    body = fmt.webhook_body(row.alert_id, row.payload, self.cfg.link_template)
                    headers = fmt.webhook_headers(row.alert_id, body, self.cfg.secret or "")
                self._deliver(dest, [row], body, headers, done)
        finally:
            # one transaction for the batch's outcomes; a crash before it re-sends them after the
            # lease (at-least-once), never loses them
            outbox.finish(self.engine, done)
            finished = done.ids()
            self._held = [i for i in self._held if i not in finished]
            self._give_back(self._paused_until.get(dest, 0.0))
        return bool(rows)

    def _slack(self) -> bool:
        now = time.monotonic()
        while self._slack_sent and self._slack_sent[0] <= now - 60.0:
            self._slack_sent.popleft()
        room = self.cfg.budget_per_minute - len(self._slack_sent)
        if room > 0 and now >= self._next_digest:
            return self._each("slack", min(room, self.cfg.batch))
        if now < self._next_digest:
            return False
        # over budget: everything due goes out as one message, then the next digest in a minute
        self._give_back()
        rows = outbox.claim(self.engine, "slack", 1_000, self.cfg.lease_s)
        if not rows:
            return False
        self._held = [r.id for r in rows]
        self._next_digest = now + self.cfg.digest_interval_s
        text = fmt.digest_text([r.payload for r in rows], self.cfg.link_template)
        self._slack_sent.append(now)
        done = outbox.Outcomes()
        self._deliver("slack", rows, fmt.slack_body(text), fmt.SLACK_HEADERS, done)
        outbox.finish(self.engine, done)
        self._held = []
        return True

    def _deliver(self, dest: str, rows: list[outbox.Claimed], body: bytes, headers: dict[str, str],
                 done: outbox.Outcomes) -> None:
        ids = [r.id for r in rows]
        status, error, wait = None, "", None
        try:
            resp = self._client.post(self.cfg.urls[dest], content=body, headers=headers)
            status = resp.status_code
            error = f"HTTP {status}"
            if status in (429, 503):
                wait = retry_after(resp.headers.get("Retry-After"), time.time())
        except httpx.HTTPError as exc:  # the type only: an exception's text may hold the URL
            error = type(exc).__name__
        if status is not None and 200 <= status < 300:
            self._streak[dest] = 0
            done.sent += ids
            metrics.ALERTS_SENT.labels(destination=dest).inc(len(ids))
            self.sent += len(ids)
            return
        metrics.ALERTS_FAILED.labels(destination=dest).inc()
        self.failed += 1
        if status is None or status in RETRY_STATUSES or status >= 500:
            # The destination is failing, not this alert: the whole destination backs off (one
            # attempt per pause, not one per alert in the outbox: a receiver that is down cost
            # scoring 40% of its throughput when every row retried on its own).
            self._streak[dest] = streak = self._streak.get(dest, 0) + 1
            pause = backoff(streak, self.cfg.backoff_base_s, self.cfg.backoff_max_s)
            if wait is not None:
                pause = max(pause, wait)
            self._paused_until[dest] = max(self._paused_until.get(dest, 0.0), time.monotonic() + pause)
            delay = max(backoff(rows[0].attempts, self.cfg.backoff_base_s, self.cfg.backoff_max_s), pause)
            due = datetime.now(UTC) + timedelta(seconds=delay)
            done.retry += [(i, due, error) for i in ids]
            return
        done.dead += [(i, f"refused: {error}") for i in ids]
        self._dead(dest, len(ids), f"refused by the receiver ({error})")

    # --- housekeeping ------------------------------------------------------------------------
    def _give_back(self, until_monotonic: float = 0.0) -> None:
        """Hand back the rows held and not attempted: due at once, or when the destination's
        pause (Retry-After) ends, so no other sender calls it sooner."""
        held, self._held = self._held, []
        if held:
            wait = max(0.0, until_monotonic - time.monotonic())
            try:
                outbox.release(self.engine, held, datetime.now(UTC) + timedelta(seconds=wait))
            except Exception as exc:  # their lease runs out instead
                log.warning("alert rows not handed back (their lease runs out): %s", describe_error(exc))

    def _dead(self, dest: str, n: int, why: str) -> None:
        metrics.ALERTS_DEAD_LETTERED.labels(destination=dest).inc(n)
        self.dead += n
        key = f"{dest}: {why}"
        self._dead_since_warning[key] = self._dead_since_warning.get(key, 0) + n
        self._warn_dead()

    def _warn_dead(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._dead_since_warning and (force or now - self._warned_at >= self.cfg.warn_interval_s):
            parts = ", ".join(f"{n} ({key})" for key, n in sorted(self._dead_since_warning.items()))
            log.warning("alerts dead-lettered in the last %.0f s: %s", now - self._warned_at, parts)
            self._dead_since_warning = {}
            self._warned_at = now

    def _expire_and_publish(self) -> None:
        now = time.monotonic()
        if now - self._stats_at < 1.0:
            return
        self._stats_at = now
        for dest, n in outbox.expire(self.engine, self.cfg.max_age).items():
            self._dead(dest, n, f"older than {self.cfg.max_age}")
        self._warn_dead()
        depth, oldest = outbox.pending_stats(self.engine)
        metrics.ALERTS_OUTBOX_DEPTH.set(depth)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        metrics.ALERTS_OLDEST_PENDING_SECONDS.set(max(0.0, age))
        if now >= self._purge_due:
            deleted = outbox.purge(self.engine, timedelta(days=7), timedelta(days=30))
            self._purge_due = now + (1.0 if deleted else 3_600.0)
