"""Labels: the truth about transactions, as it arrives (chargebacks, reviews, customers...).

The table keeps every label ever received. A transaction's current label is the one with the
latest ``observed_at`` (ties: latest ``received_at``, then highest id): a later observation
supersedes an earlier one, and the history stays.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Subquery, desc, func, select
from sqlalchemy.dialects import postgresql, sqlite

from .schema import decisions, labels

MAX_ITEMS = 1_000
_CHUNK = 500  # ids per IN (...) list
lb = labels.c


def current_labels() -> Subquery:
    """(transaction_id, label, source, observed_at, received_at) of each labelled transaction's
    current label."""
    ranked = select(lb.transaction_id, lb.label, lb.source, lb.observed_at, lb.received_at,
                    func.row_number().over(partition_by=lb.transaction_id,
                                           order_by=(desc(lb.observed_at), desc(lb.received_at),
                                                     desc(lb.id))).label("rn")).subquery()
    return select(ranked.c.transaction_id, ranked.c.label, ranked.c.source, ranked.c.observed_at,
                  ranked.c.received_at).where(ranked.c.rn == 1).subquery("current_labels")


def label_history(conn: Connection, transaction_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """Labels of one transaction, oldest observation first."""
    rows = conn.execute(select(labels).where(lb.transaction_id == transaction_id)
                        .order_by(lb.observed_at, lb.received_at, lb.id).limit(limit)).mappings()
    return [dict(r) for r in rows]


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    return (items[i:i + size] for i in range(0, len(items), size))


def add_labels(engine: Engine, items: Sequence[Mapping[str, Any]],
               now: datetime | None = None) -> list[dict[str, str]]:
    """Record labels; one result per item, in order: ``{"transaction_id", "status"}`` with status
    ``recorded`` (new), ``duplicate`` (the same transaction_id, label, source and observed_at was
    recorded before, or earlier in this call: nothing changes) or ``unknown_transaction`` (no
    decision has this id: nothing recorded). Idempotent; never raises on unknown ids.

    Items: ``transaction_id``, ``label`` ("fraud" | "legit"), ``source``, ``observed_at`` (an aware
    datetime), validated by the caller. At most :data:`MAX_ITEMS` per call."""
    if len(items) > MAX_ITEMS:
        raise ValueError(f"at most {MAX_ITEMS} labels per call")
    received = (now or datetime.now(UTC)).astimezone(UTC)
    keys = [(it["transaction_id"], it["label"], it["source"], it["observed_at"].astimezone(UTC))
            for it in items]
    ids = list(dict.fromkeys(k[0] for k in keys))
    opts = {"sqlite_immediate": True} if engine.dialect.name == "sqlite" else {}
    with engine.connect().execution_options(**opts) as conn, conn.begin():
        known: set[str] = set()
        for chunk in _chunks(ids):
            known.update(conn.execute(select(decisions.c.transaction_id).distinct()
                                      .where(decisions.c.transaction_id.in_(chunk))).scalars())
        new = list(dict.fromkeys(k for k in keys if k[0] in known))
        inserted: set[tuple] = set()
        if new:
            insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(labels)
            stmt = insert.on_conflict_do_nothing(index_elements=["transaction_id", "label", "source",
                                                                 "observed_at"])
            rows = [{"transaction_id": t, "label": lab, "source": s, "observed_at": o,
                     "received_at": received} for t, lab, s, o in new]
            # RETURNING names the rows this call inserted, even when another call races it
            result = conn.execute(stmt.returning(lb.transaction_id, lb.label, lb.source, lb.observed_at),
                                  rows)
            inserted = {(r[0], r[1], r[2], r[3].astimezone(UTC)) for r in result}
    out = []
    for key in keys:
        if key[0] not in known:
            status = "unknown_transaction"
        elif key in inserted:
            status = "recorded"
            inserted.discard(key)  # a repeat of the key later in this call is a duplicate
        else:
            status = "duplicate"
        out.append({"transaction_id": key[0], "status": status})
    return out
