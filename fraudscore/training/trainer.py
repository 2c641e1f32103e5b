"""Training: split, fit, choose thresholds, export to ONNX, check parity, register.

``train.py`` parses arguments and calls :func:`train`; this module does the work.
"""

from __future__ import annotations

import io
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifact
from ..features import FEATURES
from ..ops import drift
from ..scoring.explain import Explainer
from ..scoring.model import OnnxForest
from ..scoring.thresholds import Thresholds, choose, to_scores
from . import calibration, report
from .calibration import OFFERED
from .data import Dataset

PARITY_TOLERANCE = 1e-5
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)


EXPLAIN_CHECK_ROWS = 300  # test rows (besides every test fraud) whose explanations are checked


class ParityError(RuntimeError):
    """The ONNX export does not reproduce scikit-learn's probabilities, or the explanations do
    not add up to the ONNX probabilities."""


@dataclass(frozen=True)
class TrainConfig:
    n_estimators: int = 100
    max_depth: int | None = None
    min_samples_leaf: int = 1
    max_features: str | float = "sqrt"
    class_weight: str | None = None
    n_jobs: int = -1
    seed: int = 42
    val_size: float = 0.2
    test_size: float = 0.2
    review_budget: float = 0.005
    calibration: str = "none"  # or "sigmoid" (training/calibration.py): off unless asked for


@dataclass(frozen=True)
class TrainResult:
    tag: str
    metrics: dict[str, float]
    thresholds: Thresholds
    report: Path  # the training report (report.html) inside the model entry
    calibration: dict[str, dict[str, float]]  # test-split Brier / log loss / AUPRC per method


def _split(y: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(y.size)
    rest, test = train_test_split(idx, test_size=cfg.test_size, stratify=y, random_state=cfg.seed)
    train, val = train_test_split(rest, test_size=cfg.val_size / (1 - cfg.test_size),
                                  stratify=y[rest], random_state=cfg.seed)
    return train, val, test


def _fit(X: np.ndarray, y: np.ndarray, cfg: TrainConfig, progress: bool) -> Any:
    """Grow the forest in steps so a progress bar can follow it (same trees as one fit)."""
    from sklearn.ensemble import RandomForestClassifier
    from tqdm import tqdm

    forest = RandomForestClassifier(
        n_estimators=0, warm_start=True, max_depth=cfg.max_depth,
        min_samples_leaf=cfg.min_samples_leaf, max_features=cfg.max_features,
        class_weight=cfg.class_weight, n_jobs=cfg.n_jobs, random_state=cfg.seed,
    )
    step = max(1, cfg.n_estimators // 10)
    with tqdm(total=cfg.n_estimators, desc="training trees", unit="tree", disable=not progress) as bar:
        while forest.n_estimators < cfg.n_estimators:
            grow = min(step, cfg.n_estimators - forest.n_estimators)
            forest.set_params(n_estimators=forest.n_estimators + grow)
            forest.fit(X, y)
            bar.update(grow)
    return forest


def _to_onnx(model: Any) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("transactions", FloatTensorType([None, len(FEATURES)]))],
                  options={id(model): {"zipmap": False}})
    return onx.SerializeToString()


