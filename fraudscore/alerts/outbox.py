"""The alert outbox (table ``alert_outbox``, fraudscore/store/schema.py): rows are added in the
transaction that records the decisions, claimed by senders, and finished as sent or dead.

Claiming is one short transaction: due rows are picked with ``FOR UPDATE SKIP LOCKED``
(PostgreSQL; several senders, in several ECS tasks, never pick the same row and never wait for
each other) or under ``BEGIN IMMEDIATE`` (SQLite: the file's write lock serialises the workers),
and leased: their ``next_attempt_at`` moves past the delivery's longest time. A sender that dies
mid-delivery leaves its rows to be claimed again when the lease runs out (at-least-once); one that
stops cleanly hands them back at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, select, update

from ..store.records import DecisionRecord, aware
from ..store.schema import alert_outbox

DESTINATIONS = ("slack", "webhook")
_c = alert_outbox.c


class Claimed(NamedTuple):
    id: int
    alert_id: str
    destination: str
    created_at: datetime
    payload: dict[str, Any]
    attempts: int  # attempts started, this one included


def alerting(min_score: int | None) -> Callable[[DecisionRecord], bool]:
    """Which decisions alert: score >= ``min_score``, or (None) the `block` verdicts. Shadow
    verdicts never alert: they decide nothing."""
    if min_score is None:
        return lambda r: r.role == "primary" and r.decision == "block"
    return lambda r: r.role == "primary" and r.score >= min_score


def payload(rec: DecisionRecord) -> dict[str, Any]:
    """The alert's fields, as the decision has them (the link is added when it is sent)."""
    return {"transaction_id": rec.transaction_id, "decision": rec.decision, "score": int(rec.score),
            "probability": float(rec.probability), "threshold": int(rec.threshold),
            "model_version": rec.model_version, "reasons": rec.reasons or [],
            "decided_at": aware(rec.created_us).isoformat().replace("+00:00", "Z")}


def outbox_hook(destinations: Sequence[str], min_score: int | None):
    """A :data:`fraudscore.store.batches.BatchHook`: one outbox row per destination for each
    alerting decision of the batch, in the batch's own transaction."""
    wanted = alerting(min_score)
    dests = tuple(destinations)

    def on_batch(conn: Connection, batch: Sequence[DecisionRecord]) -> None:
        rows = []
        for rec in batch:
            if not wanted(rec):
                continue
            alert_id, created, body = str(uuid.uuid4()), aware(rec.created_us), payload(rec)
            rows += [{"alert_id": alert_id, "destination": d, "transaction_id": rec.transaction_id,
                      "created_at": created, "payload": body, "status": "pending", "attempts": 0,
                      "next_attempt_at": created} for d in dests]
        if rows:
            conn.execute(alert_outbox.insert(), rows)

    return on_batch


def _writer(engine: Engine) -> Connection:
    return engine.connect().execution_options(sqlite_immediate=True)


def claim(engine: Engine, destination: str, limit: int, lease_s: float, now: datetime | None = None
          ) -> list[Claimed]:
    """Lease up to ``limit`` due pending rows of ``destination``, oldest due first."""
    now = now or datetime.now(UTC)
    due = (select(_c.id).where(_c.status == "pending", _c.destination == destination,
                               _c.next_attempt_at <= now)
           .order_by(_c.next_attempt_at, _c.id).limit(limit).with_for_update(skip_locked=True))
    stmt = (update(alert_outbox).where(_c.id.in_(due.scalar_subquery()))
            .values(next_attempt_at=now + timedelta(seconds=lease_s), attempts=_c.attempts + 1)
            .returning(_c.id, _c.alert_id, _c.destination, _c.created_at, _c.payload, _c.attempts))
    with _writer(engine) as conn, conn.begin():
        rows = [Claimed(*r) for r in conn.execute(stmt)]
    return sorted(rows, key=lambda r: r.id)


