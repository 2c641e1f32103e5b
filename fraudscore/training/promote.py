"""``python -m fraudscore promote TAG`` (``make promote TAG=...``): the gate a candidate passes to
become the production model that ``make build`` packages.

    python -m fraudscore promote fraud_detector:<version>              # the entry's held-out figures
    python -m fraudscore promote fraud_detector:<version> --data new.csv   # re-measured on a file
    python -m fraudscore promote fraud_detector:<version> --allow-standin  # a stand-in model (CI smoke)

Checks, each printed with its value and its floor:
- the entry's files match their checksums;
- trained on real data (not the generated stand-in), unless ``--allow-standin``;
- its held-out figures come from real data (the entry's own test split, or ``--data``), unless
  ``--allow-standin``;
- AUPRC and recall at the block (decision) threshold at or above the floors, on at least
  ``--min-frauds`` held-out frauds: the entry's stored test-split figures, or, with ``--data CSV``,
  figures re-measured with the served ONNX graph and the entry's own thresholds on that file (one
  the model never saw: then the gate judges the file's rows only);
- ONNX parity: the served graph and the scikit-learn model (``model.skops``) agree within 1e-5 on
  the ``--data`` rows, else on probe rows drawn from the entry's training deciles.

Exit codes: 0 promoted (prints the pinned tag), 1 a check failed (nothing changed), 2 bad arguments,
an unknown tag or unreadable data.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import artifact, stages
from ..features import FEATURES
from ..scoring.model import OnnxForest
from ..scoring.thresholds import Thresholds
from .data import DataError, Dataset, is_standin, load_csv
from .trainer import PARITY_TOLERANCE, check_parity, held_out_metrics

PROBE_ROWS = 2_000


@dataclass(frozen=True)
class Floors:
    auprc: float = 0.70
    recall: float = 0.70
    frauds: int = 30


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: str
    floor: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "value": self.value, "floor": self.floor}


def _load_model(skops_bytes: bytes) -> Any:
    """The entry's scikit-learn model (a forest, or a calibrated forest): scikit-learn's own types
    only, anything else refused before it is built."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(data=skops_bytes)
    foreign = [t for t in untrusted if not t.startswith("sklearn.")]
    if foreign:
        raise artifact.ArtifactError(f"model.skops holds types that are not scikit-learn's: {foreign}")
    return sio.loads(skops_bytes, trusted=list(untrusted))


