"""Offline scoring against ONNX Runtime alone, side by side: ``python bench/offline.py``.

    flock /tmp/bench.lock .venv/bin/python bench/offline.py                 # 1M and 2M rows, 3 runs
    .venv/bin/python bench/offline.py --rows 200000 --runs 1 --formats parquet   # quick look
    .venv/bin/python bench/offline.py --generate-only --data data/     # just the stand-in files

Generates stand-in files of N and 2N rows (fraudscore.training.data.generate, plus an id column
``tx``; Parquet as pyarrow writes it by default, CSV with full-precision floats) in memory-backed
/dev/shm (``--data``; about 2.4 GB for N = 1M, removed at the end unless ``--keep-data``): on a
shared VM whose page cache is trimmed, files on disk would measure the disk, not the scoring.
Then alternates, run after run:
- ``ort``: ONNX Runtime alone, the model entry's graph through OnnxForest, on the same number of
  threads as the command, over the file's rows already in memory as float32, in 65,536- and
  1,000-row blocks;
- ``score``: ``python -m fraudscore score FILE -o OUT``, a fresh process, writing every input
  column (``--keep tx --keep Class``) or the id only (``--id-column tx --keep Class``);
- ``read`` (CSV): the command's reader alone (parse, checks of missing values, float conversion).
Each figure is rows/s from the difference of the times for 2N and N rows, so start-up (imports,
model load) cancels out; medians over ``--runs``; CPU seconds from getrusage give the share of
the CSV's time spent parsing. Uses the model in $BENTOML_HOME (``make train`` first).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ORT_CHILD = """
import sys, time, numpy as np, pyarrow.parquet as pq
from concurrent.futures import ThreadPoolExecutor
from fraudscore.features import FEATURES
from fraudscore.offline.engine import BlockScorer, load_payload
forest = BlockScorer(load_payload()[0]).forest
path, block, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = pq.read_table(path, columns=list(FEATURES))
X = np.ascontiguousarray(np.column_stack([t[f].to_numpy() for f in FEATURES]), dtype=np.float32)
blocks = [X[i:i + block] for i in range(0, len(X), block)]
with ThreadPoolExecutor(workers) as pool:
    list(pool.map(forest.predict_proba, blocks[:workers]))  # warm-up
    started = time.perf_counter()
    list(pool.map(forest.predict_proba, blocks))
print(time.perf_counter() - started)
"""

READ_CHILD = """
import sys
from fraudscore.offline.sources import open_source
for chunk in open_source(sys.argv[1], "csv", 65536, ["tx", "Class"]).chunks():
    pass
