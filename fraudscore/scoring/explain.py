"""Reason codes: exact path-dependent TreeSHAP of the forest's fraud probability, numpy only.

``Explainer.contributions(X)`` equals ``shap.TreeExplainer(forest,
feature_perturbation="tree_path_dependent")`` for class 1 (tested within 1e-6), and
``base_value + contributions(X).sum(1)`` is the probability the ONNX graph serves.

How: for a leaf of value v whose path has d distinct features j, each with "one" o_j (does x
satisfy every split on j along the path) and "zero" fraction z_j (product of those splits' cover
ratios), the leaf adds to feature i

    phi_i = v (o_i - z_i) * integral_0^1 prod_{j != i} (z_j (1 - u) + o_j u) du,

the Shapley value of the game v * prod_{j in S} o_j * prod_{j not in S} z_j (the weights
k!(d-k-1)!/d! are Beta integrals). As the o_j are 0 or 1, every term depends on the leaf's
d-bit pattern p of ones only: with K(p) = v * integral prod_j f_j(u) / (1 - u) du,

    phi_i = -K(p)  if o_i = 0,        phi_i = (1 - z_i) / z_i * K(p without bit i)  if o_i = 1.

Leaves with short paths get K tabulated for all 2^d patterns when the explainer is built (as many
as ``TABLE_ENTRIES`` allows, shortest first), so explaining a row costs a handful of array passes
over the path slots; longer paths integrate with d/2-point Gauss-Legendre quadrature per row (exact:
the integrand is a polynomial of degree d - 1). Routing compares float32 inputs with the float32
thresholds of the ONNX graph.

Sentences come from a 1,001-point quantile grid of each feature over the training split
(``method="inverted_cdf"``, so grid points are training values). They are true bounds, never
estimates: "lower than 99.2%" means more than 99.2% of training transactions had a higher value.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..artifact import EXPLAIN_FILE, ArtifactError, LoadedArtifact
from ..features import FEATURES
from .sentences import describe

FORMAT_VERSION = 1
QUANTILE_POINTS = 1001
# float32 entries the tables may hold (32 MB). On the default model this tabulates paths of up
# to 16 features (2,893 of 2,908 leaves); tabulating all 18 takes 40 MB and loads slower, for a
# CPU difference per explained row within run-to-run noise (+4% and -8% in two runs of
# bench/explain.py). Longer paths use quadrature, so a bigger model stays within this memory.
TABLE_ENTRIES = 1 << 23
_ARRAYS = {  # name -> (dtype kind, number of dimensions)
    "format_version": ("i", 0), "base_value": ("f", 0), "leaf_value": ("f", 1), "leaf_start": ("i", 1),
    "slot_feature": ("i", 1), "slot_lo": ("f", 1), "slot_hi": ("f", 1), "slot_zero": ("f", 1),
    "quantiles": ("f", 2),
}


def _gauss(d: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [0, 1] that integrate polynomials of degree d - 1 exactly."""
    x, w = np.polynomial.legendre.leggauss(max(1, (d + 1) // 2))
    return (x + 1.0) / 2.0, w / 2.0


def _tables(z: np.ndarray, v: np.ndarray) -> np.ndarray:
    """K(p) for every pattern p of leaves with the same path length d: shape (leaves, 2^d)."""
    n, d = z.shape
    u, w = _gauss(d)
    rows = max(1, (1 << 22) // ((1 << d) * u.size))  # bound the temporary array to ~32 MB
    out = np.empty((n, 1 << d))
    for a in range(0, n, rows):
        zz = z[a:a + rows, :, None]
        acc = np.ones((zz.shape[0], 1, u.size))
        for j in range(d):  # bit j of the pattern is the j-th feature of the path
            acc = np.concatenate([acc * (zz[:, j] * (1.0 - u))[:, None],
                                  acc * (zz[:, j] + (1.0 - zz[:, j]) * u)[:, None]], axis=1)
        out[a:a + rows] = (acc / (1.0 - u)) @ w
    out[:, -1] = 0.0  # all ones: no feature is 0 there, so K is never read at this pattern
    return out * v[:, None]


def _longest_tabulated(sizes: np.ndarray, budget: int) -> int:
    """The longest path length whose leaves, with all shorter ones, fit ``budget`` table entries."""
    counts = np.bincount(sizes, minlength=len(FEATURES) + 1)
    used = np.cumsum(counts * (1 << np.arange(counts.size, dtype=np.int64)))
    return int(np.flatnonzero(used <= budget).max(initial=-1))


class Explainer:
    """Exact TreeSHAP contributions and reason codes for one model entry's forest."""

    def __init__(self, arrays: dict[str, np.ndarray], table_entries: int = TABLE_ENTRIES) -> None:
        self.base_value = float(arrays["base_value"])
        # Python lists: sentences.describe bisects them
        self._grid = arrays["quantiles"].tolist()
        start = arrays["leaf_start"]
        size = np.diff(start)
        # Within a leaf, the features a row most likely satisfies (largest zero fraction) take the
        # low bits: a row's table reads (its pattern, and the pattern less one set bit) then fall
        # in fewer cache lines (-17% CPU on flagged rows, bench figures in the branch's report).
        leaf = np.repeat(np.arange(size.size), size)
        order = np.lexsort((-arrays["slot_zero"], leaf))
        slots = ("slot_feature", "slot_lo", "slot_hi", "slot_zero")
        arrays = {**arrays, **{k: arrays[k][order] for k in slots}}
        self.longest_tabulated = _longest_tabulated(size, table_entries)
        tab = size <= self.longest_tabulated
        slot_leaf = np.repeat(np.arange(size.size), size)
        slot_pos = np.arange(slot_leaf.size) - start[slot_leaf]  # bit of the slot in its leaf's pattern
        self._init_tables(arrays, np.flatnonzero(tab[slot_leaf]), slot_leaf, slot_pos)
        self._init_quadrature(arrays, np.flatnonzero(~tab))

    def _init_tables(self, arrays, sel, slot_leaf, slot_pos) -> None:
        # Slots sorted by feature: one np.repeat of the row feeds every comparison, and the
        # per-feature sums are contiguous runs.
        sel = sel[np.argsort(arrays["slot_feature"][sel], kind="stable")]
        feat = arrays["slot_feature"][sel].astype(np.intp)
        self._t_count = np.bincount(feat, minlength=len(FEATURES))
        self._t_first = np.concatenate([[0], np.cumsum(self._t_count)[:-1]])
        self._t_used = self._t_count > 0
        self._t_lo, self._t_hi = arrays["slot_lo"][sel], arrays["slot_hi"][sel]
        self._t_inv_z = (1.0 / arrays["slot_zero"][sel]).astype(np.float32)
        leaves, self._t_leaf = np.unique(slot_leaf[sel], return_inverse=True)
        self._t_leaf = self._t_leaf.astype(np.intp)
        self._t_bit = (1 << slot_pos[sel]).astype(np.int32)
        d = np.diff(arrays["leaf_start"])[leaves]
        base = np.concatenate([[0], np.cumsum(1 << d)])
        if base[-1] >= 2**31:
            raise ValueError("table budget too large for 32-bit indices")
        self._t_base = base[:-1].astype(np.int32)
        # float32: half the memory and cache misses; measured error vs shap ~2e-9 (bench/explain.py)
        self._K = np.empty(int(base[-1]), dtype=np.float32)
        for n in np.unique(d):
            group = leaves[d == n]
            start = arrays["leaf_start"]
            z = np.stack([arrays["slot_zero"][start[i]:start[i + 1]] for i in group])
            offsets = self._t_base[d == n]
            self._K[(offsets[:, None] + np.arange(1 << n)).ravel()] = \
                _tables(z, arrays["leaf_value"][group]).ravel()

    def _init_quadrature(self, arrays, leaves) -> None:
        start = arrays["leaf_start"]
        sel = np.concatenate([np.arange(start[i], start[i + 1]) for i in leaves]) if leaves.size \
            else np.zeros(0, np.intp)
        self._q_feat = arrays["slot_feature"][sel].astype(np.intp)
        self._q_lo, self._q_hi = arrays["slot_lo"][sel], arrays["slot_hi"][sel]
        self._q_z = arrays["slot_zero"][sel]
        # Elements are (leaf, node, slot) in that order: a leaf's product at one node is a run.
        el_slot, el_u, seg_start, seg_w, slot_first, n_el = [], [], [], [], 0, 0
        for i in leaves:
            d = int(start[i + 1] - start[i])
            u, w = _gauss(d)
            for q in range(u.size):
                seg_start.append(n_el)
                seg_w.append(w[q] * arrays["leaf_value"][i])
                el_slot.append(np.arange(slot_first, slot_first + d))
                el_u.append(np.full(d, u[q]))
                n_el += d
            slot_first += d
        self._q_el_slot = np.concatenate(el_slot) if el_slot else np.zeros(0, np.intp)
        u = np.concatenate(el_u) if el_u else np.zeros(0)
        ez = self._q_z[self._q_el_slot]
        self._q_p0, self._q_pd = ez * (1.0 - u), ez + (1.0 - ez) * u - ez * (1.0 - u)
        self._q_seg_start = np.array(seg_start, dtype=np.intp)
        self._q_seg_w = np.array(seg_w)
        self._q_seg_of_el = np.repeat(np.arange(len(seg_start)),
                                      np.diff(np.append(self._q_seg_start, n_el)).astype(np.intp))

    @classmethod
    def from_bytes(cls, npz: bytes, serving: dict[str, Any], table_entries: int = TABLE_ENTRIES) -> Explainer:
        """Read ``explain.npz`` (no pickle: loading runs no code) and check it fits the model.

        Raises ValueError naming the problem."""
        if list(serving.get("features", [])) != list(FEATURES):
            raise ValueError("explain.npz belongs to a model with other features")
        try:
            with np.load(io.BytesIO(npz), allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
        except Exception as exc:  # zipfile/format errors of a damaged file
            raise ValueError(f"explain.npz is unreadable: {type(exc).__name__}: {exc}") from None
        _validate(arrays)
        return cls(arrays, table_entries)

    @property
    def table_bytes(self) -> int:
        """Memory held by the tabulated patterns."""
        return int(self._K.nbytes)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Signed contribution of each feature to each row's fraud probability, shape (n, 30),
        in FEATURES order; ``base_value + row sum`` is the row's probability."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(FEATURES):
            raise ValueError(f"X must have shape (n, {len(FEATURES)}), got {X.shape}")
        X = np.ascontiguousarray(X, dtype=np.float32)  # the ONNX graph's input type
        # One row at a time: the work is per path slot, so a batch saves only call overhead and
        # its larger temporaries evict the tables from cache (bench/explain.py measures both).
        out = np.empty(X.shape)
        for i, x in enumerate(X):
            out[i] = self._row(x)
        return out

    def _row(self, x: np.ndarray) -> np.ndarray:
        phi = np.zeros(len(FEATURES))
        if self._K.size:
            xs = np.repeat(x, self._t_count)
            o = (xs > self._t_lo) & (xs <= self._t_hi)
            bits = o * self._t_bit
            pattern = np.bincount(self._t_leaf, bits).astype(np.int32)
            pattern += self._t_base
            idx = pattern.take(self._t_leaf)
            idx -= bits  # a slot whose feature is 1 reads the pattern without its bit
            c = o * self._t_inv_z
            c -= 1.0
            c *= self._K.take(idx)
            phi[self._t_used] = np.add.reduceat(c, self._t_first[self._t_used], dtype=np.float64)
        if self._q_feat.size:
            xq = x.take(self._q_feat)
            oq = (xq > self._q_lo) & (xq <= self._q_hi)
            f = self._q_p0 + self._q_pd * oq.take(self._q_el_slot)
            g = np.multiply.reduceat(f, self._q_seg_start) * self._q_seg_w
            per_slot = np.bincount(self._q_el_slot, g.take(self._q_seg_of_el) / f, minlength=oq.size)
            phi += np.bincount(self._q_feat, per_slot * (oq - self._q_z), minlength=len(FEATURES))
        return phi

    def reasons(self, X: np.ndarray, top_k: int = 3) -> list[list[dict[str, Any]]]:
        """Per row, the ``top_k`` features with the largest |contribution| (zeros left out), each as
        {"feature", "value" (the float32 the model saw, shortest form), "contribution" (signed,
        to the probability, 6 decimals), "description"}."""
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        X = np.asarray(X, dtype=np.float64)
        phi = self.contributions(X)
        order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, :top_k].tolist()
        X32 = np.asarray(X, dtype=np.float32)  # the values the model saw: file and HTTP inputs agree
        grid = self._grid
        out = []
        for i, (js, row) in enumerate(zip(order, phi.tolist(), strict=True)):
            reasons = []
            for j in js:
                if row[j] == 0.0:
                    continue
                seen = X32[i, j]
                reasons.append({"feature": FEATURES[j], "value": float(str(seen)),
                                "contribution": round(row[j], 6),
                                "description": describe(FEATURES[j], float(seen), grid[j])})
            out.append(reasons)
        return out


def from_artifact(art: LoadedArtifact, table_entries: int = TABLE_ENTRIES) -> Explainer | None:
    """The explainer of an entry loaded with ``extra_files=(EXPLAIN_FILE,)``, or None when the
    entry predates reason codes. Raises :class:`ArtifactError` if its explain.npz is unusable."""
    data = art.extra.get(EXPLAIN_FILE)
    if data is None:
        return None
    try:
        return Explainer.from_bytes(data, art.serving, table_entries)
    except ValueError as exc:
        raise ArtifactError(f"model {art.tag}: {exc}") from None


def _validate(arrays: dict[str, np.ndarray]) -> None:
    for name, (kind, ndim) in _ARRAYS.items():
        a = arrays.get(name)
        if a is None:
            raise ValueError(f"explain.npz has no array {name!r}")
        if a.dtype.kind != kind or a.ndim != ndim:
            raise ValueError(f"explain.npz: {name} is {a.dtype}{list(a.shape)}, expected kind {kind!r}, "
                             f"{ndim} dimensions")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise ValueError(f"explain.npz is format {int(arrays['format_version'])}, this service reads "
                         f"{FORMAT_VERSION}")
    start, n_slots = arrays["leaf_start"], arrays["slot_feature"].size
    sizes = np.diff(start)
    if (start.size != arrays["leaf_value"].size + 1 or start[0] != 0 or start[-1] != n_slots
            or np.any(sizes < 1) or np.any(sizes > len(FEATURES))):
        raise ValueError("explain.npz: leaf_start does not partition the path slots")
    if any(arrays[k].size != n_slots for k in ("slot_lo", "slot_hi", "slot_zero")):
        raise ValueError("explain.npz: slot arrays differ in length")
    feat, z = arrays["slot_feature"], arrays["slot_zero"]
    if n_slots and (feat.min() < 0 or feat.max() >= len(FEATURES)):
        raise ValueError("explain.npz: a slot names a feature outside the model's")
    if not (np.all((z > 0) & (z <= 1)) and np.all(arrays["slot_lo"] < arrays["slot_hi"])):
        raise ValueError("explain.npz: a path slot has an empty interval or a zero fraction outside (0, 1]")
    if not (np.all(np.isfinite(arrays["leaf_value"])) and np.isfinite(arrays["base_value"])):
        raise ValueError("explain.npz: leaf values must be finite")
    grid = arrays["quantiles"]
    if grid.shape != (len(FEATURES), QUANTILE_POINTS) or np.any(np.diff(grid, axis=1) < 0) \
            or not np.all(np.isfinite(grid)):
        raise ValueError(f"explain.npz: quantiles must be ({len(FEATURES)}, {QUANTILE_POINTS}), "
                         "finite and sorted")
