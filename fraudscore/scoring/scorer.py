"""The scorer: one loaded model, the thresholds in force, its explainer and its metrics.

``verdicts`` turns probabilities into the answer's dicts (shaped as :class:`FraudScoreOut`):
score, decision, the transaction id (the client's, or a new one), and for every review and block
verdict (every verdict when asked) the reasons: the features that moved the probability most,
exact TreeSHAP (explain.py); and ``warnings``, the features outside the range seen in training
(where a forest extrapolates flat: its score there rests on nothing it has seen), omitted when
there is none. Counted verdicts feed the drift windows and target-rate thresholds (watch.py).
The thresholds are the service's (static or target-rate) unless the caller passes its key's own.
Knows no HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np

from ..artifact import ArtifactError, LoadedArtifact
from ..features import FEATURES
from ..ops import metrics
from ..ops.drift import DriftWindow
from ..ops.metrics import observe_many
from ..schemas import Decision, ModelInfoOut
from ..settings import Settings
from ..stages import stage_at
from ..store.records import new_transaction_id
from .explain import Explainer, from_artifact
from .in_force import target_rate_in_force, thresholds_in_force
from .model import Forest, OnnxForest, SklearnForest
from .thresholds import Thresholds, to_scores
from .watch import Watch

_DECISIONS = get_args(Decision)  # approve, review, block
log = logging.getLogger("bentoml.fraudscore")
# Time counts seconds from the first transaction of the reference period: a window of recent
# traffic covers a short stretch of that clock, so its PSI against the training period would
# always read as a major shift. Every other feature is watched.
DRIFT_FEATURES = tuple(f for f in FEATURES if f != "Time")


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
        target = target_rate_in_force(art.serving, settings, self.thresholds, art.tag) if counted else None
        if target is not None:
            self.thresholds = target.thresholds
            self.threshold_source = {"block": "target-rate", "review": "target-rate"}
        self.explainer: Explainer | None = from_artifact(art)
        self.top_k = settings.reasons_top_k
        stats = art.serving["feature_stats"]
        # a shadow (not counted) gets no decision, score, range or threshold series: a series made
        # here is exported, at 0, even when nothing is ever counted in it
        self._decisions = {d: metrics.DECISIONS.labels(decision=d, model_version=self.version)
                           for d in _DECISIONS} if counted else {}
        self._score_hist = metrics.SCORES.labels(model_version=self.version) if counted else None
        self._inference = metrics.INFERENCE_SECONDS.labels(model_version=self.version)
        self._batch_rows = metrics.BATCH_ROWS.labels(model_version=self.version)
        self._out_of_range = [metrics.OUT_OF_RANGE.labels(feature=f, model_version=self.version)
                              for f in FEATURES] if counted else []
        self._low = np.array([stats[f]["quantiles"]["0.001"] for f in FEATURES])
        self._high = np.array([stats[f]["quantiles"]["0.999"] for f in FEATURES])
        # warnings: outside the training min-max (inside the 0.1-99.9% range above: checked second)
        self._min = np.array([stats[f]["min"] for f in FEATURES])
        self._max = np.array([stats[f]["max"] for f in FEATURES])
        if counted:
            self._block_gauge = metrics.BLOCK_THRESHOLD.labels(model_version=self.version)
            self._review_gauge = metrics.REVIEW_THRESHOLD.labels(model_version=self.version)
        drift = self._drift_window(art, settings) if counted else None
        self._watch = Watch(self.version, DRIFT_FEATURES, drift, target, self._set_thresholds) \
            if drift is not None or target is not None else None
        if counted:
            self._set_thresholds(self.thresholds)
        self._entry_path, self._checksums = art.path, art.metadata.get("checksums")
        self._info = ModelInfoOut(
            tag=art.tag,
            stage=stage_at(art.path, self._checksums),
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
            threshold_mode=settings.threshold_mode,
            target_block_rate=settings.target_block_rate if target is not None else None,
            block_threshold_bounds={"low": target.low, "high": target.high} if target is not None else None,
            drift=f"PSI over each worker's last {settings.drift_window} rows" if drift is not None else
            "off (FRAUD_DRIFT_WINDOW=0)" if settings.drift_window == 0 else
            "unavailable (the model entry has no drift reference: retrain the model)",
        )

    def _drift_window(self, art: LoadedArtifact, settings: Settings) -> DriftWindow | None:
        if settings.drift_window == 0:
            return None
        ref = art.serving.get("drift_reference")
        if ref is None:
            log.warning("model %s has no drift reference (trained before it existed): no drift "
                        "gauges; retrain it to get them", self.version)
            return None
        try:
            return DriftWindow(ref, DRIFT_FEATURES, settings.drift_window)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("model %s: unusable drift reference, no drift gauges: %r", self.version, exc)
            return None

    def _set_thresholds(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._block_gauge.set(thresholds.block)
        self._review_gauge.set(thresholds.review)

    def model_info(self, key_name: str | None = None, profile: Thresholds | None = None) -> ModelInfoOut:
        """What /model_info answers; the thresholds are those in force for the calling key
        (``profile``: its own, from the key file), else the service's at this moment."""
        if profile is not None:
            source = f"key file [keys.{key_name}]"
            thresholds, sources = profile, {"block": source, "review": source}
        else:
            thresholds, sources = self.thresholds, dict(self.threshold_source)
        return self._info.model_copy(update={"thresholds": thresholds.as_dict(), "thresholds_source": sources,
                                             "stage": stage_at(self._entry_path, self._checksums)})

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Fraud probabilities of the rows of ``X`` (n, 30): one model call, timed."""
        started = time.perf_counter()
        proba = self.forest.predict_proba(X)
        self._inference.observe(time.perf_counter() - started)
        self._batch_rows.observe(len(X))
        return proba

    def verdicts(self, X: np.ndarray, proba: np.ndarray, ids: Sequence[str | None],
                 explain: bool = False, thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
        """One verdict per row, in order, shaped as :class:`FraudScoreOut` (a test holds them
        equal): with reasons for review and block (every row when ``explain``), warnings for
        features outside the training range; decisions, scores and out-of-range features are
        counted. ``thresholds``: a key's own (default: the service's in force)."""
        scores = to_scores(proba)
        warnings = self._outside_training(X)
        if self.counted:
            if len(scores) == 1:  # the common case: skip the array work below
                self._score_hist.observe(int(scores[0]))
            else:
                observe_many(self._score_hist, scores)
            if self._watch is not None:
                self._watch.add(X, scores)
        th = thresholds or self.thresholds
        block, decide = th.block, th.decide
        out = []
        counts = dict.fromkeys(_DECISIONS, 0)
        flagged = []
        for i, (tx_id, p, s) in enumerate(zip(ids, proba.tolist(), scores.tolist(), strict=True)):
            decision = decide(s)
            counts[decision] += 1
            if explain or decision != "approve":
                flagged.append(i)
            out.append({"fraud_score": s, "fraud_probability": round(p, 6), "is_fraud": s >= block,
                        "decision": decision, "threshold": block, "model_version": self.version,
                        "transaction_id": tx_id or new_transaction_id()})
        if warnings:
            for i, found in warnings.items():
                out[i]["warnings"] = found
        if flagged and self.explainer is not None and self.top_k:
            for i, reasons in zip(flagged, self.explainer.reasons(X[flagged], self.top_k), strict=True):
                out[i]["reasons"] = reasons
        if self.counted:
            for decision, n in counts.items():
                if n:
                    self._decisions[decision].inc(n)
        return out

    def _outside_training(self, X: np.ndarray) -> dict[int, list[dict[str, Any]]] | None:
        """Counts values outside the 0.1-99.9% training range (counted scorers); returns the
        warnings (values outside the training min-max) by row, or None. One comparison of the
        block and one ``any`` when nothing is outside: no per-row Python."""
        outside = (self._low > X) | (self._high < X)
        if not outside.any():
            return None
        if self.counted:
            per_feature = outside.sum(axis=0)
            for j in np.flatnonzero(per_feature):
                self._out_of_range[j].inc(int(per_feature[j]))
        rows, cols = np.nonzero((self._min > X) | (self._max < X))
        if rows.size == 0:
            return None
        found: dict[int, list[dict[str, Any]]] = {}
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            found.setdefault(i, []).append({"feature": FEATURES[j], "value": float(X[i, j]),
                                            "low": float(self._min[j]), "high": float(self._max[j])})
        return found
