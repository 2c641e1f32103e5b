"""What the scorer watches as it scores: drift (PSI) and, in target-rate mode, the block threshold.

The request path only hands its rows over: ``add(X, scores)`` copies a small block's feature rows
and scores into a preallocated buffer (a single transaction: ~0.5 µs; larger blocks are kept by
reference), no binning. Every FOLD_ROWS rows or FOLD_S seconds, whichever
comes first (checked when a block arrives: an idle worker keeps its last values), the pending
rows are binned and added to the windows in one vectorised step, the PSI gauges are set and the
target-rate thresholds recomputed. So the work is amortised to well under a microsecond a row,
and nothing per feature or per bin happens per request.

Workers: each worker keeps its own windows over the rows it scored. The kernel spreads
connections across workers, so each sees a share of the same traffic; the gauges use
``multiprocess_mode="livemax"``: /metrics shows the highest PSI of the live workers (a drift seen
by any worker shows; PSI is not additive, so neither a sum nor a mean of workers would be the PSI
of the pooled window; "mostrecent" would show an arbitrary worker's value), and a dead worker's
value leaves with it. Sampling noise of one worker's 10,000-row window is about 0.001 per feature,
far below the 0.1 band.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from ..features import FEATURES
from ..ops import metrics
from ..ops.drift import DriftWindow
from ..ops.logs import Throttled
from .adaptive import TargetRate
from .thresholds import Thresholds

FOLD_ROWS = 1_000
COPIED_ROWS = 8  # blocks up to this size are copied into the buffer; larger ones kept by reference
FOLD_S = 1.0
log = logging.getLogger("bentoml.fraudscore")
_failures = Throttled(log, logging.ERROR, 60.0)


class Watch:
    def __init__(self, version: str, features: Sequence[str], drift: DriftWindow | None,
                 target: TargetRate | None, on_change: Callable[[Thresholds], None]) -> None:
        """``features``: those whose drift is watched (a subset of FEATURES, in any order)."""
        self._drift, self._target, self._on_change = drift, target, on_change
        self._columns = np.array([FEATURES.index(f) for f in features])  # of the scored rows
        self._version = version
        # rows of small blocks, copied here: a fold then reads one array instead of concatenating
        # a thousand one-row arrays (~0.24 ms, on the request that triggers it)
        self._buf_X = np.empty((FOLD_ROWS, len(FEATURES)))
        self._buf_s = np.empty(FOLD_ROWS, dtype=np.int64)
        self._n = 0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # larger blocks, by reference
        self._rows = 0
        self._due = time.monotonic() + FOLD_S
        # made only with a drift window: a labelled child is exported (as 0) once it exists
        self._feature_psi = [metrics.DRIFT_PSI.labels(feature=f) for f in features] \
            if drift is not None else []

    def add(self, X: np.ndarray, scores: np.ndarray) -> None:
        """The request path's share: keep the rows; fold when enough rows or time passed."""
        m, n = len(scores), self._n
        if m <= COPIED_ROWS and n + m <= FOLD_ROWS:
            self._buf_X[n:n + m] = X
            self._buf_s[n:n + m] = scores
            self._n = n + m
        else:
            self._pending.append((X, scores))
        self._rows += m
        if self._rows >= FOLD_ROWS or time.monotonic() >= self._due:
            try:
                self.fold()
            except Exception as exc:  # watching must never fail a verdict: log (once a minute), go on
                _failures.emit("drift / threshold update failed, rows dropped: %r", exc)

    def fold(self) -> None:
        pending, self._pending, self._rows = self._pending, [], 0
        if self._n:
            pending.append((self._buf_X[:self._n], self._buf_s[:self._n]))  # read before any reuse
            self._n = 0
        self._due = time.monotonic() + FOLD_S
        if not pending:
            return
        X = pending[0][0] if len(pending) == 1 else np.concatenate([x for x, _ in pending])
        scores = pending[0][1] if len(pending) == 1 else np.concatenate([s for _, s in pending])
        if self._drift is not None:
            self._drift.add(X[:, self._columns], scores)
            values = self._drift.psi()
            if values is not None:
                for gauge, v in zip(self._feature_psi, values[0].tolist(), strict=True):
                    gauge.set(v)
                metrics.score_psi().set(values[1])
        if self._target is not None:
            self._target.add(scores)
            change = self._target.update()
            if change is not None:
                old, new = change
                log.info("block threshold %d -> %d, review %d -> %d (target-rate %g: %.4g of the last %d "
                         "scores at >= %d; bounds %d-%d)", old.block, new.block, old.review, new.review,
                         self._target.target, self._target.rate_at(new.block), self._target.filled,
                         new.block, self._target.low, self._target.high)
                self._on_change(new)
