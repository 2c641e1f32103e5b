"""Request and response bodies, named by direction and validated at the edge.

Every feature is a required, finite JSON number inside float32 range (the model runs in float32):
strings (including "NaN"), booleans, null, nested values, NaN/Infinity literals and numbers such as
1e400 are rejected with a message naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model, field_validator
from pydantic.functional_validators import AfterValidator, BeforeValidator

from .features import FEATURES

FLOAT32_MAX = 3.4028234663852886e38

Feature = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", frozen=True)
_FIELD_DOCS = {
    "Time": "Seconds since the first transaction of the reference period.",
    "Amount": "Transaction amount (non-negative).",
}


def _feature_fields() -> dict[str, object]:
    fields: dict[str, object] = {}
    for name in FEATURES:
        bound = {"ge": 0.0} if name == "Amount" else {}
        desc = _FIELD_DOCS.get(name, f"PCA component {name} of the card-transaction features.")
        fields[name] = (Annotated[Feature, Field(description=desc, **bound)], ...)
    return fields


_TransactionFeatures = create_model(  # type: ignore[call-overload]
    "_TransactionFeatures", __config__=_STRICT, **_feature_fields()
)


class TransactionIn(_TransactionFeatures):  # type: ignore[misc,valid-type]
    """One card transaction: Time, V1..V28 and Amount, plus an optional id echoed back."""

    model_config = _STRICT
    transaction_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="Your id for the transaction (or null), echoed back")


class LegacyTransactionIn(TransactionIn):
    """The FastAPI service's request body: same fields; unknown fields ignored, as FastAPI did."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


def batch_request_model(max_items: int) -> type[BaseModel]:
    """``{"transactions": [...]}`` with 1 to ``max_items`` items and no other field.

    Validation stops at the first invalid transaction (``fail_fast``): a small body of many empty
    objects would otherwise cost a validation error per missing field of every item."""
    return create_model(
        "BatchRequestIn",
        __config__=ConfigDict(strict=True, extra="forbid", frozen=True),
        __doc__="Transactions to score in one request; answered in the same order.",
        transactions=(Annotated[list[TransactionIn], Field(min_length=1, max_length=max_items,
                                                            fail_fast=True)], ...),
    )


Decision = Literal["approve", "review", "block"]


class ReasonOut(BaseModel):
    """A feature that moved the probability, and by how much (exact TreeSHAP)."""

    feature: str
    value: Annotated[float, Field(description="the value the model saw (float32, shortest form)")]
    contribution: Annotated[float, Field(description="signed change of the fraud probability")]
    description: Annotated[str, Field(description='e.g. "V14 = -9.50 is lower than 99.9% of '
                                                  'training transactions"')]


class WarningOut(BaseModel):
    """A feature outside the range seen in training: the model extrapolates there, so the score
    rests on nothing it has seen (a broken feed, a new kind of transaction)."""

    feature: str
    value: Annotated[float, Field(description="the value sent")]
    low: Annotated[float, Field(description="the lowest value of the feature in training")]
    high: Annotated[float, Field(description="the highest value of the feature in training")]


class FraudScoreOut(BaseModel):
    """The verdict on one transaction."""

    fraud_score: Annotated[int, Field(ge=0, le=100, description="0-100; higher is riskier")]
    fraud_probability: Annotated[float, Field(ge=0.0, le=1.0)]
    is_fraud: Annotated[bool, Field(description="fraud_score >= threshold")]
    decision: Annotated[Decision, Field(description="block >= threshold; review within the band")]
    threshold: int
    model_version: Annotated[str, Field(description="model-store tag that scored it")]
    transaction_id: Annotated[str, Field(description="yours, or one generated for this verdict: "
                                                     "the key to /decisions and /labels")]
    reasons: Annotated[list[ReasonOut] | None, Field(
        exclude_if=lambda v: v is None,
        description="review and block verdicts (every verdict with ?explain=true): the top features, "
                    "base value + all contributions = fraud_probability")] = None
    warnings: Annotated[list[WarningOut] | None, Field(
        exclude_if=lambda v: v is None,
        description="features outside the range seen in training; absent when there is none")] = None


