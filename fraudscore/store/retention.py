"""Retention: decisions older than FRAUD_DECISION_RETENTION_DAYS go, with the labels of their
transactions once no decision of those transactions remains.

A batched delete rather than partitions: it works the same on SQLite and PostgreSQL, and each step
touches at most ``batch`` rows in a short transaction, so it never holds locks the writers wait on
for long. The writer thread runs one step at a time between its batches (writer.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, exists, select

from .schema import decisions, labels

DELETE_BATCH = 5_000


def delete_expired(engine: Engine, days: int, batch: int = DELETE_BATCH, now: datetime | None = None) -> int:
    """Delete at most ``batch`` of the oldest decisions created before ``now - days`` and the
    labels left without a decision; returns the number of decisions deleted (0: nothing is left
    to delete)."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    d, lb = decisions.c, labels.c
    opts = {"sqlite_immediate": True} if engine.dialect.name == "sqlite" else {}
    with engine.connect().execution_options(**opts) as conn, conn.begin():
        rows = conn.execute(select(d.id, d.transaction_id).where(d.created_at < cutoff)
                            .order_by(d.created_at, d.id).limit(batch)).all()
        if not rows:
            return 0
        conn.execute(delete(decisions).where(d.id.in_([r.id for r in rows])))
        tx_ids = list({r.transaction_id for r in rows})
        orphaned = ~exists().where(d.transaction_id == lb.transaction_id)
        conn.execute(delete(labels).where(lb.transaction_id.in_(tx_ids), orphaned))
    return len(rows)