def probe_rows(serving: dict[str, Any], n: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows spread over the training distribution: each feature drawn uniformly within a random
    decile of its training values (serving.json's decile edges), so every region of the trees the
    training data reached is exercised."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, len(FEATURES)))
    for j, name in enumerate(FEATURES):
        edges = np.asarray(serving["feature_stats"][name]["decile_edges"], dtype=np.float64)
        k = rng.integers(0, edges.size - 1, size=n)
        X[:, j] = rng.uniform(edges[k], edges[k + 1])
    return X


def _standin_check(name: str, standin: bool, source: str, allow: bool) -> Check:
    if not standin:
        return Check(name, True, source, "real data")
    return Check(name, allow, source, "real data (stand-in allowed: --allow-standin)" if allow
                 else "real data (--allow-standin to accept the stand-in)")


def gate(tag: str, floors: Floors, allow_standin: bool = False, data: Dataset | None = None) -> list[Check]:
    """Every check of the gate for the entry ``tag`` (nothing is recorded here)."""
    entry = stages.get(tag)
    checks = []
    try:
        art = artifact.load(entry.tag, model_file=artifact.SKOPS_FILE, extra_files=(artifact.ONNX_FILE,))
        stages.verify_files(entry)
        checks.append(Check("files match their checksums", True, "all", "all"))
    except artifact.ArtifactError as exc:
        return [Check("files match their checksums", False, str(exc), "all")]
    meta = entry.metadata
    trained_source = str(meta.get("data_source", "?"))
    trained_standin = bool(meta.get("trained_on_standin", is_standin(trained_source)))
    checks.append(_standin_check("trained on", trained_standin, trained_source, allow_standin))
    onnx_bytes = art.extra[artifact.ONNX_FILE]
    if data is not None:
        th = Thresholds(**art.serving["thresholds"])
        figures = held_out_metrics(data.y, OnnxForest(onnx_bytes).predict_proba(data.X), th)
        held_source, held_standin = f"{data.source} (re-measured)", data.standin
    else:
        figures = dict(meta.get("metrics", {}))
        held_source = str(meta.get("evaluation_source", trained_source)) + " (test split)"
        held_standin = bool(meta.get("evaluated_on_standin", is_standin(held_source)))
    checks.append(_standin_check("held-out data", held_standin, held_source, allow_standin))
    frauds = int(figures.get("test_frauds", 0))
    checks.append(Check("held-out frauds", frauds >= floors.frauds, str(frauds), f">= {floors.frauds}"))
    for name, key, floor in (("AUPRC (held-out)", "auprc", floors.auprc),
                             ("recall at block threshold", "recall_at_threshold", floors.recall)):
        value = figures.get(key)
        ok = isinstance(value, int | float) and value >= floor
        checks.append(Check(name, ok, "missing" if value is None else f"{value:.4f}", f">= {floor:.4f}"))
    rows = data.X if data is not None else probe_rows(art.serving)
    where = f"{rows.shape[0]:,} {'--data' if data is not None else 'probe'} rows"
    try:
        diff = check_parity(_load_model(art.model_bytes), onnx_bytes, rows)
        checks.append(Check(f"ONNX parity ({where})", True, f"{diff:.2g}", f"<= {PARITY_TOLERANCE:g}"))
    except Exception as exc:  # noqa: BLE001 (a parity failure or a model that cannot be rebuilt)
        checks.append(Check(f"ONNX parity ({where})", False, str(exc)[:80], f"<= {PARITY_TOLERANCE:g}"))
    return checks


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    vwidth = min(max(len(c.value) for c in checks), 60)
    lines = [f"{'check':{width}s}  result  {'value':{vwidth}s}  floor"]
    lines += [f"{c.name:{width}s}  {'pass' if c.passed else 'FAIL':6s}  {c.value:{vwidth}s}  {c.floor}"
              for c in checks]
    return "\n".join(lines)


def _unit(v: str) -> float:
    f = float(v)
    if not 0 <= f <= 1:
        raise argparse.ArgumentTypeError("must be in [0, 1]")
    return f


def _count(v: str) -> int:
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return n


def main(argv: list[str]) -> int:
    from ..settings import ConfigError, get_settings

    try:
        settings = get_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(prog="python -m fraudscore promote", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tag", help="the entry to promote, e.g. fraud_detector:<version> (latest: the newest)")
    p.add_argument("--data", metavar="CSV",
                   help="re-measure AUPRC and recall on this creditcard.csv-format file (rows the "
                        "model never saw) instead of the entry's stored test-split figures")
    p.add_argument("--allow-standin", action="store_true",
                   help="accept a model trained or measured on the generated stand-in (development "
                        "and CI smoke tests only: it knows nothing of real fraud)")
    p.add_argument("--min-auprc", type=_unit, default=settings.promote_min_auprc,
                   help=f"AUPRC floor (FRAUD_PROMOTE_MIN_AUPRC, now {settings.promote_min_auprc})")
    p.add_argument("--min-recall", type=_unit, default=settings.promote_min_recall,
                   help=f"floor of recall at the block threshold (FRAUD_PROMOTE_MIN_RECALL, now "
                        f"{settings.promote_min_recall})")
    p.add_argument("--min-frauds", type=_count, default=settings.promote_min_frauds,
                   help=f"fewest held-out frauds (FRAUD_PROMOTE_MIN_FRAUDS, now "
                        f"{settings.promote_min_frauds})")
    args = p.parse_args(argv)
    floors = Floors(args.min_auprc, args.min_recall, args.min_frauds)
    try:
        data = load_csv(args.data) if args.data else None
        checks = gate(args.tag, floors, args.allow_standin, data)
        tag = stages.get(args.tag).tag
    except (DataError, artifact.ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"promotion gate for {tag}")
    print(table(checks))
    if not all(c.passed for c in checks):
        failed = ", ".join(c.name for c in checks if not c.passed)
        print(f"refused: {tag} stays a {stages.get(tag).stage} (failed: {failed})", file=sys.stderr)
        return 1
    retired = stages.promote(tag, {"checks": [c.as_dict() for c in checks],
                                   "allow_standin": args.allow_standin, "data": args.data})
    for old in retired:
        print(f"retired {old}")
    print(f"promoted {tag} to production; `make build` packages it:")
    print(tag)
    return 0
