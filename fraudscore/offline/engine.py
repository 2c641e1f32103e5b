"""The model as the offline tools run it: the service's ONNX graph and thresholds, on blocks.

:func:`load_payload` runs where the model store is (the command's process, a Spark driver): it
loads the entry with verified checksums and resolves the thresholds in force exactly as the
service does. :class:`BlockScorer` runs anywhere numpy and ONNX Runtime do (Spark executors too):
it imports neither BentoML nor the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..features import FEATURES
from ..scoring.model import OnnxForest
from ..scoring.thresholds import Thresholds, to_scores
from .checks import Violation, first_violation

DECISIONS = ("approve", "review", "block")
# The service's verdict fields, in its order; the offline output's columns (plus "reasons").
VERDICT_COLUMNS = ("fraud_probability", "fraud_score", "is_fraud", "decision", "threshold", "model_version")


class ModelError(RuntimeError):
    """The model entry cannot be used; the message says why."""


@dataclass(frozen=True)
class ModelPayload:
    """Everything scoring needs, small enough to ship to Spark executors (a few MB)."""

    onnx: bytes
    block: int
    review: int
    version: str
    threshold_source: dict[str, str]


def load_payload(model_tag: str | None = None) -> tuple[ModelPayload, Any]:
    """The model entry ``model_tag`` (default: the settings' FRAUD_MODEL_TAG) with the thresholds
    in force under FRAUD_DECISION_THRESHOLD / FRAUD_REVIEW_THRESHOLD, and the loaded entry.

    Raises :class:`ModelError` with the reason (missing entry, checksum mismatch, bad overrides)."""
    from ..artifact import EXPLAIN_FILE, ArtifactError, load
    from ..scoring.in_force import thresholds_in_force
    from ..settings import ConfigError, load_settings

    try:
        settings = load_settings()
        art = load(model_tag or settings.model_tag, extra_files=(EXPLAIN_FILE,))
        if list(art.serving.get("features", [])) != list(FEATURES):
            raise ModelError(f"model {art.tag} expects other features than {', '.join(FEATURES)}")
        thresholds, source = thresholds_in_force(art.serving, settings)
    except (ArtifactError, ConfigError) as exc:
        raise ModelError(str(exc)) from None
    except ValueError as exc:  # pydantic's ValidationError of a bad FRAUD_* variable
        raise ModelError(f"invalid settings: {exc}") from None
    return ModelPayload(art.model_bytes, thresholds.block, thresholds.review, art.tag, source), art


@dataclass(frozen=True)
class Verdicts:
    """Verdicts on a block of rows, one array per field, equal to the service's fields."""

    probability: np.ndarray  # float64, rounded to 6 decimals as the service answers
    score: np.ndarray  # int32, 0-100
    is_fraud: np.ndarray  # bool
    decision: np.ndarray  # int8 codes into DECISIONS


class BadRows(ValueError):
    """A block holds a value the service would refuse."""

    def __init__(self, violation: Violation, where: str = "") -> None:
        super().__init__(f"{where}, {violation.describe()}" if where else violation.describe())
        self.violation = violation


class BlockScorer:
    """Scores (n, 30) feature blocks. Thread-safe: ONNX Runtime sessions may run concurrently,
    each call on one core (the service's session options)."""

    def __init__(self, payload: ModelPayload) -> None:
        self.payload = payload
        self.forest = OnnxForest(payload.onnx)
        self.thresholds = Thresholds(block=payload.block, review=payload.review)
        # score -> decision code, built from the service's own Thresholds.decide
        self._decide = np.array([DECISIONS.index(self.thresholds.decide(s)) for s in range(101)], np.int8)

    def check(self, columns: list[np.ndarray]) -> None:
        """Raise :class:`BadRows` at the first value the service's request schema refuses."""
        violation = first_violation(columns)
        if violation is not None:
            raise BadRows(violation)

    def score(self, X: np.ndarray) -> Verdicts:
        """Verdicts on checked rows ``X`` (n, 30) in FEATURES order (float32 avoids a copy)."""
        proba = self.forest.predict_proba(X)
        scores = to_scores(proba)
        return Verdicts(
            probability=round6(proba),
            score=scores.astype(np.int32),
            is_fraud=scores >= self.thresholds.block,
            decision=self._decide[scores],
        )


def feature_matrix(columns: list[np.ndarray]) -> np.ndarray:
    """The (n, 30) float32 matrix ONNX Runtime takes, from the 30 feature columns.

    Copied in blocks of rows that stay in cache while they are transposed: ~4x faster than
    ``np.column_stack`` on large chunks, where this copy would otherwise cost a fifth of the model."""
    n = len(columns[0])
    X = np.empty((n, len(columns)), np.float32)
    for start in range(0, n, _TRANSPOSE_ROWS):
        X[start:start + _TRANSPOSE_ROWS] = np.array([c[start:start + _TRANSPOSE_ROWS] for c in columns],
                                                    dtype=np.float32).T
    return X


_TRANSPOSE_ROWS = 4096


def round6(p: np.ndarray) -> np.ndarray:
    """``round(float(x), 6)`` of each value, as the service answers, without a Python loop.

    numpy's rint(x * 1e6) / 1e6 agrees with Python's correctly rounded ``round`` except where
    x * 1e6 lies within float error of a half; those few values are rounded by Python."""
    x = np.asarray(p, dtype=np.float64)
    scaled = x * 1e6
    out = np.rint(scaled) / 1e6
    near_half = np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-3)
    if near_half.size:
        out[near_half] = [round(v, 6) for v in x[near_half].tolist()]
    return out
