"""Building decision records for the store tests."""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np

from fraudscore.store.batches import BatchWriter
from fraudscore.store.records import DecisionRecord, make_record

BLOCK, REVIEW = 60, 30


def decision_of(score: int) -> str:
    return "block" if score >= BLOCK else "review" if score >= REVIEW else "approve"


def rec(tx: str, score: int = 5, *, at: datetime | float | None = None, version: str = "fraud_detector:v1",
        role: str = "primary", features=None, key_name: str | None = "ops") -> DecisionRecord:
    """A record of a verdict with ``score`` (decision by the thresholds above)."""
    verdict = {"transaction_id": tx, "fraud_score": score, "fraud_probability": score / 100,
               "is_fraud": score >= BLOCK, "decision": decision_of(score), "threshold": BLOCK,
               "model_version": version, "reasons": [{"feature": "V14", "contribution": 0.1}],
               "warnings": None}
    when = at.timestamp() if isinstance(at, datetime) else (time.time() if at is None else at)
    feats = np.arange(30, dtype=np.float64) + score if features is None else features
    return make_record(verdict, feats, route="/fraud_score", key_name=key_name, latency_ms=1.5,
                       request_id=f"req-{tx}", role=role, review_threshold=REVIEW, created_at=when)


def write(engine, records) -> None:
    """Write records at once (one transaction), as the decision log's writer does."""
    writer = BatchWriter(engine)
    try:
        writer.write(list(records))
    finally:
        writer.close()