"""
# output columns: every input column, or the id (and the label) only
MODES = {"all columns": ["--keep", "tx", "--keep", "Class"],
         "id column": ["--id-column", "tx", "--keep", "Class"]}


def generate(rows: int, folder: Path) -> dict[str, dict[int, Path]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from fraudscore.features import FEATURES
    from fraudscore.training.data import generate as stand_in

    files: dict[str, dict[int, Path]] = {"parquet": {}, "csv": {}}
    folder.mkdir(parents=True, exist_ok=True)
    todo = {n: {fmt: folder / f"standin-{n}.{fmt}" for fmt in files} for n in (rows, 2 * rows)}
    if not all(p.exists() for d in todo.values() for p in d.values()):
        print(f"generating {2 * rows:,} stand-in rows into {folder}", file=sys.stderr)
        data = stand_in(2 * rows, seed=11)
        for n, paths in todo.items():
            features = {f: data.X[:n, j] for j, f in enumerate(FEATURES)}
            table = pa.table({"tx": np.arange(n, dtype=np.int64), **features, "Class": data.y[:n]})
            pq.write_table(table, paths["parquet"])
            pcsv.write_csv(table, paths["csv"])
    for n, paths in todo.items():
        for fmt, p in paths.items():
            files[fmt][n] = p
    return files


def timed(cmd: list[str]) -> tuple[float, float]:
    """Seconds of one child process: the scoring loop's own time when it prints its summary line
    ("scored N rows in T s": model load and imports excluded), else the wall time; and its CPU
    seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = [ln for ln in done.stderr.splitlines() if ln.startswith("scored ")]
    if summary:
        wall = float(summary[-1].split(" rows in ")[1].split(" s ")[0])
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="N (the files hold N and 2N rows)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--formats", default="parquet,csv")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data", type=Path, default=Path("/dev/shm/fraudscore-offline-bench"),  # noqa: S108
                   help="folder for the generated and scored files (default in memory)")
    p.add_argument("--keep-data", action="store_true", help="keep the generated files for the next run")
    p.add_argument("--generate-only", action="store_true", help="write the stand-in files, print them, stop")
    args = p.parse_args()
    files = generate(args.rows, args.data)
    if args.generate_only:
        print("\n".join(str(path) for sizes in files.values() for path in sizes.values()))
        return 0
    out_dir = ROOT / "results" / f"offline-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True)
    py, n = sys.executable, args.rows
    ort_threads = str(args.workers)
    samples: dict[str, list[float]] = {}

    def record(name: str, small: tuple[float, float], big: tuple[float, float]) -> None:
        samples.setdefault(f"{name} rows/s", []).append(n / (big[0] - small[0]))
        samples.setdefault(f"{name} cpu us/row", []).append((big[1] - small[1]) / n * 1e6)

    def ort(size: int, block: int) -> float:
        out = subprocess.run([py, "-c", ORT_CHILD, str(files["parquet"][size]), str(block), ort_threads],
                             check=True, capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        return float(out.stdout.split()[-1])

    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs}", file=sys.stderr)
        for block in (65_536, 1_000):
            t_small, t_big = ort(n, block), ort(2 * n, block)
            samples.setdefault(f"ort {block}-row blocks rows/s", []).append(n / (t_big - t_small))
        for fmt in args.formats.split(","):
            for mode, carry in MODES.items():
                outs = [args.data / f"scored-{size}.{fmt}" for size in (n, 2 * n)]
                cmd = [[py, "-m", "fraudscore", "score", str(files[fmt][size]), "-o", str(o), *carry,
                        "--workers", str(args.workers)] for size, o in zip((n, 2 * n), outs, strict=True)]
                record(f"score {fmt}, {mode}", timed(cmd[0]), timed(cmd[1]))
                for o in outs:
                    o.unlink()
            if fmt == "csv":
                record("read csv", *(timed([py, "-c", READ_CHILD, str(files["csv"][s])]) for s in (n, 2 * n)))

    medians = {k: statistics.median(v) for k, v in samples.items()}
    best_ort = max(v for k, v in medians.items() if k.startswith("ort"))
    lines = [f"# Offline scoring, {n:,} vs {2 * n:,} rows, {args.runs} runs, {args.workers} workers",
             "", "| measure | median | runs |", "|---|---|---|"]
    lines += [f"| {k} | {medians[k]:,.2f} | {', '.join(f'{x:,.1f}' for x in v)} |"
              for k, v in samples.items()]
    lines.append("")
    for fmt in args.formats.split(","):
        for mode in MODES:
            ratio = medians[f"score {fmt}, {mode} rows/s"] / best_ort
            lines.append(f"score {fmt}, {mode} / best ONNX Runtime alone: {ratio:.1%}")
    if "read csv cpu us/row" in medians:
        for mode in MODES:
            share = medians["read csv cpu us/row"] / medians[f"score csv, {mode} cpu us/row"]
            lines.append(f"CSV, {mode}: parsing is {share:.0%} of the command's CPU time")
    report = "\n".join(lines)
    print(report)
    (out_dir / "offline.md").write_text(report + "\n")
    (out_dir / "offline.json").write_text(json.dumps({"samples": samples, "medians": medians}, indent=1))
    print(f"\nwritten to {out_dir}", file=sys.stderr)
    if not args.keep_data:
        shutil.rmtree(args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
