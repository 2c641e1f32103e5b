"""Reading decisions: one transaction, the review queue (keyset pages), and training data.

Synchronous functions on an Engine; from async code run them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Engine, RowMapping, desc, func, literal, select, tuple_

from ..features import FEATURES
from .labels import current_labels, label_history
from .schema import decisions

MAX_PAGE = 1_000
d = decisions.c


class InvalidCursor(ValueError):
    """The cursor was not made by :func:`list_decisions` (a client error)."""


def decision_dict(row: RowMapping) -> dict[str, Any]:
    """A decisions row as a dict: the columns, with the features nested under ``features``."""
    out = {k: v for k, v in row.items() if k not in FEATURES}
    out["features"] = {f: row[f] for f in FEATURES}
    return out


def get_decision(engine: Engine, transaction_id: str) -> dict[str, Any] | None:
    """What the store knows about one transaction, or None if it was never scored.

    A transaction may be scored more than once (a client retrying): ``decision`` is the LATEST
    primary decision (None if only a shadow one exists), ``shadow`` the latest shadow decision of
    a challenger model (None without one), ``times_scored`` the number of primary decisions,
    ``label`` the current label (latest observed_at; ties: latest received) or None, and
    ``label_history`` every label received, oldest observation first (at most 100)."""
    with engine.connect() as conn:
        counts = dict(conn.execute(select(d.role, func.count()).where(d.transaction_id == transaction_id)
                                   .group_by(d.role)).all())
        if not counts:
            return None
        latest = {}
        for role in counts:
            row = conn.execute(select(decisions).where(d.transaction_id == transaction_id, d.role == role)
                               .order_by(desc(d.created_at), desc(d.id)).limit(1)).mappings().first()
            latest[role] = decision_dict(row)
        history = label_history(conn, transaction_id)
    current = max(history, key=lambda lb: (lb["observed_at"], lb["received_at"], lb["id"]), default=None)
    return {"transaction_id": transaction_id, "decision": latest.get("primary"),
            "shadow": latest.get("shadow"), "times_scored": counts.get("primary", 0),
            "label": current, "label_history": history}


def _encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = json.dumps([created_at.astimezone(UTC).isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        t, i = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = datetime.fromisoformat(t)
        # a row id is a signed 64-bit integer; a time must have a UTC one (not 0001-01-01T00:00+01:00)
        if when.tzinfo is None or not isinstance(i, int) or isinstance(i, bool) or not -(2**63) <= i < 2**63:
            raise ValueError
        return when.astimezone(UTC), i
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor("cursor is not one this API returned") from None


def list_decisions(engine: Engine, *, decision: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, model_version: str | None = None,
                   role: str | None = "primary", limit: int = 100,
                   cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of decisions, OLDEST FIRST (a review queue is worked from its oldest end), by
    (created_at, id); filters: ``decision``, ``since`` (inclusive) / ``until`` (exclusive) on
    created_at, ``model_version``, ``role`` (None: both). Returns the items and the cursor of the
    next page (None on the last page); pass it back with the same filters.

    Keyset pagination: pages never repeat or skip a row that was in the store when the first page
    was read, whatever is inserted meanwhile. A decision still in a worker's buffer when its
    time's page was read (the writer's lag: fraud_decision_log_oldest_unwritten_seconds) lands
    behind the cursor; a poller that must see everything re-reads from a minute back."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be in 1..{MAX_PAGE}")
    query = select(decisions)
    if decision is not None:
        query = query.where(d.decision == decision)
    if since is not None:
        query = query.where(d.created_at >= since)
    if until is not None:
        query = query.where(d.created_at < until)
    if model_version is not None:
        query = query.where(d.model_version == model_version)
    if role is not None:
        query = query.where(d.role == role)
    if cursor is not None:
        after, after_id = _decode_cursor(cursor)
        query = query.where(tuple_(d.created_at, d.id) > tuple_(literal(after, d.created_at.type),
                                                                 literal(after_id, d.id.type)))
    query = query.order_by(d.created_at, d.id).limit(limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    items = [decision_dict(r) for r in rows[:limit]]
    more = len(rows) > limit
    return items, (_encode_cursor(rows[limit - 1]["created_at"], rows[limit - 1]["id"]) if more else None)


class Labelled(NamedTuple):
    """Labelled primary decisions, oldest first: features (FEATURES order), label (fraud = 1),
    transaction ids, and the decision times (Unix seconds)."""

    X: np.ndarray
    y: np.ndarray
    transaction_ids: list[str]
    decided_at: np.ndarray


def labelled_decisions(engine: Engine, since: datetime | None = None) -> Labelled:
    """Training and backtest data: every transaction with a primary decision (since ``since``)
    and a label; its latest primary decision, its current label (fraud = 1)."""
    ranked = select(decisions, func.row_number().over(
        partition_by=d.transaction_id, order_by=(desc(d.created_at), desc(d.id))).label("rn")
    ).where(d.role == "primary")
    if since is not None:
        ranked = ranked.where(d.created_at >= since)
    ranked = ranked.subquery()
    cur = current_labels()
    query = (select(*(ranked.c[f] for f in FEATURES), ranked.c.transaction_id, ranked.c.created_at,
                    cur.c.label)
             .join_from(ranked, cur, cur.c.transaction_id == ranked.c.transaction_id)
             .where(ranked.c.rn == 1).order_by(ranked.c.created_at, ranked.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    n = len(FEATURES)
    X = np.array([r[:n] for r in rows], dtype=np.float64).reshape(len(rows), n)
    y = np.array([r[-1] == "fraud" for r in rows], dtype=np.int8)
    at = np.array([r[n + 1].timestamp() for r in rows], dtype=np.float64)
    return Labelled(X, y, [r[n] for r in rows], at)


class StoreUnreadable(ValueError):
    """A store URL that names no readable decision store; the message names it without a password."""


def since_argument(v: str) -> datetime:
    """``--since DATE`` of the commands that read a store: an ISO date or time, UTC unless it says."""
    try:
        when = datetime.fromisoformat(v)
    except ValueError:
        raise argparse.ArgumentTypeError("must be an ISO date or time, e.g. 2026-01-31") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def read_labelled(url: str, since: datetime | None = None) -> tuple[Labelled, str]:
    """:func:`labelled_decisions` of the store at ``url`` (the offline tools' ``--from-store``),
    and the store's name to show (no password); :class:`StoreUnreadable` when it cannot be read."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..settings import ConfigError
    from .engine import create_store_engine, describe_error, parse_url, redact, sqlite_path

    try:
        parsed = parse_url(url, "--from-store")
    except ConfigError as exc:
        raise StoreUnreadable(str(exc)) from None
    shown = f"decision store {redact(url)}"
    path = sqlite_path(parsed)
    if path is not None and not path.exists():  # never create an empty database by reading
        raise StoreUnreadable(f"{shown}: no such file")
    engine = create_store_engine(parsed)
    try:
        return labelled_decisions(engine, since), shown
    except SQLAlchemyError as exc:
        raise StoreUnreadable(f"cannot read the {shown}: {describe_error(exc)}") from None
    finally:
        engine.dispose()
