"""The credit-card schema: one place that names the model's inputs, in order."""

from __future__ import annotations

PCA_FEATURES: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
FEATURES: tuple[str, ...] = ("Time", *PCA_FEATURES, "Amount")
LABEL = "Class"
CSV_COLUMNS: tuple[str, ...] = (*FEATURES, LABEL)
