"""``--explain``: a reasons column from the model entry's explainer.

The explainer (exact TreeSHAP of the served forest, ``fraudscore/scoring/explain.py``) is the one
the service uses, so a row's reasons are the ones /fraud_score gives. A model entry trained before
reason codes has none: ``--explain`` then stops before anything is read, saying so.
"""

from __future__ import annotations

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
    from ..artifact import ArtifactError
    from ..scoring.explain import from_artifact

    try:
        explainer = from_artifact(art)
    except ArtifactError as exc:
        raise ExplainUnavailable(str(exc)) from None
    if explainer is None:
        raise ExplainUnavailable(f"model {art.tag} has no explainer (trained before reason codes); "
                                 "retrain it with this version of train.py")
    return explainer


def reasons_array(explainer: Explainer, X: np.ndarray, top_k: int, fmt: str) -> pa.Array:
    """The reasons of rows ``X`` as one Arrow column: list<struct> for Parquet, JSON text for CSV."""
    reasons = explainer.reasons(X, top_k)
    if fmt == "csv":
        return pa.array([json.dumps(r, separators=(",", ":")) for r in reasons], pa.string())
    return pa.array(reasons, pa.list_(REASON_TYPE))
