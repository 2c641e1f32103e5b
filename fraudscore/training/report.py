"""The training report: the evidence behind a model, saved in its model-store entry.

Six PNG plots of the test split (PR curve, ROC curve, score distributions by class, precision /
recall / alert rate against the threshold with the chosen thresholds marked, feature importances,
calibration curves) and ``report.html``, which shows them with the metrics. About 300 KB.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..offline.report import png, threshold_plot
from ..offline.sweep import Costs, ScoreCounts, sweep
from ..scoring.thresholds import Thresholds, to_scores
from .calibration import CalibrationStudy

HTML_FILE = "report.html"
PLOTS = {  # file -> caption
    "report-pr.png": "Precision-recall curve (test split)",
    "report-roc.png": "ROC curve (test split)",
    "report-scores.png": "Scores by class (test split)",
    "report-thresholds.png": "Precision, recall and alert rate against the threshold",
    "report-importances.png": "Feature importances (mean decrease in impurity)",
    "report-calibration.png": "Calibration (reliability) on the test split",
}


def _figure(size: tuple[float, float] = (6.5, 4.2)) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _pr(y: np.ndarray, p: np.ndarray, th: Thresholds, auprc: float) -> bytes:
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, p)
    fig = _figure()
    ax = fig.add_subplot()
    ax.step(recall, precision, where="post", label=f"AUPRC {auprc:.3f}")
    s = to_scores(p)
    for name, t, colour in (("block", th.block, "tab:red"), ("review", th.review, "tab:purple")):
        flagged = s >= t
        caught = int((flagged & (y == 1)).sum())
        ax.plot(caught / max(int(y.sum()), 1), caught / max(int(flagged.sum()), 1), "o", color=colour,
                label=f"flag at score >= {t} ({name})")
    ax.axhline(y.mean(), color="grey", linestyle=":", label=f"fraud rate {y.mean():.2%}")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=PLOTS["report-pr.png"])
    ax.legend(loc="lower left")
    return png(fig)


def _roc(y: np.ndarray, p: np.ndarray, auc: float) -> bytes:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"ROC-AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=PLOTS["report-roc.png"])
    ax.legend(loc="lower right")
    return png(fig)


def _scores(y: np.ndarray, p: np.ndarray, th: Thresholds) -> bytes:
    s = to_scores(p)
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.arange(0, 102)
    for label, mask, colour in (("legitimate", y == 0, "tab:blue"), ("fraud", y == 1, "tab:red")):
        ax.hist(s[mask], bins=bins, density=True, histtype="step", color=colour, linewidth=1.5,
                label=f"{label} ({int(mask.sum()):,})")
    ax.axvline(th.block, color="tab:red", linestyle="--", linewidth=1, label=f"block >= {th.block}")
    ax.axvline(th.review, color="tab:purple", linestyle="--", linewidth=1, label=f"review >= {th.review}")
    ax.set_yscale("log")
    ax.set(xlabel="fraud score (0-100)", ylabel="share of the class (log)", title=PLOTS["report-scores.png"])
    ax.legend()
    return png(fig)


def _importances(importances: Sequence[tuple[str, float]]) -> bytes:
    fig = _figure((6.5, 6.5))
    ax = fig.add_subplot()
    names, values = zip(*reversed(importances), strict=True)
    ax.barh(names, values, color="tab:blue")
    ax.set(xlabel="importance", title=PLOTS["report-importances.png"])
    ax.tick_params(axis="y", labelsize=7)
    return png(fig)


# probability bins of the reliability plot: frauds are rare, so most of the action is below 0.1
CALIBRATION_EDGES = np.array([0.0, 1e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 0.6, 1.0 + 1e-9])


def reliability(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean predicted probability, observed fraud rate and row count of each non-empty bin."""
    bins = np.digitize(p, CALIBRATION_EDGES[1:-1])
    count = np.bincount(bins, minlength=CALIBRATION_EDGES.size - 1)
    keep = count > 0
    predicted = np.bincount(bins, weights=p, minlength=count.size)[keep] / count[keep]
    observed = np.bincount(bins, weights=y, minlength=count.size)[keep] / count[keep]
    return predicted, observed, count[keep]


