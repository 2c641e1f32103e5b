"""A shadow (challenger) model: scores what the primary scored, off the request path, never decides.

The pipeline hands it each scored request's feature rows (a reference, O(1)); every
SHADOW_INTERVAL_S the queued rows are scored in ONE model call and their verdicts recorded in the
decision log with role ``shadow``, under the same transaction ids, so ``make report`` can compare
the two models on the same transactions. Its decisions and scores are kept out of the service's
decision metrics. When its queue is full (the model cannot keep up), rows are dropped and counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

import numpy as np

from ..ops import metrics
from .scorer import Scorer

log = logging.getLogger("bentoml.fraudscore")
SHADOW_INTERVAL_S = 0.05
MAX_QUEUED_ROWS = 50_000


class Shadow:
    def __init__(self, scorer: Scorer, record) -> None:
        self.scorer = scorer
        self._record = record  # (verdict, features row, origin, role) -> None
        self._queue: deque[tuple[np.ndarray, list[str], Any]] = deque()
        self._rows = 0
        self._scheduled = False

    def submit(self, X: np.ndarray, ids: list[str], origin: Any) -> None:
        if self._rows + len(X) > MAX_QUEUED_ROWS:
            metrics.SHADOW_DROPPED.inc(len(X))
            return
        self._queue.append((X, ids, origin))
        self._rows += len(X)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_later(SHADOW_INTERVAL_S, self._run)

    def _run(self) -> None:
        self._scheduled = False
        queued, self._queue, self._rows = self._queue, deque(), 0
        if not queued:
            return
        X = np.concatenate([x for x, _, _ in queued])
        try:
            proba = self.scorer.predict(X)
        except Exception:
            log.exception("the shadow model %s failed; its verdicts are not recorded", self.scorer.version,
                          extra={"event": "model_failed", "model_version": self.scorer.version,
                                 "role": "shadow"})
            return
        ids = [i for _, batch_ids, _ in queued for i in batch_ids]
        verdicts = self.scorer.verdicts(X, proba, ids)
        k = 0
        for x, batch_ids, origin in queued:
            for j in range(len(batch_ids)):
                self._record(verdicts[k], x[j], origin, "shadow")
                k += 1
