"""Orchestration: validated transactions in, verdicts out; the decision log and the shadow model
served on the way (never waited on).

The HTTP edge hands this step validated objects; the scorer and model below it know no HTTP.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from ..artifact import EXPLAIN_FILE, ONNX_FILE, SKOPS_FILE, ArtifactError, load
from ..features import FEATURES
from ..ops import metrics
from ..schemas import TransactionIn
from ..settings import ConfigError, Settings
from ..store.records import make_record
from .batching import MERGE_BELOW_ROWS, ModelBatcher
from .in_force import target_rate_in_force, thresholds_in_force
from .lane import BulkLane
from .scorer import Scorer
from .shadow import Shadow
from .thresholds import Thresholds

# Rows scored (and recorded) in one piece of a large request: ~0.2 ms of work alone, a few ms
# with flagged rows to explain on a busy machine. CPU per 1,000 rows in-process: scoring alone,
# 12.7 ms in pieces of 16, 12.8 in pieces of 64, 17.4 in pieces of 8; with the lane's turns, 18
# in pieces of 16 and 15-17 in pieces of 64 (the price of the singles' shorter waits).
CHUNK_ROWS = 16
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
    static, _ = thresholds_in_force(art.serving, settings)
    target_rate_in_force(art.serving, settings, static, art.tag)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, for its decision records."""

    route: str
    key_name: str | None
    request_id: str | None
    started: float  # time.perf_counter() when the edge received it


