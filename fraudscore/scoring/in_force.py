"""The thresholds in force: the model's learned ones, or the operator's overrides; in
target-rate mode, the controller that moves them (adaptive.py).

One function, shared by the service (``scoring/pipeline.py``) and the offline tools
(``offline/``), so a file scored offline gets the decisions the service would give.
"""

from __future__ import annotations

from typing import Any

from ..settings import ConfigError, Settings
from .adaptive import TargetRate
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


def target_rate_in_force(serving: dict[str, Any], settings: Settings, static: Thresholds,
                         tag: str) -> TargetRate | None:
    """The target-rate controller under FRAUD_THRESHOLD_MODE=target-rate (None in static mode).

    Raises :class:`ConfigError` when the model entry has no ``threshold_reference`` (trained
    before it existed): its bounds cannot be chosen, and the operator asked for the mode."""
    if settings.threshold_mode != "target-rate":
        return None
    ref = serving.get("threshold_reference")
    if not isinstance(ref, dict) or "alert_rates" not in ref:
        raise ConfigError(f"FRAUD_THRESHOLD_MODE=target-rate: model {tag} has no threshold reference "
                          "(trained before it existed); retrain it, or use FRAUD_THRESHOLD_MODE=static")
    try:
        return TargetRate(float(settings.target_block_rate), settings.threshold_window, ref["alert_rates"],
                          static)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {tag}: bad threshold reference: {exc}") from None
