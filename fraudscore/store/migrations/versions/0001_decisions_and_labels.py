"""The decision log and the label history.

Revision ID: 0001
Revises:
Create Date: 2026-11-30

Written out in full (not imported from schema.py) so this step stays what it was when later
revisions change the tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from fraudscore.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_FEATURES = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount"]
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("key_name", sa.String(64)),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        *(sa.Column(f, sa.Double(), nullable=False) for f in _FEATURES),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("threshold", sa.SmallInteger(), nullable=False),
        sa.Column("review_threshold", sa.SmallInteger()),
        sa.Column("reasons", _JSON),
        sa.Column("warnings", _JSON),
        sa.Column("latency_ms", sa.Double()),
        sa.Column("request_id", sa.String(128)),
    )
    op.create_index("ix_decisions_transaction_id", "decisions", ["transaction_id"])
    op.create_index("ix_decisions_created", "decisions", ["created_at", "id"])
    op.create_index("ix_decisions_queue", "decisions", ["decision", "created_at", "id"])
    op.create_table(
        "labels",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("label", sa.String(8), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("transaction_id", "label", "source", "observed_at", name="uq_labels_item"),
    )


def downgrade() -> None:
    op.drop_table("labels")
    op.drop_table("decisions")
