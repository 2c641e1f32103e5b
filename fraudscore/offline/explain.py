"""``--explain``: a reasons column from the model entry's explainer.

The explainer itself (exact TreeSHAP of the served forest) lives in ``fraudscore/scoring/explain.py``
with ``Explainer.reasons(X, top_k) -> [[{feature, value, contribution, description}, ...], ...]``.
Until this version of the project has it, and the model entry carries one, ``--explain`` stops
before anything is read, with a message that says so.
"""

from __future__ import annotations

import importlib
import json
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

REASONS_COLUMN = "reasons"
# Parquet keeps the reasons as data; CSV holds them as one JSON text per row.
REASON_TYPE = pa.struct([("feature", pa.string()), ("value", pa.float64()),
                         ("contribution", pa.float64()), ("description", pa.string())])


class ExplainUnavailable(RuntimeError):
    """Reasons cannot be given with this code or this model entry; the message says why."""


class Explainer(Protocol):
    def reasons(self, X: np.ndarray, top_k: int) -> list[list[dict[str, Any]]]: ...


def load_explainer(art: Any) -> Explainer:
    """The explainer of a loaded model entry (:class:`fraudscore.artifact.LoadedArtifact`)."""
    try:
        module = importlib.import_module("fraudscore.scoring.explain")
    except ModuleNotFoundError:
        raise ExplainUnavailable(
            "--explain needs reason codes (fraudscore/scoring/explain.py), which this version of "
            "fraudscore does not have yet; score without --explain") from None
    try:
        return module.Explainer.from_artifact(art)
    except (AttributeError, KeyError, ValueError) as exc:
        raise ExplainUnavailable(f"model {art.tag} has no explainer ({type(exc).__name__}: {exc}); "
                                 "retrain it with this version of train.py") from None


def reasons_array(explainer: Explainer, X: np.ndarray, top_k: int, fmt: str) -> pa.Array:
    """The reasons of rows ``X`` as one Arrow column: list<struct> for Parquet, JSON text for CSV."""
    reasons = explainer.reasons(X, top_k)
    if fmt == "csv":
        return pa.array([json.dumps(r, separators=(",", ":")) for r in reasons], pa.string())
    return pa.array(reasons, pa.list_(REASON_TYPE))
