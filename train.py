"""Train the fraud model and register it in the BentoML model store.

    python train.py                         # generated stand-in of creditcard.csv
    python train.py --data creditcard.csv   # the real data set ("Time","V1",...,"Amount","Class")
    python train.py --from-store URL [--since 2026-01-01] [--data creditcard.csv]
                                            # labelled decisions of the decision store (plus a CSV)
    python train.py --import-joblib fraud-model.joblib --trust-pickle [--data creditcard.csv]
                                            # the FastAPI service's model, evaluated and registered
    python train.py --help                  # every option

Every new entry is a candidate; `make promote TAG=...` makes one the production model.
--import-joblib loads a pickle, which runs whatever code the file names: trusted files only.

Exit codes: 0 registered, 2 bad arguments or data, 3 the model failed a check (nothing registered).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

from fraudscore.store.queries import since_argument  # noqa: E402
from fraudscore.training.data import DataError, combine, generate, load_csv, load_store  # noqa: E402
from fraudscore.training.trainer import ParityError, TrainConfig, TrainResult, train  # noqa: E402


def _max_features(v: str) -> str | float:
    if v in ("sqrt", "log2"):
        return v
    try:
        f = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError("must be sqrt, log2 or a fraction in (0, 1]") from None
    if not 0 < f <= 1:
        raise argparse.ArgumentTypeError("a fraction must be in (0, 1]")
    return f


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def _seed(v: str) -> int:
    n = int(v)
    if not 0 <= n < 2**32:
        raise argparse.ArgumentTypeError("must be in [0, 2**32)")
    return n


def _jobs(v: str) -> int:
    n = int(v)
    if n == 0:
        raise argparse.ArgumentTypeError("must be a number of cores, or -1 for all")
    return n


def _share(v: str) -> float:
    f = float(v)
    if not 0 <= f <= 0.5:
        raise argparse.ArgumentTypeError("must be a share of traffic in [0, 0.5]")
    return f


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="path to creditcard.csv; without it a stand-in is generated")
    p.add_argument("--from-store", metavar="URL",
                   help="train on the labelled decisions of this decision store (sqlite:///path or "
                        "postgresql://...); with --data, on both")
    p.add_argument("--since", type=since_argument, metavar="DATE",
                   help="with --from-store: only decisions made from this date (UTC unless it says)")
    p.add_argument("--rows", type=_positive, default=100_000, help="stand-in size (default 100000)")
    p.add_argument("--seed", type=_seed, default=42, help="seed for data, split and forest")
    p.add_argument("--trees", type=_positive, default=100, help="number of trees (default 100)")
    p.add_argument("--max-depth", type=_positive, default=None, help="tree depth (default unlimited)")
    p.add_argument("--min-samples-leaf", type=_positive, default=1)
    p.add_argument("--max-features", type=_max_features, default="sqrt")
    p.add_argument("--class-weight", choices=["balanced", "balanced_subsample"], default=None)
    p.add_argument("--jobs", type=_jobs, default=-1, help="parallel jobs for fitting (default all cores)")
    p.add_argument("--review-budget", type=_share, default=0.005,
                   help="largest share of traffic the review band may hold (default 0.005)")
    p.add_argument("--calibration", choices=["none", "sigmoid"], default="none",
                   help="serve sigmoid-calibrated probabilities (default none; the report measures both)")
    p.add_argument("--import-joblib", metavar="PATH",
                   help="instead of training, import a fitted RandomForestClassifier (the FastAPI "
                        "service's fraud-model.joblib), evaluated on --data or the stand-in. A joblib "
                        "file is a pickle: loading it RUNS CODE. Trusted files only; needs --trust-pickle")
    p.add_argument("--trust-pickle", action="store_true",
                   help="with --import-joblib: I made this file or trust whoever did")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _import(args: argparse.Namespace, data, cfg: TrainConfig) -> TrainResult:
    from fraudscore.training.importer import import_joblib

    return import_joblib(args.import_joblib, data, cfg)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.since and not args.from_store:
        print("error: --since needs --from-store", file=sys.stderr)
        return 2
    if args.import_joblib and not args.trust_pickle:
        print("error: --import-joblib loads a pickle, which runs any code the file holds: add "
              "--trust-pickle if you made this file or trust whoever did", file=sys.stderr)
        return 2
    if args.import_joblib and args.from_store:
        print("error: --import-joblib evaluates on --data or the stand-in, not --from-store", file=sys.stderr)
        return 2
    cfg = TrainConfig(
        n_estimators=args.trees, max_depth=args.max_depth, min_samples_leaf=args.min_samples_leaf,
        max_features=args.max_features, class_weight=args.class_weight, n_jobs=args.jobs,
        seed=args.seed, review_budget=args.review_budget, calibration=args.calibration,
    )
    try:
        if args.from_store:
            data = load_store(args.from_store, args.since)
            if args.data:
                data = combine(load_csv(args.data), data)
        else:
            data = load_csv(args.data) if args.data else generate(args.rows, seed=args.seed)
        result = _import(args, data, cfg) if args.import_joblib else train(data, cfg, progress=not args.quiet)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ParityError as exc:
        print(f"error: model not registered: {exc}", file=sys.stderr)
        return 3
    print(f"registered {result.tag} (stage: candidate; `make promote TAG={result.tag}` to ship it)")
    print(f"thresholds: block >= {result.thresholds.block}, review >= {result.thresholds.review}")
    for name, value in result.metrics.items():
        print(f"  {name:24s} {value}")
    print("calibration (test split: Brier / AUPRC): " + ", ".join(
        f"{m} {f['brier']:.6f} / {f['auprc']:.4f}" for m, f in result.calibration.items()))
    if args.calibration == "none":
        print("served probabilities: the forest's, uncalibrated (--calibration sigmoid to calibrate)")
    else:
        print(f"served probabilities: CALIBRATED ({args.calibration}, fitted on the validation split); "
              "reason codes will not add up to them")
    print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