class ScoringPipeline:
    """What the service holds: a :class:`Scorer`, or the reason there is none (never raises),
    the way model calls are made (directly, or merged across requests: adaptive batching), and
    where verdicts go besides the answer (the decision log; a shadow model)."""

    def __init__(self, scorer: Scorer | None, unavailable_reason: str | None,
                 batcher: ModelBatcher | None = None, decision_log: Any = None,
                 shadow: Shadow | None = None) -> None:
        self._scorer = scorer
        self.unavailable_reason = unavailable_reason
        self._batcher = batcher
        self._log = decision_log
        self.shadow = shadow
        self._lanes: dict[asyncio.AbstractEventLoop, BulkLane] = {}

    @classmethod
    def load(cls, settings: Settings, decision_log: Any = None) -> ScoringPipeline:
        try:
            scorer = _load_scorer(settings.model_tag, settings)
        except _Unavailable as exc:
            log.error("model unavailable, serving 503 until restarted: %s", exc,
                      extra={"event": "model_unavailable", "model_tag": settings.model_tag})
            metrics.MODEL_READY.labels(model_version=settings.model_tag).set(0)
            return cls(None, str(exc))
        batcher = ModelBatcher(scorer.predict, settings.batch_max_items) \
            if settings.adaptive_batching else None
        log.info("loaded %s with %s (block >= %d, review >= %d, %s thresholds, adaptive batching %s, "
                 "reasons %s)", scorer.version, scorer.forest.engine, scorer.thresholds.block,
                 scorer.thresholds.review, settings.threshold_mode, "on" if batcher else "off",
                 "on" if scorer.explainer else "UNAVAILABLE (retrain)",
                 extra={"event": "model_loaded", "model_version": scorer.version, "role": "primary"})
        metrics.MODEL_READY.labels(model_version=scorer.version).set(1)
        pipeline = cls(scorer, None, batcher, decision_log)
        if settings.shadow_model_tag:
            try:
                shadow = _load_scorer(settings.shadow_model_tag, settings, counted=False)
            except _Unavailable as exc:  # the primary serves on; the challenger is not scored
                log.error("shadow model unavailable, not scored: %s", exc,
                          extra={"event": "model_unavailable", "model_tag": settings.shadow_model_tag,
                                 "role": "shadow"})
            else:
                pipeline.shadow = Shadow(shadow, pipeline._record)
                log.info("shadow model %s scores the same transactions (never decides)", shadow.version,
                         extra={"event": "model_loaded", "model_version": shadow.version, "role": "shadow"})
        return pipeline

    def bulk_lane(self) -> BulkLane:
        """The lane of large requests (lane.py): one piece of bulk work (a parse, a chunk) between
        two polls of the sockets, so the single transactions queued behind them wait for one
        piece, not for every large request in progress. One per event loop (a worker has one;
        tests may not)."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            self._lanes = {loop: (lane := BulkLane())}  # its lock belongs to one loop
        return lane

    @property
    def ready(self) -> bool:
        return self._scorer is not None

    def close(self) -> None:
        if self._scorer is not None:
            metrics.MODEL_READY.labels(model_version=self._scorer.version).set(0)
        if self._batcher is not None:
            self._batcher.close()

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            raise ModelUnavailable(self.unavailable_reason or "model not loaded")
        return self._scorer

    async def score_transactions(self, transactions: Sequence[TransactionIn], merge: bool = True,
                                 explain: bool = False, origin: Origin | None = None,
                                 thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
        """Verdicts on validated transactions, in order, shaped as :class:`FraudScoreOut`; with an
        ``origin``, each is recorded in the decision log (and scored by the shadow model).
        ``thresholds``: the calling key's own (default: the service's in force).

        A large request is scored in chunks of CHUNK_ROWS in the bulk lane, giving the event loop
        back between chunks, so the single transactions queued behind it wait for a chunk, not
        the whole; each chunk's verdicts are recorded with it (a request whose client left on the
        way has the verdicts made so far recorded). ``merge=False`` scores a small request at once
        instead of merging it with others: merging waits one turn of the event loop, which under
        overload is a long one, and so is a turn with a piece of bulk work in it: while a large
        request holds the lane, small ones are not merged either."""
        scorer = self.scorer
        n = len(transactions)
        X = np.fromiter(chain.from_iterable(map(_features, transactions)), np.float64, n * len(FEATURES))
        X = X.reshape(n, len(FEATURES))
        ids = [tx.transaction_id for tx in transactions]
        if n < MERGE_BELOW_ROWS:
            if merge and (lane := self._lanes.get(asyncio.get_running_loop())) is not None:
                merge = not lane.busy
            proba = scorer.predict(X) if self._batcher is None or not merge else await self._batcher(X)
            out = scorer.verdicts(X, proba, ids, explain, thresholds)
            if origin is not None:
                self._record_all(X, out, origin, (thresholds or scorer.thresholds).review)
            return out
        out = []
        lane = self.bulk_lane()
        for start in range(0, n, CHUNK_ROWS):
            async with lane.piece():
                chunk = X[start:start + CHUNK_ROWS]
                verdicts = scorer.verdicts(chunk, scorer.predict(chunk), ids[start:start + CHUNK_ROWS],
                                           explain, thresholds)
                if origin is not None:  # recorded piece by piece too: 1,000 records are ~2 ms
                    self._record_all(chunk, verdicts, origin, (thresholds or scorer.thresholds).review)
                out += verdicts
        return out

    def _record_all(self, X: np.ndarray, verdicts: list[dict[str, Any]], origin: Origin,
                    review: int) -> None:
        if self._log is not None:
            for i, verdict in enumerate(verdicts):
                self._record(verdict, X[i], origin, "primary", review)
        if self.shadow is not None:
            self.shadow.submit(X, [v["transaction_id"] for v in verdicts], origin)

    def _record(self, verdict: dict[str, Any], row: np.ndarray, origin: Origin, role: str,
                review: int | None = None) -> None:
        if self._log is None:
            return
        if review is None:
            review = (self._scorer if role == "primary" else self.shadow.scorer).thresholds.review
        self._log.record(make_record(
            verdict, row, route=origin.route, key_name=origin.key_name, role=role,
            latency_ms=(time.perf_counter() - origin.started) * 1000.0, request_id=origin.request_id,
            review_threshold=review))


class _Unavailable(Exception):
    pass


def _load_scorer(tag: str, settings: Settings, counted: bool = True) -> Scorer:
    model_file = SKOPS_FILE if settings.engine == "sklearn" else ONNX_FILE
    try:
        return Scorer(load(tag, model_file, extra_files=(EXPLAIN_FILE,)), settings, counted)
    except ArtifactError as exc:
        raise _Unavailable(str(exc)) from None
    except ConfigError:
        raise  # a bad setting is the operator's to fix: refuse to start
    except Exception as exc:  # a corrupt graph makes ONNX Runtime raise its own types
        raise _Unavailable(f"model {tag!r} failed to load: {type(exc).__name__}: {exc}"[:500]) from None