class LegacyFraudScoreOut(BaseModel):
    """Exactly what the FastAPI service answered."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    fraud_score: int = Field(alias="fraud-score")
    is_fraud: bool = Field(alias="is-fraud")
    model_version: str = Field(alias="model-version")


class ModelInfoOut(BaseModel):
    tag: str
    stage: Annotated[Literal["candidate", "production", "retired"], Field(
        description="the entry's stage in the model store at this moment (make promote); a candidate "
                    "or retired model serves only when FRAUD_MODEL_TAG names it")]
    engine: str
    trained_at: str
    data_source: str
    data_sha256: str
    metrics: dict[str, float | int]
    thresholds: Annotated[dict[str, int], Field(description="block and review in force for the "
                                                            "calling key, at this moment")]
    thresholds_source: Annotated[dict[str, str], Field(description="model, FRAUD_DECISION_THRESHOLD / "
                                                                   "FRAUD_REVIEW_THRESHOLD, target-rate, "
                                                                   "or the key file's entry of the key")]
    threshold_mode: Literal["static", "target-rate"]
    target_block_rate: float | None
    block_threshold_bounds: Annotated[dict[str, int] | None, Field(
        description="target-rate mode: the lowest and highest block threshold it may choose")]
    drift: Annotated[str, Field(description="how drift is measured, or why it is not")]
    top_feature_importances: dict[str, float]
    versions: dict[str, str]
    batch_max_items: int
    adaptive_batching: bool
    reasons: str


class ReadinessOut(BaseModel):
    """``GET /readyz``: ready (200) with the model in service, or unavailable (503) and why."""

    status: Literal["ready", "unavailable"]
    model_version: str | None = None
    reason: str | None = None


class ErrorOut(BaseModel):
    """Every error of the native routes."""

    error: str
    detail: Any = None


class LegacyErrorOut(BaseModel):
    """Every error of ``/v1/fraud-score``, as FastAPI answered: a message, or 422's list."""

    detail: str | list[dict[str, Any]]


# --- The decision log's read API and labels (GET /decisions, POST /labels) ----------------------

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    """A time as the document says (``format: date-time``, RFC 3339): not a bare number, which
    pydantic would read as Unix seconds or milliseconds, whichever it guesses."""
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("not an RFC 3339 date-time with zone, e.g. 2026-11-30T12:00:00Z")


def _utc(value: datetime) -> datetime:
    """In UTC, as the store compares and keeps times; 0001-01-01T00:00:00+01:00 has no UTC time."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range: before year 1 or after 9999 in UTC") from None


# not strict: a strict model would refuse the str the validator passes on (it is no longer JSON)
DateTime = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339), AfterValidator(_utc)]


class DecisionRecordOut(BaseModel):
    """One recorded verdict: what was scored, by which model, for whom, and what was decided."""

    id: int
    transaction_id: str
    created_at: datetime
    route: str
    key_name: str | None
    model_version: str
    role: Literal["primary", "shadow"]
    features: dict[str, float]
    probability: float
    score: int
    decision: Decision
    threshold: int
    review_threshold: int | None
    reasons: list[ReasonOut] | None
    warnings: list[Any] | None
    latency_ms: float | None
    request_id: str | None


class LabelRecordOut(BaseModel):
    id: int
    transaction_id: str
    label: Literal["fraud", "legit"]
    source: str
    observed_at: datetime
    received_at: datetime


class TransactionRecordOut(BaseModel):
    """``GET /decisions/{transaction_id}``: the latest decision, the shadow model's, the labels."""

    transaction_id: str
    decision: DecisionRecordOut | None = Field(description="the latest primary decision")
    shadow: DecisionRecordOut | None = Field(description="the latest decision of a shadow model")
    times_scored: int
    label: LabelRecordOut | None = Field(description="the current label: latest observation")
    label_history: list[LabelRecordOut]


class DecisionsPageOut(BaseModel):
    """One page of decisions, oldest first; pass ``next_cursor`` back for the next page."""

    items: list[DecisionRecordOut]
    next_cursor: str | None


class DecisionsQueryIn(BaseModel):
    """Query parameters of ``GET /decisions``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: Decision | None = None
    since: DateTime | None = Field(default=None, description="created at or after (ISO 8601, with zone)")
    until: DateTime | None = Field(default=None, description="created before (ISO 8601, with zone)")
    model_version: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    role: Literal["primary", "shadow", "all"] = "primary"
    # "5.0" reads as 5: JSON Schema's integer includes 5.0, and schemathesis holds the API to that
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = Field(
        default=None, json_schema_extra={"format": "cursor"},
        description="next_cursor of the previous page (opaque); any other value is answered 400")


LABEL_CLOCK_SKEW = timedelta(minutes=5)


class LabelIn(BaseModel):
    """An outcome: a chargeback, a review's finding, a customer's report."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    transaction_id: Annotated[str, Field(min_length=1, max_length=128)]
    label: Literal["fraud", "legit"]
    source: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
                                 description="chargeback, review, customer, ...")]
    observed_at: Annotated[DateTime, Field(description="when the outcome was known (ISO 8601, "
                                                            "with zone); not in the future")]

    @field_validator("observed_at")
    @classmethod
    def _not_in_future(cls, v: datetime) -> datetime:
        if v > datetime.now(UTC) + LABEL_CLOCK_SKEW:
            raise ValueError("observed_at is in the future")
        return v


class LabelsIn(BaseModel):
    """``POST /labels``: up to 1,000 labels; later observations supersede earlier ones."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    labels: Annotated[list[LabelIn], Field(min_length=1, max_length=1000, fail_fast=True)]


class LabelResultOut(BaseModel):
    transaction_id: str
    status: Literal["recorded", "duplicate", "unknown_transaction"]


class LabelsOut(BaseModel):
    """One result per label, in order."""

    results: list[LabelResultOut]


class ExplainQueryIn(BaseModel):
    """Query parameter of the scoring routes."""

    explain: bool = Field(default=False, description="reasons on every verdict, not only review and block")
