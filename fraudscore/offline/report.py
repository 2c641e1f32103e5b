"""Plots of thresholds against labelled data, shared by the backtest and the training report.

matplotlib's object API (``Figure``), never pyplot: no global state, no display backend needed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np

# (label, threshold, colour) lines drawn on a threshold plot
Marks = Mapping[str, tuple[int, str]]


def png(fig: object, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")  # type: ignore[attr-defined]
    return buf.getvalue()


def threshold_plot(curves: Mapping[str, np.ndarray], marks: Marks, title: str,
                   cost_label: str | None = None) -> bytes:
    """Precision, recall and alert rate (log scale) against the score threshold 1-100, the
    ``marks`` as vertical lines, and the expected cost on a second axis when ``cost_label``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    t = curves["threshold"]
    ax.plot(t, curves["precision"], label="precision", color="tab:blue")
    ax.plot(t, curves["recall"], label="recall", color="tab:orange")
    ax.set_xlabel("score threshold (flag at score >= t)")
    ax.set_ylabel("precision / recall")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(1, 100)
    rate = ax.twinx()
    rate.plot(t, np.maximum(curves["alert_rate"], 1e-7), label="alert rate", color="tab:green", linestyle=":")
    rate.set_yscale("log")
    rate.set_ylabel("alert rate (share of traffic, log)")
    handles = ax.get_lines() + rate.get_lines()
    if cost_label is not None:
        cost = ax.twinx()
        cost.spines.right.set_position(("axes", 1.15))
        cost.plot(t, curves["cost"], label=cost_label, color="tab:red", linewidth=2)
        cost.set_ylabel(cost_label)
        handles += cost.get_lines()
    for label, (x, colour) in marks.items():
        handles.append(ax.axvline(x, color=colour, linestyle="--", linewidth=1, label=f"{label} = {x}"))
    ax.legend(handles=handles, loc="upper center", fontsize=8, ncols=2)
    ax.set_title(title)
    return png(fig)
