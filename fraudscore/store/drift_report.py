"""Drift in ``make report``: the PSI of each feature and of the score over the decision log's
window, per primary model version, against that version's training reference.

The same bins and formula as the live gauges (``ops/drift.py``), on the most recent ``rows``
primary decisions of each version in the window, so the offline figure reads like the gauge; it
covers every worker's traffic at once, where each worker's gauge covers its own share. ``Time``
has no PSI (a count of seconds, always shifted against training).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, desc, func, select

from ..features import FEATURES
from ..ops.drift import DriftWindow
from .quality import window_bounds
from .schema import decisions

d = decisions.c
WATCHED = [f for f in FEATURES if f != "Time"]
TOP = 5  # features listed per version, the highest PSI first


def band(value: float) -> str:
    """The conventional reading of a PSI."""
    return "stable" if value < 0.1 else "moderate" if value < 0.25 else "major"


def drift(engine: Engine, window: timedelta, now: datetime | None,
          reference: Callable[[str], dict[str, Any] | None], rows: int = 100_000) -> list[dict[str, Any]]:
    """One dict per primary model version with decisions in the window: ``rows`` read, and
    either ``score_psi`` and ``features`` ({name: psi}, every watched feature, the highest first)
    or ``unavailable`` (why there is no reference)."""
    start, end = window_bounds(window, now)
    in_window = (d.role == "primary", d.created_at >= start, d.created_at < end)
    with engine.connect() as conn:
        versions = conn.execute(select(d.model_version, func.count()).where(*in_window)
                                .group_by(d.model_version).order_by(d.model_version)).all()
        out = []
        for version, count in versions:
            entry: dict[str, Any] = {"model_version": version, "decisions": count}
            out.append(entry)
            ref = reference(version)
            if ref is None:
                entry["unavailable"] = "no drift reference: the model entry is not in this machine's " \
                                       "model store, or predates drift references"
                continue
            query = (select(*(d[f] for f in WATCHED), d.score)
                     .where(*in_window, d.model_version == version)
                     .order_by(desc(d.created_at), desc(d.id)).limit(rows))
            data = np.array(conn.execute(query).all(), dtype=np.float64).reshape(-1, len(WATCHED) + 1)
            window_ = DriftWindow(ref, WATCHED, max(len(data), 1))
            window_.add(data[:, :-1], data[:, -1])
            entry["rows"] = len(data)
            result = window_.psi()
            if result is None:
                entry["unavailable"] = f"{len(data)} decisions: too few for a PSI (the gauges wait for 1,000)"
                continue
            features, score = result
            entry["score_psi"] = round(score, 4)
            order = np.argsort(-features, kind="stable")
            entry["features"] = {WATCHED[i]: round(float(features[i]), 4) for i in order}
    return out


def model_reference(version: str) -> dict[str, Any] | None:
    """The drift reference of a model entry in the local model store (checksums verified)."""
    from ..artifact import ArtifactError, load

    try:
        return load(version).serving.get("drift_reference")
    except ArtifactError:
        return None