def feature_stats(X: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per-feature training statistics for out-of-distribution and drift checks."""
    qs = np.quantile(X, QUANTILES, axis=0)
    deciles = np.quantile(X, np.linspace(0, 1, 11), axis=0)
    out = {}
    for j, name in enumerate(FEATURES):
        col = X[:, j]
        out[name] = {
            "mean": float(col.mean()), "std": float(col.std()),
            "min": float(col.min()), "max": float(col.max()),
            "quantiles": {f"{q:g}": float(v) for q, v in zip(QUANTILES, qs[:, j], strict=True)},
            "decile_edges": [float(v) for v in deciles[:, j]],
        }
    return out


def alert_rates(scores: np.ndarray) -> list[float]:
    """The share of ``scores`` (0-100) at or above each score t = 0..100."""
    counts = np.bincount(np.asarray(scores, dtype=np.int64), minlength=101)
    return (np.cumsum(counts[::-1])[::-1] / max(len(scores), 1)).tolist()


def held_out_metrics(y: np.ndarray, proba: np.ndarray, th: Thresholds) -> dict[str, float]:
    """AUPRC, ROC-AUC, precision and recall at the block threshold, review share, of held-out rows."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = to_scores(proba)
    y = y.astype(bool)
    block = scores >= th.block
    flagged = scores >= th.review
    tp = int((block & y).sum())
    return {
        "auprc": round(float(average_precision_score(y, proba)), 4),
        "roc_auc": round(float(roc_auc_score(y, proba)), 4),
        "precision_at_threshold": round(tp / max(int(block.sum()), 1), 4),
        "recall_at_threshold": round(tp / max(int(y.sum()), 1), 4),
        "recall_with_review": round(int((flagged & y).sum()) / max(int(y.sum()), 1), 4),
        "review_share": round(float(((scores >= th.review) & ~block).mean()), 5),
        "test_rows": int(y.size),
        "test_frauds": int(y.sum()),
    }


def _explainer(forest: Any, X_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
               test_proba: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """explain.npz, read back as serving reads it; base value + contributions must give the ONNX
    probability of every test fraud and of the first test rows."""
    from .explain_export import export

    data, stats = export(forest, X_train)
    explainer = Explainer.from_bytes(data, {"features": list(FEATURES)})
    rows = np.union1d(np.flatnonzero(y_test), np.arange(min(EXPLAIN_CHECK_ROWS, y_test.size)))
    total = explainer.base_value + explainer.contributions(X_test[rows]).sum(axis=1)
    diff = float(np.max(np.abs(total - test_proba[rows])))
    if not diff <= PARITY_TOLERANCE:
        raise ParityError(f"explanations differ from the ONNX probabilities by {diff:.3g} "
                          f"(> {PARITY_TOLERANCE})")
    return data, {**stats, "base_value": explainer.base_value, "onnx_max_abs_diff": diff}


def _versions() -> dict[str, str]:
    pkgs = ("bentoml", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "skops")
    return {"python": platform.python_version(), **{p: version(p) for p in pkgs}}


def check_parity(model: Any, onnx_bytes: bytes, X: np.ndarray) -> float:
    """The largest difference between the ONNX graph's and ``model``'s fraud probabilities on
    ``X``; :class:`ParityError` past :data:`PARITY_TOLERANCE`."""
    onnx_proba = OnnxForest(onnx_bytes).predict_proba(X)
    diff = float(np.max(np.abs(model.predict_proba(X)[:, 1] - onnx_proba)))
    if not diff <= PARITY_TOLERANCE:
        raise ParityError(f"ONNX differs from scikit-learn by {diff:.3g} (> {PARITY_TOLERANCE})")
    return diff


def train(data: Dataset, cfg: TrainConfig = TrainConfig(), progress: bool = True,
          log: Any = print) -> TrainResult:
    """Train, verify and register; nothing is registered if any step fails."""
    X, y = data.X, data.y
    split = _split(y, cfg)
    train_idx, val_idx, test_idx = split
    log(f"data: {data.source}: {y.size} rows, {int(y.sum())} frauds "
        f"(train {train_idx.size} / validation {val_idx.size} / test {test_idx.size})")
    if cfg.calibration not in OFFERED:
        raise ValueError(f"calibration must be one of {OFFERED}, got {cfg.calibration!r}")
    forest = _fit(X[train_idx], y[train_idx], cfg, progress)
    origin = {"origin": "train.py", "data_source": data.source, "data_sha256": data.sha256,
              "trained_on_standin": data.standin}
    described = (f"{cfg.n_estimators} trees, max_depth {cfg.max_depth}, "
                 f"min_samples_leaf {cfg.min_samples_leaf}, max_features {cfg.max_features}")
    hyper = {k: "none" if v is None else v for k, v in cfg.__dict__.items()}
    return finish(forest, data, split, cfg, origin, hyper, described, log)


def finish(forest: Any, data: Dataset, split: tuple[np.ndarray, np.ndarray, np.ndarray],
           cfg: TrainConfig, origin: dict[str, Any], hyperparameters: dict[str, Any],
           described: str, log: Any = print) -> TrainResult:
    """Everything after the fit, for a trained or an imported forest: calibration study, ONNX
    export and parity on the test split, explainer, thresholds (validation split), metrics (test
    split), report, and one new entry, a candidate. ``origin`` goes into the metadata (data
    source, where the forest came from); nothing is registered if any step fails."""
    import skops.io as sio

    X, y = data.X, data.y
    train_idx, val_idx, test_idx = split
    study = calibration.study(forest, X[val_idx], y[val_idx], X[test_idx], y[test_idx])
    # what is served: the forest, or (asked for) the forest behind its calibration
    model = forest if cfg.calibration == "none" else study.models[cfg.calibration]

    log("exporting to ONNX and checking parity on the test split")
    onnx_bytes = _to_onnx(model)
    engine = OnnxForest(onnx_bytes)
    test_proba = engine.predict_proba(X[test_idx])
    diff = check_parity(model, onnx_bytes, X[test_idx])

    log("exporting the explainer and checking that explanations add up to the ONNX probabilities")
    # Reasons explain the forest: with calibration on, its probability before the calibration
    # (TreeSHAP adds up to a tree ensemble's output, not to a sigmoid of it).
    raw_proba = test_proba if model is forest else \
        forest.predict_proba(X[test_idx].astype(np.float32))[:, 1]
    explain_bytes, explain_stats = _explainer(forest, X[train_idx], X[test_idx], y[test_idx], raw_proba)
    explain_stats["explains"] = "the served probability" if model is forest else \
        "the forest's probability before calibration"

    val_scores = to_scores(engine.predict_proba(X[val_idx]))
    thresholds = choose(val_scores, y[val_idx], cfg.review_budget)
    metrics = held_out_metrics(y[test_idx], test_proba, thresholds)
    metrics["brier"] = study.metrics[cfg.calibration]["brier"]
    metrics["onnx_max_abs_diff"] = diff

    importances = sorted(zip(FEATURES, forest.feature_importances_.tolist(), strict=True),
                         key=lambda kv: -kv[1])
    serving = {
        "features": list(FEATURES),
        "thresholds": thresholds.as_dict(),
        "feature_stats": feature_stats(X[train_idx]),
        "feature_importances": {k: round(v, 6) for k, v in importances},
        # drift (fraudscore/ops/drift.py): training deciles per feature, validation scores
        "drift_reference": drift.reference(X[train_idx], FEATURES, val_scores),
        # target-rate thresholds (fraudscore/scoring/adaptive.py): share of validation scores >= t
        "threshold_reference": {"split": "validation", "alert_rates": alert_rates(val_scores)},
    }
    metadata = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **origin,
        # the data the held-out metrics and thresholds come from (for a trained model, its own)
        "evaluation_source": data.source,
        "evaluated_on_standin": data.standin,
        "rows": int(y.size),
        "frauds": int(y.sum()),
        "metrics": metrics,
        "thresholds": thresholds.as_dict(),
        "hyperparameters": hyperparameters,
        # calibrated probabilities are served only when asked for; the report says how much it helps
        "calibration": {"served": cfg.calibration, "fitted_on": "validation split",
                        "test_split": study.metrics},
        "versions": _versions(),
        "explain": explain_stats,
    }
    log("writing the training report")
    report_files = report.build(
        y[test_idx], test_proba, thresholds, importances, metrics, study, cfg.calibration,
        {"trained at": metadata["trained_at"], "origin": origin["origin"],
         "data": f"{data.source} (SHA-256 {data.sha256[:16]}...)",
         "rows": f"{y.size:,} ({int(y.sum()):,} frauds); train / validation / test "
                 f"{train_idx.size:,} / {val_idx.size:,} / {test_idx.size:,}",
         "forest": described})
    skops_buf = io.BytesIO()
    sio.dump(model, skops_buf)  # a calibrated entry holds the calibrated classifier (forest inside)
    tag = artifact.register(
        {artifact.ONNX_FILE: onnx_bytes, artifact.SKOPS_FILE: skops_buf.getvalue(),
         artifact.SERVING_FILE: json.dumps(serving, indent=1).encode(),
         artifact.EXPLAIN_FILE: explain_bytes, **report_files},
        metadata,
        # the stage is not a label (labels cannot change after saving): fraudscore/stages.py
        labels={"framework": "scikit-learn", "engine": "onnxruntime", "calibration": cfg.calibration},
    )
    import bentoml

    return TrainResult(tag, metrics, thresholds, Path(bentoml.models.get(tag).path) / report.HTML_FILE,
                       study.metrics)
