"""Quality of the decisions in a sliding window, per model version and role, counted in SQL.

Definitions (README, "The decision store"): each transaction counts once per model version and
role, by its latest decision in the window (a transaction scored twice is one decision, not two);
an *alert* is a review or block decision; a decision is *labelled* when its transaction has a
current label. Precision and recall are at the block
threshold, on labelled decisions: precision = labelled frauds blocked / labelled decisions
blocked; recall = labelled frauds blocked / labelled frauds; recall_with_review counts review
decisions as caught too. Label delay = the current label's received_at - the transaction's
first decision in the window (never negative when it is scored again after its label), median
and 90th percentile (nearest rank). Ratios with a zero denominator are None.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, case, desc, extract, func, select
from sqlalchemy.sql import ColumnElement

from .labels import current_labels
from .schema import decisions

d = decisions.c


def _seconds_between(dialect: str, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    if dialect == "postgresql":
        return extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86_400.0


def _n(cond: ColumnElement) -> ColumnElement:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def window_bounds(window: timedelta, now: datetime | None) -> tuple[datetime, datetime]:
    end = (now or datetime.now(UTC)).astimezone(UTC)
    return end - window, end


def quality(engine: Engine, window: timedelta, now: datetime | None = None,
            labelled_only: bool = False) -> list[dict[str, Any]]:
    """One dict per (model_version, role) with decisions in [now - window, now): decisions,
    alerts, blocked, labelled, labelled_frauds, alert_rate, precision, recall,
    recall_with_review, label_delay_p50_s, label_delay_p90_s; ordered by version, role.

    ``labelled_only``: only labelled transactions are read (through the labels and the decisions'
    transaction_id index, not a scan of the window), so decisions, alerts, blocked and alert_rate
    are of labelled transactions; precision, recall and the label delay are the same."""
    start, end = window_bounds(window, now)
    cur = current_labels()
    fraud = cur.c.label == "fraud"
    labelled = cur.c.label.is_not(None)
    per = (d.transaction_id, d.model_version, d.role)
    t = select(d.transaction_id, d.model_version, d.role, d.decision,
               func.min(d.created_at).over(partition_by=per).label("first_at"),
               func.row_number().over(partition_by=per,
                                      order_by=(desc(d.created_at), desc(d.id))).label("rn"),
               ).where(d.created_at >= start, d.created_at < end,
                       *([d.transaction_id.in_(select(cur.c.transaction_id))] if labelled_only else [])
                       ).subquery("per_tx").c
    alert = t.decision != "approve"
    block = t.decision == "block"
    base = (select(t.model_version).select_from(t.transaction_id.table)
            .outerjoin(cur, cur.c.transaction_id == t.transaction_id).where(t.rn == 1))
    counts = base.with_only_columns(
        t.model_version, t.role, func.count().label("decisions"), _n(alert).label("alerts"),
        _n(block).label("blocked"), _n(labelled).label("labelled"), _n(fraud).label("labelled_frauds"),
        _n(and_(block, labelled)).label("blocked_labelled"), _n(and_(block, fraud)).label("blocked_frauds"),
        _n(and_(alert, fraud)).label("alerted_frauds"),
    ).group_by(t.model_version, t.role).order_by(t.model_version, t.role)
    delay = _seconds_between(engine.dialect.name, t.first_at, cur.c.received_at)
    ranked = base.with_only_columns(
        t.model_version, t.role, delay.label("delay"),
        func.row_number().over(partition_by=(t.model_version, t.role), order_by=delay).label("rn"),
        func.count().over(partition_by=(t.model_version, t.role)).label("n"),
    ).where(labelled).subquery()
    r = ranked.c

    def rank(num: int, den: int) -> ColumnElement:  # nearest rank: ceil(n * num / den)
        return (r.n * num + den - 1) // den

    delays = select(
        r.model_version, r.role,
        func.max(case((r.rn == rank(1, 2), r.delay))).label("p50"),
        func.max(case((r.rn == rank(9, 10), r.delay))).label("p90"),
    ).group_by(r.model_version, r.role)
    with engine.connect() as conn:
        rows = conn.execute(counts).mappings().all()
        lag = {(x.model_version, x.role): (x.p50, x.p90) for x in conn.execute(delays)}
    out = []
    for row in rows:
        p50, p90 = lag.get((row["model_version"], row["role"]), (None, None))
        out.append({
            "model_version": row["model_version"], "role": row["role"],
            "decisions": row["decisions"], "alerts": row["alerts"], "blocked": row["blocked"],
            "labelled": row["labelled"], "labelled_frauds": row["labelled_frauds"],
            "alert_rate": _ratio(row["alerts"], row["decisions"]),
            "precision": _ratio(row["blocked_frauds"], row["blocked_labelled"]),
            "recall": _ratio(row["blocked_frauds"], row["labelled_frauds"]),
            "recall_with_review": _ratio(row["alerted_frauds"], row["labelled_frauds"]),
            "label_delay_p50_s": None if p50 is None else round(float(p50), 1),
            "label_delay_p90_s": None if p90 is None else round(float(p90), 1),
        })
    return out


def _latest(role: str, start: datetime, end: datetime):
    return select(d.transaction_id, d.model_version, d.decision, d.score, func.row_number().over(
        partition_by=d.transaction_id, order_by=(desc(d.created_at), desc(d.id))).label("rn")
    ).where(d.role == role, d.created_at >= start, d.created_at < end).subquery(role)


def shadow_comparison(engine: Engine, window: timedelta, now: datetime | None = None) -> list[dict[str, Any]]:
    """Primary vs shadow on the same transactions (the latest decision of each role per
    transaction in the window), one dict per (primary_version, shadow_version): pairs, agreement
    (same decision), mean_abs_score_delta, mean_score_delta (shadow - primary), labelled,
    labelled_frauds, and precision / recall at each model's own block threshold on those pairs."""
    start, end = window_bounds(window, now)
    p, s, cur = _latest("primary", start, end), _latest("shadow", start, end), current_labels()
    fraud, labelled = cur.c.label == "fraud", cur.c.label.is_not(None)
    p_block, s_block = p.c.decision == "block", s.c.decision == "block"
    query = (select(
        p.c.model_version.label("primary_version"), s.c.model_version.label("shadow_version"),
        func.count().label("pairs"), _n(p.c.decision == s.c.decision).label("agree"),
        func.avg(func.abs(s.c.score - p.c.score)).label("mean_abs"),
        func.avg(s.c.score - p.c.score).label("mean"),
        _n(labelled).label("labelled"), _n(fraud).label("frauds"),
        _n(and_(p_block, labelled)).label("p_bl"), _n(and_(p_block, fraud)).label("p_bf"),
        _n(and_(s_block, labelled)).label("s_bl"), _n(and_(s_block, fraud)).label("s_bf"),
    ).join_from(p, s, and_(s.c.transaction_id == p.c.transaction_id, s.c.rn == 1))
        .outerjoin(cur, cur.c.transaction_id == p.c.transaction_id)
        .where(p.c.rn == 1).group_by(p.c.model_version, s.c.model_version)
        .order_by(p.c.model_version, s.c.model_version))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [{
        "primary_version": r["primary_version"], "shadow_version": r["shadow_version"],
        "pairs": r["pairs"], "agreement": _ratio(r["agree"], r["pairs"]),
        "mean_abs_score_delta": round(float(r["mean_abs"]), 3),
        "mean_score_delta": round(float(r["mean"]), 3),
        "labelled": r["labelled"], "labelled_frauds": r["frauds"],
        "primary_precision": _ratio(r["p_bf"], r["p_bl"]), "primary_recall": _ratio(r["p_bf"], r["frauds"]),
        "shadow_precision": _ratio(r["s_bf"], r["s_bl"]), "shadow_recall": _ratio(r["s_bf"], r["frauds"]),
    } for r in rows]