def _calibration(y: np.ndarray, study: CalibrationStudy, served: str) -> bytes:
    fig = _figure((6.5, 4.8))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for method, p in study.test_proba.items():
        predicted, observed, _ = reliability(y, p)
        name = "forest (uncalibrated)" if method == "none" else f"{method}, fitted on validation"
        mark = " [served]" if method == served else ""
        ax.plot(predicted, observed, "o-", markersize=4,
                label=f"{name}: Brier {study.metrics[method]['brier']:.6f}{mark}")
    ax.set_xscale("symlog", linthresh=1e-4)
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set(xlabel="mean predicted probability (bin)", ylabel="observed fraud rate (bin)",
           title=PLOTS["report-calibration.png"])
    ax.legend(fontsize=8, loc="upper left")
    return png(fig)


def build(y: np.ndarray, proba: np.ndarray, thresholds: Thresholds, importances: Sequence[tuple[str, float]],
          metrics: Mapping[str, Any], study: CalibrationStudy, calibration: str,
          info: Mapping[str, Any]) -> dict[str, bytes]:
    """The report's files, named as they go into the model entry. ``proba`` are the served
    probabilities (ONNX) on the test split; ``info`` the run's metadata shown at the top."""
    y = np.asarray(y).astype(int)
    curves = sweep(ScoreCounts.of(to_scores(proba), y, np.zeros(y.size)), Costs(0.0, 0.0, 0.0))
    marks = {"block": (thresholds.block, "tab:red"), "review": (thresholds.review, "tab:purple")}
    files = {
        "report-pr.png": _pr(y, proba, thresholds, metrics["auprc"]),
        "report-roc.png": _roc(y, proba, metrics["roc_auc"]),
        "report-scores.png": _scores(y, proba, thresholds),
        "report-thresholds.png": threshold_plot(curves, marks, f"{PLOTS['report-thresholds.png']} (test)"),
        "report-importances.png": _importances(importances),
        "report-calibration.png": _calibration(y, study, calibration),
    }
    files[HTML_FILE] = _html(metrics, thresholds, study, calibration, info).encode()
    return files


def _rows(pairs: Sequence[tuple[str, Any]]) -> str:
    return "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in pairs)


def _html(metrics: Mapping[str, Any], th: Thresholds, study: CalibrationStudy, calibration: str,
          info: Mapping[str, Any]) -> str:
    cal_rows = "\n".join(
        f"<tr><th>{html.escape(m)}{' (served)' if m == calibration else ''}</th>"
        f"<td>{f['brier']:.7f}</td><td>{f['log_loss']:.6f}</td><td>{f['auprc']:.4f}</td></tr>"
        for m, f in study.metrics.items())
    figures = "\n".join(f'<figure><img src="{name}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                        for name, caption in PLOTS.items())
    state = "off (served probabilities are the forest's)" if calibration == "none" else (
        f"ON: {calibration}, fitted on the validation split; reason codes no longer add up to the "
        "served probability")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fraud_detector training report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}figure{{display:inline-block;margin:8px}}
img{{max-width:470px}}</style></head><body>
<h1>fraud_detector training report</h1>
<table>{_rows([*info.items(), ("thresholds", f"block >= {th.block}, review >= {th.review}"),
               ("calibration", state)])}</table>
<h2>Test metrics</h2>
<table>{_rows(list(metrics.items()))}</table>
<h2>Calibration (test split; calibrations fitted on the validation split)</h2>
<table><tr><th>method</th><th>Brier</th><th>log loss</th><th>AUPRC</th></tr>
{cal_rows}</table>
<h2>Plots</h2>
{figures}
</body></html>
"""
