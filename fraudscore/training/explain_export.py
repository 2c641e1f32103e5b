"""What serving needs to explain a score, taken from the fitted forest: ``explain.npz``.

Path-dependent TreeSHAP only needs, for every leaf, its value and the features on its path, each
with one interval (all splits on that feature merged) and one "zero fraction" (the product of the
cover ratios of those splits). This module walks scikit-learn's trees once and writes exactly that,
after two reductions that change no Shapley value:

- a subtree whose leaves all hold one value becomes one leaf (its cover fractions sum to 1);
- each tree's leaf values are shifted by the constant that empties the most paths (Shapley values
  ignore constants; the base value is computed before the shift). For fully grown trees with 0/1
  leaves this drops the value-0 leaves.

Thresholds are the float32 values the ONNX graph compares with (skl2onnx's rule: the largest
float32 not above scikit-learn's float64 threshold, so ``float32(x) <= t`` routes alike).
The layout is described in :mod:`fraudscore.scoring.explain`, which reads it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..scoring.explain import FORMAT_VERSION, QUANTILE_POINTS

_LEAF = -1  # sklearn.tree._tree.TREE_LEAF


def onnx_thresholds(threshold: np.ndarray) -> np.ndarray:
    """scikit-learn's float64 thresholds as the float32 ones skl2onnx writes (BRANCH_LEQ)."""
    t = np.asarray(threshold, dtype=np.float64)
    f = t.astype(np.float32)
    return np.where(f.astype(np.float64) > t, np.nextafter(f, np.float32(-np.inf)), f)


def _tree_leaves(tree: Any) -> tuple[list[tuple[float, float, dict[int, list]]], dict[str, int]]:
    """(value, cover fraction, {feature: [lo, hi, zero fraction]}) per leaf of the collapsed tree."""
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    value = tree.value[:, 0, :]
    v = value[:, 1] / value.sum(axis=1)
    cover = np.asarray(tree.weighted_n_node_samples, dtype=np.float64)
    thr = onnx_thresholds(tree.threshold)
    n = tree.node_count
    uniform = np.full(n, np.nan)  # the value of every leaf below, if they share one
    depth = np.zeros(n, dtype=np.int64)
    for i in range(n):  # parents come before children in sklearn's node order
        if left[i] != _LEAF:
            depth[left[i]] = depth[right[i]] = depth[i] + 1
    for i in range(n - 1, -1, -1):
        if left[i] == _LEAF:
            uniform[i] = v[i]
        elif uniform[left[i]] == uniform[right[i]]:
            uniform[i] = uniform[left[i]]
    leaves = []
    stack: list[tuple[int, dict[int, list]]] = [(0, {})]
    while stack:
        i, path = stack.pop()
        if not np.isnan(uniform[i]):
            leaves.append((float(uniform[i]), cover[i] / cover[0], path))
            continue
        j = int(feature[i])
        for child, goes_left in ((left[i], True), (right[i], False)):
            lo, hi, z = path.get(j, (-np.inf, np.inf, 1.0))
            merged = [lo, min(hi, thr[i]), z] if goes_left else [max(lo, thr[i]), hi, z]
            merged[2] = z * cover[child] / cover[i]
            stack.append((child, {**path, j: merged}))
    is_leaf = left == _LEAF
    stats = {"nodes": int(n), "leaves": int(is_leaf.sum()), "nonzero_leaves": int((is_leaf & (v != 0)).sum()),
             "depth": int(depth.max()), "collapsed_leaves": len(leaves)}
    return leaves, stats


def export(forest: Any, X_train: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """``explain.npz`` for a fitted RandomForestClassifier (class 1) and its training rows, and
    statistics of the trees before and after the reductions (for the model's metadata)."""
    n_trees = len(forest.estimators_)
    values, starts, feats, los, his, zs = [], [0], [], [], [], []
    base = 0.0
    totals = dict.fromkeys(("nodes", "leaves", "nonzero_leaves", "collapsed_leaves"), 0)
    max_depth = 0
    for est in forest.estimators_:
        leaves, stats = _tree_leaves(est.tree_)
        for key in totals:
            totals[key] += stats[key]
        max_depth = max(max_depth, stats["depth"])
        base += sum(v * c for v, c, _ in leaves) / n_trees
        slots: dict[float, int] = {}
        for v, _, path in leaves:
            slots[v] = slots.get(v, 0) + len(path)
        shift = max(slots, key=lambda val: (slots[val], -abs(val)))
        for v, _, path in leaves:
            if v == shift or not path:
                continue
            values.append((v - shift) / n_trees)
            for j, (lo, hi, z) in path.items():
                feats.append(j)
                los.append(lo)
                his.append(hi)
                zs.append(z)
            starts.append(len(feats))
    sizes = np.diff(starts)
    quantiles = np.quantile(np.asarray(X_train, dtype=np.float64),
                            np.linspace(0.0, 1.0, QUANTILE_POINTS), axis=0, method="inverted_cdf").T
    arrays = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "base_value": np.array(base, dtype=np.float64),
        "leaf_value": np.array(values, dtype=np.float64),
        "leaf_start": np.array(starts, dtype=np.int64),
        "slot_feature": np.array(feats, dtype=np.int16),
        "slot_lo": np.array(los, dtype=np.float32),
        "slot_hi": np.array(his, dtype=np.float32),
        "slot_zero": np.array(zs, dtype=np.float64),
        "quantiles": np.ascontiguousarray(quantiles, dtype=np.float64),
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    stats = {**totals, "max_depth": max_depth, "explained_leaves": len(values), "slots": len(feats),
             "max_path_features": int(sizes.max()) if sizes.size else 0,
             "mean_path_features": round(float(sizes.mean()), 2) if sizes.size else 0.0}
    return buf.getvalue(), stats
