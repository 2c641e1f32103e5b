"""The thresholds in force: the model's learned ones, or the operator's overrides.

One function, shared by the service (``scoring/pipeline.py``) and the offline tools
(``offline/``), so a file scored offline gets the decisions the service would give.
"""

from __future__ import annotations

from typing import Any

from ..settings import ConfigError, Settings
from .thresholds import Thresholds


def thresholds_in_force(serving: dict[str, Any], settings: Settings) -> tuple[Thresholds, dict[str, str]]:
    """The thresholds to apply to a model entry's ``serving.json`` under ``settings``
    (FRAUD_DECISION_THRESHOLD / FRAUD_REVIEW_THRESHOLD), and where each came from.

    Raises :class:`ConfigError` when the overrides do not fit the model (review above block)."""
    learned = serving["thresholds"]
    block = learned["block"] if settings.decision_threshold == "model" else settings.decision_threshold
    review = learned["review"] if settings.review_threshold == "model" else settings.review_threshold
    source = {
        "block": "model" if settings.decision_threshold == "model" else "FRAUD_DECISION_THRESHOLD",
        "review": "model" if settings.review_threshold == "model" else "FRAUD_REVIEW_THRESHOLD",
    }
    if settings.review_threshold == "model":
        # The learned review edge stays; under an overridden block threshold the band becomes
        # [learned review, block), wider or narrower than the learned one.
        review = min(review, block)
    try:
        return Thresholds(block=block, review=review), source
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
