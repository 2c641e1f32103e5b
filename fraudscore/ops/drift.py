"""Drift: the population stability index (PSI) of each feature and of the score, over a sliding
window of recent rows, against the training reference kept in the model entry.

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

with ``expected`` the reference share of a bin and ``actual`` the window's share (both floored at
:data:`EPS`, so an empty bin counts but cannot make the sum infinite). Conventional reading:
below 0.1 no significant change; 0.1-0.25 a moderate change, worth a look; above 0.25 a major
shift: the model sees a population it was not trained on (retrain, or find the broken feed).

Bins: each feature's training deciles (interior edges, duplicates dropped: a feature with ties
has fewer bins); the score's fixed edges :data:`SCORE_EDGES`. ``reference`` (training) and
:class:`DriftWindow` (serving) bin with the same rule: a value's bin is the number of edges <= it.

Pure numpy and no metrics: training imports it; ``scoring/watch.py`` publishes the gauges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

EPS = 1e-4
# Bins of the 0-100 score: 0, 1, 2, 3-4, 5-9, 10-19, 20-29, 30-49, 50-69, 70-89, 90-100. Most
# transactions score 0-2, so quantile edges would collapse; fixed edges keep the tail visible.
SCORE_EDGES = (1, 2, 3, 5, 10, 20, 30, 50, 70, 90)
DECILES = tuple(np.linspace(0.1, 0.9, 9).round(1).tolist())
# PSI is published once the window holds this many rows (or is full): the expected PSI of an
# unchanged population is about (bins - 1) / rows, 0.009 at 1,000 rows and 10 bins.
MIN_ROWS = 1_000


def _bins(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right")


def _proportions(edges: np.ndarray, values: np.ndarray) -> list[float]:
    counts = np.bincount(_bins(edges, values), minlength=edges.size + 1)
    return (counts / max(values.size, 1)).tolist()


def reference(X: np.ndarray, features: Sequence[str], scores: np.ndarray) -> dict[str, Any]:
    """The drift reference a model entry keeps (``serving.json``, key ``drift_reference``): per
    feature the training deciles and the training share of each bin; the same for the scores of
    held-out rows (a forest's scores on its own training rows are overconfident)."""
    out: dict[str, Any] = {"features": {}}
    for j, name in enumerate(features):
        col = np.asarray(X[:, j], dtype=np.float64)
        edges = np.unique(np.quantile(col, DECILES))
        out["features"][name] = {"edges": edges.tolist(), "proportions": _proportions(edges, col)}
    edges = np.asarray(SCORE_EDGES, dtype=np.float64)
    out["score"] = {"edges": list(SCORE_EDGES), "proportions": _proportions(edges, np.asarray(scores))}
    return out


def psi(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """PSI along the last axis of two arrays of proportions (each sums to 1 over its bins)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return ((a - e) * np.log(a / e)).sum(axis=-1)


class DriftWindow:
    """The bin of every feature and of the score for the last ``size`` rows (a ring of bytes),
    and the window's count per bin, kept up to date as rows come and go.

    ``add`` costs one comparison per row, feature and edge, and a bincount; ``psi`` is a few
    dozen operations on the counts. Neither runs per request: ``scoring/watch.py`` calls them on
    blocks of rows."""

    def __init__(self, ref: dict[str, Any], features: Sequence[str], size: int) -> None:
        feats = [ref["features"][f] for f in features]
        k = 1 + max([len(f["edges"]) for f in feats] + [len(ref["score"]["edges"])])
        self.size, self._k, self._n = size, k, len(features)
        self._edges = np.full((len(features), k - 1), np.inf)
        self._expected = np.zeros((len(features) + 1, k))
        self._valid = np.zeros((len(features) + 1, k), dtype=bool)
        for j, f in enumerate([*feats, ref["score"]]):
            n = len(f["edges"])
            if len(f["proportions"]) != n + 1:
                raise ValueError(f"drift reference: {n + 1} bins need {n + 1} proportions")
            if j < len(features):
                self._edges[j, :n] = f["edges"]
            self._expected[j, :n + 1] = f["proportions"]
            self._valid[j, :n + 1] = True
        self._score_edges = np.asarray(ref["score"]["edges"], dtype=np.float64)
        self._offsets = (np.arange(len(features) + 1) * k).astype(np.intp)
        self._ring = np.zeros((size, len(features) + 1), dtype=np.uint8)
        self._counts = np.zeros((len(features) + 1) * k, dtype=np.int64)
        self._pos = self.filled = 0

    def bins(self, X: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(rows, features + 1) bin numbers: the features', then the score's."""
        features = np.zeros((len(X), self._n), dtype=np.uint8)
        above = np.empty((len(X), self._n), dtype=bool)
        for k in range(self._edges.shape[1]):  # one comparison per edge: 3x faster than a 3-D one
            np.greater_equal(X, self._edges[:, k], out=above)
            features += above.view(np.uint8)
        return np.column_stack((features, _bins(self._score_edges, scores).astype(np.uint8)))

    def add(self, X: np.ndarray, scores: np.ndarray) -> None:
        if len(X) > self.size:
            X, scores = X[-self.size:], scores[-self.size:]
        m = len(X)
        if m == 0:
            return
        new = self.bins(X, scores)
        idx = (self._pos + np.arange(m)) % self.size
        old = self._ring[idx] if self.filled == self.size else self._ring[idx[idx < self.filled]]
        minlength = self._counts.size
        if len(old):
            self._counts -= np.bincount((old + self._offsets).ravel(), minlength=minlength)
        self._counts += np.bincount((new + self._offsets).ravel(), minlength=minlength)
        self._ring[idx] = new
        self._pos = (self._pos + m) % self.size
        self.filled = min(self.size, self.filled + m)

    def psi(self) -> tuple[np.ndarray, float] | None:
        """(PSI of each feature, PSI of the score), or None while the window holds fewer than
        min(MIN_ROWS, size) rows."""
        if self.filled < min(MIN_ROWS, self.size):
            return None
        actual = self._counts.reshape(self._n + 1, self._k) / self.filled
        # bins a feature does not have (fewer edges than the widest) count in neither share
        values = psi(np.where(self._valid, self._expected, EPS), np.where(self._valid, actual, EPS))
        return values[:self._n], float(values[self._n])
