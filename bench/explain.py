"""Reason-code cost: the own exact TreeSHAP (fraudscore.scoring.explain) next to shap's TreeExplainer.

    BENTOML_HOME=/tmp/explain-home .venv/bin/python train.py --quiet      # the default model
    BENTOML_HOME=/tmp/explain-home flock /tmp/bench.lock .venv/bin/python bench/explain.py

On the model ``--tag`` (default fraud_detector:latest of the current store) it prints the trees
before and after the export's reductions, the explainer's load time and table memory for three
table budgets (32 MB = the default, every leaf tabulated, quadrature only), and the
median cost per explained transaction for 1, 10 and 100 rows a call, in CPU time of the calling
thread (what throughput pays; other processes' load does not count) and in wall time, for each
budget and for shap on the same rows, measured in interleaved rounds. Rows are the ones the model
flags (review or block) among the stand-in transactions bench/run.py sends, as in service.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from fraudscore import artifact  # noqa: E402
from fraudscore.scoring.explain import TABLE_ENTRIES, Explainer  # noqa: E402
from fraudscore.scoring.model import OnnxForest  # noqa: E402
from fraudscore.scoring.thresholds import to_scores  # noqa: E402
from fraudscore.training.data import generate  # noqa: E402

BUDGETS = {"32 MB tables (default)": TABLE_ENTRIES, "every leaf tabulated": 1 << 24, "quadrature only": 0}
SIZES = (1, 10, 100)


def _forest(path: Path):
    import skops.io as sio

    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def _tree_stats(forest) -> dict[str, float]:
    nodes = leaves = ones = 0
    depth = []
    for est in forest.estimators_:
        t = est.tree_
        leaf = t.children_left == -1
        v = t.value[:, 0, 1] / t.value[:, 0, :].sum(axis=1)
        nodes += t.node_count
        leaves += int(leaf.sum())
        ones += int((leaf & (v > 0)).sum())
        depth.append(t.max_depth)
    return {"trees": len(forest.estimators_), "nodes": nodes, "leaves": leaves,
            "leaves with value > 0": ones, "max depth": max(depth), "mean depth": statistics.mean(depth)}


def _time(fn, rows: int, repeat: int) -> tuple[float, float]:
    """Median CPU and wall seconds per row of ``fn`` over ``repeat`` calls."""
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu) / rows, statistics.median(wall) / rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tag", default="fraud_detector:latest")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians over all)")
    ap.add_argument("--repeat", type=int, default=30, help="calls per cell and round")
    args = ap.parse_args()

    import shap

    art = artifact.load(args.tag, extra_files=(artifact.EXPLAIN_FILE,))
    if artifact.EXPLAIN_FILE not in art.extra:
        sys.exit(f"{art.tag} has no {artifact.EXPLAIN_FILE}: train it with this version")
    data = art.extra[artifact.EXPLAIN_FILE]
    forest = _forest(art.path / artifact.SKOPS_FILE)
    onnx = OnnxForest(art.model_bytes)
    print(f"model {art.tag}; explain.npz {len(data) / 1e3:.0f} kB; shap {shap.__version__}\n")

    print("## Trees")
    for k, v in _tree_stats(forest).items():
        print(f"- before: {k}: {v:g}")
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        sizes = np.diff(f["leaf_start"])
    for k, v in art.metadata.get("explain", {}).items():
        print(f"- export: {k}: {v}")
    print(f"- after: explained leaves {sizes.size}, path slots {int(sizes.sum())}, "
          f"distinct features per path: mean {sizes.mean():.2f}, max {sizes.max()}, "
          f"histogram {np.bincount(sizes).tolist()}\n")

    stand_in = generate(30_000, seed=11)
    flagged = np.flatnonzero(to_scores(onnx.predict_proba(stand_in.X)) >= art.serving["thresholds"]["review"])
    X = stand_in.X[np.resize(flagged, 100)]
    print(f"rows: {flagged.size} flagged of {stand_in.y.size} stand-in transactions, "
          f"{int(stand_in.y[flagged].sum())} of them frauds; 100 taken (repeated if fewer)\n")

    explainers, loads = {}, {}
    print("## Load (median of 3 builds from explain.npz)\n\n| budget | load s | tables MB | "
          "longest tabulated path | max abs diff vs shap | max abs (base + sum - ONNX) |")
    print("|---|---|---|---|---|---|")
    reference = shap.TreeExplainer(forest, feature_perturbation="tree_path_dependent")
    expected = reference.shap_values(X.astype(np.float32))[..., 1]
    served = onnx.predict_proba(X)
    for name, budget in BUDGETS.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            explainers[name] = Explainer.from_bytes(data, art.serving, budget)
            times.append(time.perf_counter() - t0)
        e = explainers[name]
        loads[name] = statistics.median(times)
        phi = e.contributions(X)
        additivity = np.abs(e.base_value + phi.sum(1) - served).max()
        print(f"| {name} | {loads[name]:.2f} | {e.table_bytes / 1e6:.1f} | {e.longest_tabulated} | "
              f"{np.abs(phi - expected).max():.1e} | {additivity:.1e} |")

    cells = {f"own, {name}": e.contributions for name, e in explainers.items()}
    cells["own, default, with reasons()"] = explainers["32 MB tables (default)"].reasons
    cells[f"shap {shap.__version__} TreeExplainer"] = lambda A: reference.shap_values(A.astype(np.float32))
    cells["ONNX predict_proba (for scale)"] = onnx.predict_proba
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for name, fn in cells.items():
            for n in SIZES:
                # each call takes the next n rows: one row over and over would keep its table
                # entries in cache and flatter the figure
                calls = args.repeat if n == 1 else max(3, 2 * args.repeat // n)
                blocks = iter([np.roll(X, -k * n, axis=0)[:n] for k in range(calls + 1)])
                fn(next(blocks))  # warm
                results.setdefault((name, n), []).append(
                    _time(lambda fn=fn, blocks=blocks: fn(next(blocks)), n, calls))
    print(f"\n## Cost per explained transaction (ms; medians over {args.rounds} interleaved rounds)\n")
    print("| method | " + " | ".join(f"{n} row{'s' if n > 1 else ''}: CPU / wall" for n in SIZES)
          + " | 1 row, x own default |\n|---|" + "---|" * (len(SIZES) + 1))
    base_cpu = statistics.median(c for c, _ in results[("own, 32 MB tables (default)", 1)])
    for name in cells:
        row = []
        for n in SIZES:
            cpu = statistics.median(c for c, _ in results[(name, n)])
            wall = statistics.median(w for _, w in results[(name, n)])
            row.append(f"{cpu * 1e3:.3f} / {wall * 1e3:.3f}")
        one = statistics.median(c for c, _ in results[(name, 1)])
        print(f"| {name} | " + " | ".join(row) + f" | {one / base_cpu:.2f} |")


if __name__ == "__main__":
    main()