class Outcomes:
    """What a batch of attempts came to, written back in one transaction (:func:`finish`)."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.retry: list[tuple[int, datetime, str]] = []
        self.dead: list[tuple[int, str]] = []

    def __bool__(self) -> bool:
        return bool(self.sent or self.retry or self.dead)

    def ids(self) -> set[int]:
        return {*self.sent, *(i for i, _, _ in self.retry), *(i for i, _ in self.dead)}


def finish(engine: Engine, done: Outcomes, now: datetime | None = None) -> None:
    """Record sent, retry-at and dead rows (only rows still pending: never undo a finished row)."""
    if not done:
        return
    mine = and_(_c.id == bindparam("row_id"), _c.status == "pending")
    dead = [{"row_id": i, "error": err[:300]} for i, err in done.dead]
    with _writer(engine) as conn, conn.begin():
        if done.sent:
            conn.execute(update(alert_outbox).where(_c.id.in_(done.sent), _c.status == "pending")
                         .values(status="sent", sent_at=now or datetime.now(UTC), last_error=None))
        if done.retry:
            conn.execute(update(alert_outbox).where(mine).values(
                next_attempt_at=bindparam("due"), last_error=bindparam("error")),
                [{"row_id": i, "due": when, "error": err[:300]} for i, when, err in done.retry])
        if done.dead:
            to_dead = update(alert_outbox).where(mine).values(status="dead", last_error=bindparam("error"))
            conn.execute(to_dead, dead)


def _update(engine: Engine, ids: Iterable[int], **values: Any) -> None:
    ids = list(ids)
    if not ids:
        return
    with _writer(engine) as conn, conn.begin():
        conn.execute(update(alert_outbox).where(_c.id.in_(ids), _c.status == "pending").values(**values))


def release(engine: Engine, ids: Iterable[int], due: datetime | None = None) -> None:
    """Hand leased rows back, not attempted: due at ``due`` (default: at once)."""
    _update(engine, ids, next_attempt_at=due or datetime.now(UTC), attempts=_c.attempts - 1)


def expire(engine: Engine, max_age: timedelta, now: datetime | None = None) -> dict[str, int]:
    """Dead-letter the pending rows older than ``max_age`` that no sender holds; per destination."""
    now = now or datetime.now(UTC)
    stmt = (update(alert_outbox)
            .where(_c.status == "pending", _c.created_at < now - max_age, _c.next_attempt_at <= now)
            .values(status="dead", last_error=f"not delivered within {max_age}")
            .returning(_c.destination))
    counts: dict[str, int] = {}
    with _writer(engine) as conn, conn.begin():
        for (dest,) in conn.execute(stmt):
            counts[dest] = counts.get(dest, 0) + 1
    return counts


def pending_stats(engine: Engine) -> tuple[int, datetime | None]:
    """(pending rows, creation time of the oldest) over every destination."""
    with engine.connect() as conn:
        n, oldest = conn.execute(select(func.count(), func.min(_c.created_at))
                                 .where(_c.status == "pending")).one()
    if oldest is not None and oldest.tzinfo is None:  # min() bypasses the type on SQLite
        oldest = datetime.fromisoformat(str(oldest)).replace(tzinfo=UTC)
    return int(n), oldest


def purge(engine: Engine, sent_older_than: timedelta, dead_older_than: timedelta,
          now: datetime | None = None, batch: int = 5_000) -> int:
    """Delete (a bounded number of) sent rows past ``sent_older_than`` and dead ones past
    ``dead_older_than``; returns how many."""
    now = now or datetime.now(UTC)
    old = select(_c.id).where(
        ((_c.status == "sent") & (_c.created_at < now - sent_older_than))
        | and_(_c.status == "dead", _c.created_at < now - dead_older_than)).limit(batch)
    with _writer(engine) as conn, conn.begin():
        return conn.execute(delete(alert_outbox).where(_c.id.in_(old.scalar_subquery()))).rowcount
