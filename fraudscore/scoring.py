"""Orchestration: validated transactions in, verdicts out, with metrics on the way.

The HTTP edge hands this step validated objects; the model wrapper below it knows no HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import metrics
from .artifact import ArtifactError, LoadedArtifact, load
from .features import FEATURES
from .model import OnnxForest
from .schemas import FraudScoreOut, ModelInfoOut, TransactionIn
from .settings import ConfigError, Settings
from .thresholds import Thresholds, to_scores

# A child of "bentoml" so `bentoml serve` prints it with its own lines.
log = logging.getLogger("bentoml.fraudscore")


class ModelUnavailable(RuntimeError):
    """No model is loaded; the message says why."""


def _thresholds(serving: dict[str, Any], settings: Settings) -> tuple[Thresholds, dict[str, str]]:
    learned = serving["thresholds"]
    block = learned["block"] if settings.decision_threshold == "model" else settings.decision_threshold
    review = learned["review"] if settings.review_threshold == "model" else settings.review_threshold
    source = {
        "block": "model" if settings.decision_threshold == "model" else "FRAUD_DECISION_THRESHOLD",
        "review": "model" if settings.review_threshold == "model" else "FRAUD_REVIEW_THRESHOLD",
    }
    if settings.review_threshold == "model":
        # The learned review edge stays; under an overridden block threshold the band becomes
        # [learned review, block), wider or narrower than the learned one.
        review = min(review, block)
    try:
        return Thresholds(block=block, review=review), source
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_configuration(settings: Settings) -> None:
    """What must hold before any worker starts (raises :class:`ConfigError`): a key, and
    thresholds that fit the model. A model that cannot be loaded is not a start-up error: the
    service starts and answers 503 with the reason."""
    settings.resolved_api_keys()
    try:
        art = load(settings.model_tag)
    except ArtifactError:
        return
    _thresholds(art.serving, settings)


class Scorer:
    """Scores transactions with one loaded model and the thresholds in force."""

    def __init__(self, art: LoadedArtifact, settings: Settings) -> None:
        if list(art.serving.get("features", [])) != list(FEATURES):
            raise ArtifactError(f"model {art.tag} expects other features than this service sends")
        self.forest = OnnxForest(art.onnx_bytes)
        self.version = art.tag
        self.thresholds, self.threshold_source = _thresholds(art.serving, settings)
        stats = art.serving["feature_stats"]
        self._decisions = {d: metrics.DECISIONS.labels(decision=d, model_version=self.version)
                           for d in ("approve", "review", "block")}
        self._score_hist = metrics.SCORES.labels(model_version=self.version)
        self._inference = metrics.INFERENCE_SECONDS.labels(model_version=self.version)
        self._out_of_range = [metrics.OUT_OF_RANGE.labels(feature=f, model_version=self.version)
                              for f in FEATURES]
        self._low = np.array([stats[f]["quantiles"]["0.001"] for f in FEATURES])
        self._high = np.array([stats[f]["quantiles"]["0.999"] for f in FEATURES])
        self._info = ModelInfoOut(
            tag=art.tag,
            trained_at=art.metadata["trained_at"],
            data_source=art.metadata["data_source"],
            data_sha256=art.metadata["data_sha256"],
            metrics=art.metadata["metrics"],
            thresholds=self.thresholds.as_dict(),
            thresholds_source=self.threshold_source,
            top_feature_importances=dict(list(art.serving["feature_importances"].items())[:10]),
            versions=art.metadata["versions"],
            batch_max_items=settings.batch_max_items,
        )

    def model_info(self) -> ModelInfoOut:
        return self._info

    def score(self, transactions: Sequence[TransactionIn]) -> list[FraudScoreOut]:
        """Verdicts in input order; scoring a list equals scoring each item alone."""
        X = np.array([[getattr(tx, f) for f in FEATURES] for tx in transactions], dtype=np.float64)
        started = time.perf_counter()
        proba = self.forest.predict_proba(X)
        self._inference.observe(time.perf_counter() - started)
        self._record_out_of_range(X)
        scores = to_scores(proba)
        block = self.thresholds.block
        out = []
        counts = dict.fromkeys(self._decisions, 0)
        for tx, p, s in zip(transactions, proba.tolist(), scores.tolist(), strict=True):
            decision = self.thresholds.decide(s)
            counts[decision] += 1
            out.append(FraudScoreOut(
                fraud_score=s, fraud_probability=round(p, 6), is_fraud=decision == "block",
                decision=decision, threshold=block, model_version=self.version,
                transaction_id=tx.transaction_id,
            ))
            self._score_hist.observe(s)
        for decision, n in counts.items():
            if n:
                self._decisions[decision].inc(n)
        return out

    def _record_out_of_range(self, X: np.ndarray) -> None:
        outside = ((self._low > X) | (self._high < X)).sum(axis=0)
        for j in np.flatnonzero(outside):
            self._out_of_range[j].inc(int(outside[j]))


class ScoringPipeline:
    """What the service holds: a :class:`Scorer`, or the reason there is none (never raises)."""

    def __init__(self, scorer: Scorer | None, unavailable_reason: str | None) -> None:
        self._scorer = scorer
        self.unavailable_reason = unavailable_reason

    @classmethod
    def load(cls, settings: Settings) -> ScoringPipeline:
        try:
            scorer = Scorer(load(settings.model_tag), settings)
        except ArtifactError as exc:
            log.warning("model unavailable, serving 503 until restarted: %s", exc)
            return cls(None, str(exc))
        except ConfigError:
            raise  # a bad setting is the operator's to fix: refuse to start
        except Exception as exc:  # a corrupt graph makes ONNX Runtime raise its own types
            reason = f"model {settings.model_tag!r} failed to load: {type(exc).__name__}: {exc}"
            log.warning("model unavailable, serving 503 until restarted: %s", reason)
            return cls(None, reason[:500])
        log.info("loaded %s (block >= %d, review >= %d)", scorer.version,
                 scorer.thresholds.block, scorer.thresholds.review)
        return cls(scorer, None)

    @property
    def ready(self) -> bool:
        return self._scorer is not None

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            raise ModelUnavailable(self.unavailable_reason or "model not loaded")
        return self._scorer
