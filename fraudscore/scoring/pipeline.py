"""Orchestration: validated transactions in, verdicts out, with metrics on the way.

The HTTP edge hands this step validated objects; the model wrapper below it knows no HTTP.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from ..artifact import ONNX_FILE, SKOPS_FILE, ArtifactError, LoadedArtifact, load
from ..features import FEATURES
from ..ops import metrics
from ..ops.metrics import observe_many
from ..schemas import ModelInfoOut, TransactionIn
from ..settings import ConfigError, Settings
from .batching import MERGE_BELOW_ROWS, ModelBatcher
from .in_force import thresholds_in_force as _thresholds
from .model import Forest, OnnxForest, SklearnForest
from .thresholds import to_scores

# A pause between two pieces of bulk work: a timer (not a plain yield) makes the loop poll its
# sockets first, so single transactions that arrived meanwhile are read and served before the
# next piece, not after every large request in progress.
BULK_PAUSE_S = 0.0001


async def yield_to_io() -> None:
    await asyncio.sleep(BULK_PAUSE_S)


# Rows scored between two returns to the event loop in a large request (~0.4 ms of work)
CHUNK_ROWS = 64
# A child of "bentoml" so `bentoml serve` prints it with its own lines.
log = logging.getLogger("bentoml.fraudscore")
_features = attrgetter(*FEATURES)


class ModelUnavailable(RuntimeError):
    """No model is loaded; the message says why."""


def check_configuration(settings: Settings) -> None:
    """What must hold before any worker starts (raises :class:`ConfigError`): an engine this
    environment can run, and thresholds that fit the model. A model that cannot be loaded is not
    a start-up error: the service starts and answers 503 with the reason."""
    if settings.engine == "sklearn" and importlib.util.find_spec("skops") is None:
        raise ConfigError("FRAUD_ENGINE=sklearn needs scikit-learn and skops, which this "
                          "environment does not install (the bento serves ONNX only)")
    try:
        art = load(settings.model_tag)
    except ArtifactError:
        return
    _thresholds(art.serving, settings)


class Scorer:
    """Scores feature rows with one loaded model and the thresholds in force."""

    def __init__(self, art: LoadedArtifact, settings: Settings) -> None:
        if list(art.serving.get("features", [])) != list(FEATURES):
            raise ArtifactError(f"model {art.tag} expects other features than this service sends")
        self.forest: Forest = SklearnForest(art.model_bytes) if settings.engine == "sklearn" \
            else OnnxForest(art.model_bytes)
        self.version = art.tag
        self.thresholds, self.threshold_source = _thresholds(art.serving, settings)
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

    def verdicts(self, X: np.ndarray, proba: np.ndarray, ids: Sequence[str | None]) -> list[dict[str, Any]]:
        """One verdict per row, in order, shaped as :class:`FraudScoreOut` (a test holds them
        equal); decisions, scores and out-of-range features are counted."""
        self._record_out_of_range(X)
        scores = to_scores(proba)
        block, decide = self.thresholds.block, self.thresholds.decide
        if len(scores) == 1:  # the common case: skip the array work below
            self._score_hist.observe(int(scores[0]))
        else:
            observe_many(self._score_hist, scores)
        out = []
        counts = dict.fromkeys(self._decisions, 0)
        for tx_id, p, s in zip(ids, proba.tolist(), scores.tolist(), strict=True):
            decision = decide(s)
            counts[decision] += 1
            row = {"fraud_score": s, "fraud_probability": round(p, 6), "is_fraud": s >= block,
                   "decision": decision, "threshold": block, "model_version": self.version}
            if tx_id is not None:
                row["transaction_id"] = tx_id
            out.append(row)
        for decision, n in counts.items():
            if n:
                self._decisions[decision].inc(n)
        return out

    def _record_out_of_range(self, X: np.ndarray) -> None:
        outside = ((self._low > X) | (self._high < X)).sum(axis=0)
        for j in np.flatnonzero(outside):
            self._out_of_range[j].inc(int(outside[j]))


class ScoringPipeline:
    """What the service holds: a :class:`Scorer`, or the reason there is none (never raises),
    and the way model calls are made: directly, or merged across requests (adaptive batching)."""

    def __init__(self, scorer: Scorer | None, unavailable_reason: str | None,
                 batcher: ModelBatcher | None = None) -> None:
        self._scorer = scorer
        self.unavailable_reason = unavailable_reason
        self._batcher = batcher
        self._lanes: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    @classmethod
    def load(cls, settings: Settings) -> ScoringPipeline:
        model_file = SKOPS_FILE if settings.engine == "sklearn" else ONNX_FILE
        try:
            scorer = Scorer(load(settings.model_tag, model_file), settings)
        except ArtifactError as exc:
            log.error("model unavailable, serving 503 until restarted: %s", exc)
            return cls(None, str(exc))
        except ConfigError:
            raise  # a bad setting is the operator's to fix: refuse to start
        except Exception as exc:  # a corrupt graph makes ONNX Runtime raise its own types
            reason = f"model {settings.model_tag!r} failed to load: {type(exc).__name__}: {exc}"
            log.error("model unavailable, serving 503 until restarted: %s", reason)
            return cls(None, reason[:500])
        batcher = ModelBatcher(scorer.predict, settings.batch_max_items) \
            if settings.adaptive_batching else None
        log.info("loaded %s with %s (block >= %d, review >= %d, adaptive batching %s)", scorer.version,
                 scorer.forest.engine, scorer.thresholds.block, scorer.thresholds.review,
                 "on" if batcher else "off")
        return cls(scorer, None, batcher)

    def bulk_lane(self) -> asyncio.Lock:
        """The lane of large requests: one piece of bulk work (a parse, a chunk) at a time, so the
        single transactions queued behind them wait for one piece, not for every large request
        in progress. One lock per event loop (a worker has one; tests may not)."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            self._lanes = {loop: (lane := asyncio.Lock())}  # a lock belongs to one loop
        return lane

    @property
    def ready(self) -> bool:
        return self._scorer is not None

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            raise ModelUnavailable(self.unavailable_reason or "model not loaded")
        return self._scorer

    async def score_transactions(self, transactions: Sequence[TransactionIn],
                                 merge: bool = True) -> list[dict[str, Any]]:
        """Verdicts on validated transactions, in order, shaped as :class:`FraudScoreOut`.

        A large request is scored in chunks of CHUNK_ROWS in the bulk lane, giving the event loop
        back between chunks, so the single transactions queued behind it wait for a chunk, not
        the whole. ``merge=False`` scores a small request at once instead of merging it with
        others: merging waits one turn of the event loop, which under overload is a long one."""
        scorer = self.scorer
        n = len(transactions)
        X = np.fromiter(chain.from_iterable(map(_features, transactions)), np.float64, n * len(FEATURES))
        X = X.reshape(n, len(FEATURES))
        ids = [tx.transaction_id for tx in transactions]
        if n < MERGE_BELOW_ROWS:
            proba = scorer.predict(X) if self._batcher is None or not merge else await self._batcher(X)
            return scorer.verdicts(X, proba, ids)
        out: list[dict[str, Any]] = []
        lane = self.bulk_lane()
        for start in range(0, n, CHUNK_ROWS):
            await yield_to_io()
            async with lane:
                chunk = X[start:start + CHUNK_ROWS]
                out += scorer.verdicts(chunk, scorer.predict(chunk), ids[start:start + CHUNK_ROWS])
        return out
