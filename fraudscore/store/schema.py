"""The store's tables (SQLAlchemy Core). Migrations create them (``migrations/versions``); a unit
test holds the two equal.

``decisions`` is append-only: one row per verdict, primary or shadow, with the 30 features as
columns named after :data:`fraudscore.features.FEATURES`. ``labels`` is append-only too: every
label ever received; a transaction's *current* label is the one with the latest ``observed_at``
(ties: the latest ``received_at``, then the highest id). ``alert_outbox`` holds one row per alert
and destination, written in the decisions' transaction and worked off by the alert sender
(fraudscore/alerts/).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

from ..features import FEATURES

ROLES = ("primary", "shadow")
DECISIONS = ("approve", "review", "block")
LABELS = ("fraud", "legit")


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on both databases (SQLite keeps naive UTC
    text, which sorts and compares in time order)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite's rowid alias must say INTEGER
_Json = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

decisions = Table(
    "decisions", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("transaction_id", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("route", String(64), nullable=False),
    Column("key_name", String(64)),
    Column("model_version", String(128), nullable=False),
    Column("role", String(8), nullable=False),
    *(Column(f, Double(), nullable=False) for f in FEATURES),
    Column("probability", Double(), nullable=False),
    Column("score", SmallInteger(), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("threshold", SmallInteger(), nullable=False),
    Column("review_threshold", SmallInteger()),
    Column("reasons", _Json),
    Column("warnings", _Json),
    Column("latency_ms", Double()),
    Column("request_id", String(128)),
    # by id (GET /decisions/{id}, labels, training); by time (quality windows, retention, listing);
    # the review queue (decision=review, oldest first)
    Index("ix_decisions_transaction_id", "transaction_id"),
    Index("ix_decisions_created", "created_at", "id"),
    Index("ix_decisions_queue", "decision", "created_at", "id"),
)

# The columns a DecisionLog writes, in the order of a record's values (id is generated).
DECISION_COLUMNS: tuple[str, ...] = tuple(c.name for c in decisions.columns if c.name != "id")

labels = Table(
    "labels", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("transaction_id", String(128), nullable=False),
    Column("label", String(8), nullable=False),
    Column("source", String(64), nullable=False),
    Column("observed_at", UTCDateTime(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    # the same label from the same source for the same moment is one label (idempotent POSTs);
    # its leading transaction_id serves the lookups by transaction too
    UniqueConstraint("transaction_id", "label", "source", "observed_at", name="uq_labels_item"),
)

OUTBOX_STATES = ("pending", "sent", "dead")

alert_outbox = Table(
    "alert_outbox", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    # the idempotency key (X-Fraud-Alert-Id): one per alert, the same for every destination
    Column("alert_id", String(36), nullable=False),
    Column("destination", String(16), nullable=False),
    Column("transaction_id", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),  # the decision's time
    Column("payload", _Json, nullable=False),  # the alert's fields (fraudscore/alerts/outbox.py)
    Column("status", String(8), nullable=False),
    Column("attempts", Integer(), nullable=False),
    # when the row may next be claimed: its backoff, or the lease of the sender delivering it
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("last_error", String(300)),
    UniqueConstraint("alert_id", "destination", name="uq_alert_outbox_item"),
    # the sender's claim (pending rows by due time) and the depth / oldest figures
    Index("ix_alert_outbox_due", "status", "next_attempt_at"),
    Index("ix_alert_outbox_created", "status", "created_at"),
)
