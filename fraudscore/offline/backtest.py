"""``python -m fraudscore backtest LABELLED_FILE``: choose block and review thresholds from evidence.

Scores a labelled file (CSV or Parquet: the 30 features and a 0/1 label), or the labelled
decisions of a decision store (``--from-store URL [--since DATE]``), with the served model,
exactly as ``score`` does, then for every threshold prints alert rate, precision, recall and
expected cost, and recommends the cheapest (block, review) pair whose review band fits
``--reviews-per-day``. Writes the table (CSV), a summary (JSON) and the plot (PNG) to ``--out``.
Apply the recommendation with the service's own settings, e.g.
``FRAUD_DECISION_THRESHOLD=12 FRAUD_REVIEW_THRESHOLD=5``. Exit status as ``score``'s.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..features import FEATURES
from ..scoring.thresholds import to_scores
from ..store.queries import since_argument
from .engine import BadRows, BlockScorer, ModelError, feature_matrix, load_payload
from .report import threshold_plot
from .score import in_order
from .sources import Chunk, InputError, Source, file_format, open_source
from .store_source import LABEL, StoreSource
from .sweep import Costs, Outcome, ScoreCounts, outcome, recommend, sweep

_TIME, _AMOUNT = FEATURES.index("Time"), FEATURES.index("Amount")
SHOWN = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 100)


def _amount_or_number(v: str) -> float | None:
    if v == "amount":
        return None
    return _non_negative(v)


def _non_negative(v: str) -> float:
    f = float(v)
    if not f >= 0 or f == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number >= 0")
    return f


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fraudscore backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("input", nargs="?",
                   help="labelled CSV or Parquet file: Time, V1-V28, Amount and the label")
    p.add_argument("--from-store", metavar="URL",
                   help="instead of a file: the labelled decisions of a decision store (sqlite:///... or "
                        "postgresql://...), each transaction's latest decision with its current label")
    p.add_argument("--since", type=since_argument, metavar="DATE",
                   help="with --from-store: only decisions made from this date (UTC unless it says)")
    p.add_argument("--label-column", default="Class", help="0/1 label, 1 = fraud (default Class)")
    p.add_argument("--miss-cost", type=_amount_or_number, default=None, metavar="amount|COST",
                   help="cost of a fraud let through: 'amount' (its Amount, the default) or a number")
    p.add_argument("--decline-cost", type=_non_negative, default=10.0,
                   help="cost of blocking a legitimate transaction (default 10)")
    p.add_argument("--review-cost", type=_non_negative, default=5.0, help="cost of one review (default 5)")
    p.add_argument("--reviews-per-day", type=_non_negative, default=500.0,
                   help="review capacity (default 500 a day)")
    p.add_argument("--days", type=float, help="days the file covers (default: from its Time column)")
    p.add_argument("--model", help="model-store tag (default: FRAUD_MODEL_TAG, else fraud_detector:latest)")
    p.add_argument("--out", type=Path,
                   help="folder for backtest.csv, .json and .png (default results/backtest-<time>)")
    p.add_argument("--input-format", choices=["csv", "parquet"])
    p.add_argument("--chunk-rows", type=int, default=65_536)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    if (args.input is None) == (args.from_store is None):
        p.error("give a labelled file or --from-store URL (one of them)")
    if args.since is not None and args.from_store is None:
        p.error("--since needs --from-store")
    if args.days is not None and not 0 < args.days < float("inf"):
        p.error("--days must be a positive number")
    if args.chunk_rows < 1 or args.workers < 1:
        p.error("--chunk-rows and --workers must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    label = args.label_column
    try:
        if args.from_store:
            source: Source = StoreSource(args.from_store, args.since, args.chunk_rows)
            label = LABEL
        else:  # ids and other columns play no part in a backtest
            source = open_source(args.input, file_format(args.input, args.input_format), args.chunk_rows,
                                 [label], ignore_extra=True)
        payload, _ = load_payload(args.model)
    except InputError as exc:
        return _fail(str(exc), 2)
    except ModelError as exc:
        return _fail(str(exc), 3)
    scorer = BlockScorer(payload)

    def count(chunk: Chunk) -> tuple[ScoreCounts, float, float]:
        y = _labels(chunk, label, source.path)
        try:
            scorer.check(chunk.features)
        except BadRows as exc:
            raise InputError(f"{source.path}, {chunk.where(exc.violation.row)}, {exc}") from None
        scores = to_scores(scorer.forest.predict_proba(feature_matrix(chunk.features)))
        times = chunk.features[_TIME]
        return ScoreCounts.of(scores, y, chunk.features[_AMOUNT]), float(times.min()), float(times.max())

    counts, first, last = ScoreCounts.empty(), np.inf, -np.inf
    try:
        for part, lo, hi in in_order(source.chunks(), count, args.workers):
            counts, first, last = counts + part, min(first, lo), max(last, hi)
    except InputError as exc:
        return _fail(str(exc), 2)
    stored = isinstance(source, StoreSource)
    days = args.days or (source.days if stored else (last - first) / 86_400)
    if not days > 0:
        span = "the decisions share one time" if stored else f"every Time is {first:g}"
        return _fail(f"{source.path}: {span}, so the span is unknown; give --days", 2)
    if counts.fraud.sum() == 0:
        what = "no labelled decision is fraud" if stored else f"no row has {label} = 1"
        return _fail(f"{source.path}: {what}; a backtest needs frauds", 2)
    counts = counts.with_days(days)
    costs = Costs(args.miss_cost, args.decline_cost, args.review_cost)
    best = recommend(counts, costs, args.reviews_per_day)
    current = outcome(counts, costs, payload.block, payload.review)
    curves = sweep(counts, costs)
    out = args.out or Path("results") / f"backtest-{time.strftime('%Y%m%d-%H%M%S')}"
    print(_report(args, str(source.path), payload.version, counts, costs, curves, best, current))
    try:
        _write(out, curves, counts, best, current, args, str(source.path), payload.version)
    except OSError as exc:
        return _fail(f"cannot write {out}: {exc.strerror or exc}", 1)
    print(f"\ntable, summary and plot: {out}/backtest.csv, backtest.json, backtest.png")
    return 0


def _labels(chunk: Chunk, label: str, path: Path | str) -> np.ndarray:
    col = chunk.batch.column(label)
    try:
        values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        values = np.array([_float_or_nan(v) for v in col.to_pylist()])
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"{path}, {chunk.where(row)}, column {label}: {col[row].as_py()!r} is not 0 or 1")
    return values.astype(np.int8)


def _float_or_nan(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _report(args: argparse.Namespace, name: str, version: str, counts: ScoreCounts, costs: Costs,
            curves: dict[str, np.ndarray], best: Outcome, current: Outcome) -> str:
    miss = "its Amount" if costs.miss is None else _money(costs.miss)
    lines = [
        f"backtest of {version} on {name}: {counts.rows:,} rows, {int(counts.fraud.sum()):,} frauds, "
        f"{counts.days:.2f} days",
        f"costs: missed fraud = {miss}, false decline = {_money(costs.decline)}, review = "
        f"{_money(costs.review)}; review capacity {args.reviews_per_day:,.0f} a day",
        "",
        "block-only policy (flag at score >= t):",
        f"{'t':>4} {'alerts/day':>11} {'alert rate':>11} {'precision':>10} {'recall':>7} {'cost/day':>12}",
    ]
    marks = [(best.block, "recommended block"), (best.review, "recommended review"),
             (current.block, "block in force"), (current.review, "review in force")]
    for t in sorted(set(SHOWN) | {k for k, _ in marks}):
        i = t - 1
        names = [name for k, name in marks if k == t]
        note = "  <- " + ", ".join(names) if names else ""
        lines.append(f"{t:>4} {curves['alerts'][i] / counts.days:>11,.1f} {curves['alert_rate'][i]:>11.4%} "
                     f"{curves['precision'][i]:>10.3f} {curves['recall'][i]:>7.3f} "
                     f"{curves['cost'][i] / counts.days:>12,.0f}{note}")
    lines += ["", f"{'policy':<32} {'cost/day':>10} {'reviews/day':>12} {'blocks/day':>11} {'recall':>7} "
                  f"{'precision':>10}"]
    for name, o in (("in force", current), ("recommended", best)):
        lines.append(f"{name + f' (block {o.block}, review {o.review})':<32} {o.cost_per_day:>10,.0f} "
                     f"{o.reviews_per_day:>12,.1f} {o.blocked_per_day:>11,.1f} {o.recall:>7.3f} "
                     f"{o.block_precision:>10.3f}")
    lines += ["", f"apply it: FRAUD_DECISION_THRESHOLD={best.block} FRAUD_REVIEW_THRESHOLD={best.review} "
                  "(read by the service and by the score command)"]
    return "\n".join(lines)


def _write(out: Path, curves: dict[str, np.ndarray], counts: ScoreCounts, best: Outcome, current: Outcome,
           args: argparse.Namespace, name: str, version: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "backtest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*curves, "cost_per_day"])
        for i in range(100):
            w.writerow([*(v[i].item() for v in curves.values()), curves["cost"][i] / counts.days])
    summary = {"model": version, "input": name, "rows": counts.rows,
               "frauds": int(counts.fraud.sum()), "days": counts.days,
               "costs": {"miss": "amount" if args.miss_cost is None else args.miss_cost,
                         "decline": args.decline_cost, "review": args.review_cost},
               "reviews_per_day": args.reviews_per_day,
               "recommended": asdict(best), "in_force": asdict(current),
               "apply": {"FRAUD_DECISION_THRESHOLD": best.block, "FRAUD_REVIEW_THRESHOLD": best.review}}
    (out / "backtest.json").write_text(json.dumps(summary, indent=1))
    marks = {"recommended block": (best.block, "tab:red"), "recommended review": (best.review, "tab:purple"),
             "block in force": (current.block, "grey")}
    per_day = {**curves, "cost": curves["cost"] / counts.days}
    (out / "backtest.png").write_bytes(threshold_plot(
        per_day, marks, f"backtest of {version}: {counts.rows:,} rows, {counts.days:.1f} days",
        cost_label="expected cost a day (block only)"))


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status

