"""The scorer: one loaded model, the thresholds in force, its explainer and its metrics.

``verdicts`` turns probabilities into the answer's dicts (shaped as :class:`FraudScoreOut`):
score, decision, the transaction id (the client's, or a new one), and for every review and block
verdict (every verdict when asked) the reasons: the features that moved the probability most,
exact TreeSHAP (explain.py). Knows no HTTP.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..artifact import ArtifactError, LoadedArtifact
from ..features import FEATURES
from ..ops import metrics
from ..ops.metrics import observe_many
from ..schemas import ModelInfoOut
from ..settings import Settings
from .explain import Explainer, from_artifact
from .in_force import thresholds_in_force
from .model import Forest, OnnxForest, SklearnForest
from .thresholds import to_scores

log = logging.getLogger("bentoml.fraudscore")


class Scorer:
    """Scores feature rows with one loaded model and the thresholds in force."""

    def __init__(self, art: LoadedArtifact, settings: Settings, counted: bool = True) -> None:
        """``counted=False``: a shadow model, kept out of the decision and score metrics."""
        if list(art.serving.get("features", [])) != list(FEATURES):
            raise ArtifactError(f"model {art.tag} expects other features than this service sends")
        self.forest: Forest = SklearnForest(art.model_bytes) if settings.engine == "sklearn" \
            else OnnxForest(art.model_bytes)
        self.version = art.tag
        self.counted = counted
        self.thresholds, self.threshold_source = thresholds_in_force(art.serving, settings)
        self.explainer: Explainer | None = from_artifact(art)
        self.top_k = settings.reasons_top_k
        stats = art.serving["feature_stats"]
        self._decisions = {d: metrics.DECISIONS.labels(decision=d, model_version=self.version)
                           for d in ("approve", "review", "block")}
        self._score_hist = metrics.SCORES.labels(model_version=self.version)
        self._inference = metrics.INFERENCE_SECONDS.labels(model_version=self.version)
        self._batch_rows = metrics.BATCH_ROWS.labels(model_version=self.version)
        self._out_of_range = [metrics.OUT_OF_RANGE.labels(feature=f, model_version=self.version)
                              for f in FEATURES]
        self._low = np.array([stats[f]["quantiles"]["0.001"] for f in FEATURES])
        self._high = np.array([stats[f]["quantiles"]["0.999"] for f in FEATURES])
        self._info = ModelInfoOut(
            tag=art.tag,
            engine=self.forest.engine,
            trained_at=art.metadata["trained_at"],
            data_source=art.metadata["data_source"],
            data_sha256=art.metadata["data_sha256"],
            metrics=art.metadata["metrics"],
            thresholds=self.thresholds.as_dict(),
            thresholds_source=self.threshold_source,
            top_feature_importances=dict(list(art.serving["feature_importances"].items())[:10]),
            versions=art.metadata["versions"],
            batch_max_items=settings.batch_max_items,
            adaptive_batching=settings.adaptive_batching,
            reasons="exact TreeSHAP" if self.explainer is not None else "unavailable (retrain the model)",
        )

    def model_info(self) -> ModelInfoOut:
        return self._info

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Fraud probabilities of the rows of ``X`` (n, 30): one model call, timed."""
        started = time.perf_counter()
        proba = self.forest.predict_proba(X)
        self._inference.observe(time.perf_counter() - started)
        self._batch_rows.observe(len(X))
        return proba

    def verdicts(self, X: np.ndarray, proba: np.ndarray, ids: Sequence[str | None],
                 explain: bool = False) -> list[dict[str, Any]]:
        """One verdict per row, in order, shaped as :class:`FraudScoreOut` (a test holds them
        equal): with reasons for review and block (every row when ``explain``); decisions, scores
        and out-of-range features are counted."""
        scores = to_scores(proba)
        if self.counted:
            self._record_out_of_range(X)
            if len(scores) == 1:  # the common case: skip the array work below
                self._score_hist.observe(int(scores[0]))
            else:
                observe_many(self._score_hist, scores)
        block, decide = self.thresholds.block, self.thresholds.decide
        out = []
        counts = dict.fromkeys(self._decisions, 0)
        flagged = []
        for i, (tx_id, p, s) in enumerate(zip(ids, proba.tolist(), scores.tolist(), strict=True)):
            decision = decide(s)
            counts[decision] += 1
            if explain or decision != "approve":
                flagged.append(i)
            out.append({"fraud_score": s, "fraud_probability": round(p, 6), "is_fraud": s >= block,
                        "decision": decision, "threshold": block, "model_version": self.version,
                        "transaction_id": tx_id or str(uuid.uuid4())})
        if flagged and self.explainer is not None and self.top_k:
            for i, reasons in zip(flagged, self.explainer.reasons(X[flagged], self.top_k), strict=True):
                out[i]["reasons"] = reasons
        if self.counted:
            for decision, n in counts.items():
                if n:
                    self._decisions[decision].inc(n)
        return out

    def _record_out_of_range(self, X: np.ndarray) -> None:
        outside = ((self._low > X) | (self._high < X)).sum(axis=0)
        for j in np.flatnonzero(outside):
            self._out_of_range[j].inc(int(outside[j]))
