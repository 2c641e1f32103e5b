"""Labels (idempotent, superseding, history, unknown ids) and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select

from fraudscore.store.labels import add_labels
from fraudscore.store.queries import get_decision
from fraudscore.store.retention import delete_expired
from fraudscore.store.schema import decisions, labels
from tests.storetools import rec, write

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _label(tx, label, source="chargeback", observed=T0):
    return {"transaction_id": tx, "label": label, "source": source, "observed_at": observed}


def test_labels_are_recorded_once_and_unknown_ids_are_reported_per_item(store):
    write(store, [rec("a", at=T0), rec("b", at=T0)])
    items = [_label("a", "fraud"), _label("nope", "fraud"), _label("b", "legit", "review"),
             _label("a", "fraud")]
    assert add_labels(store, items, now=T0 + timedelta(days=1)) == [
        {"transaction_id": "a", "status": "recorded"},
        {"transaction_id": "nope", "status": "unknown_transaction"},
        {"transaction_id": "b", "status": "recorded"},
        {"transaction_id": "a", "status": "duplicate"},  # the same item twice in one call
    ]
    again = add_labels(store, items, now=T0 + timedelta(days=2))
    assert [r["status"] for r in again] == ["duplicate", "unknown_transaction", "duplicate", "duplicate"]
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(labels)).scalar() == 2
    # the same instant written another way is the same label
    other_zone = T0.astimezone(timezone(timedelta(hours=2)))
    assert add_labels(store, [_label("a", "fraud", observed=other_zone)])[0]["status"] == "duplicate"


def test_a_later_observation_supersedes_and_the_history_stays(store):
    write(store, [rec("a", at=T0)])
    add_labels(store, [_label("a", "fraud", "customer", T0 + timedelta(days=1))], now=T0 + timedelta(days=1))
    add_labels(store, [_label("a", "legit", "review", T0 + timedelta(days=3))], now=T0 + timedelta(days=3))
    # received last, but observed before the review: history only
    add_labels(store, [_label("a", "fraud", "chargeback", T0 + timedelta(days=2))],
               now=T0 + timedelta(days=9))
    got = get_decision(store, "a")
    assert (got["label"]["label"], got["label"]["source"]) == ("legit", "review")
    assert [(h["label"], h["source"]) for h in got["label_history"]] == [
        ("fraud", "customer"), ("fraud", "chargeback"), ("legit", "review")]
    assert got["label_history"][1]["received_at"] == T0 + timedelta(days=9)
    # the same observation time: the label received later wins
    add_labels(store, [_label("a", "fraud", "chargeback", T0 + timedelta(days=3))],
               now=T0 + timedelta(days=10))
    assert get_decision(store, "a")["label"]["label"] == "fraud"


def test_an_empty_call_and_only_unknown_ids(store):
    assert add_labels(store, []) == []
    assert add_labels(store, [_label("x", "fraud")]) == [
        {"transaction_id": "x", "status": "unknown_transaction"}]


def test_retention_deletes_old_decisions_and_their_labels_only(store):
    now = T0 + timedelta(days=500)
    old = [rec(f"old-{i}", at=T0 + timedelta(minutes=i)) for i in range(12)]
    young = [rec(f"young-{i}", at=now - timedelta(days=10)) for i in range(3)]
    # "both" was scored long ago and again recently: its label stays with the recent decision
    write(store, [*old, *young, rec("both", at=T0), rec("both", at=now - timedelta(days=1))])
    add_labels(store, [_label("old-0", "fraud"), _label("young-0", "legit"), _label("both", "fraud")],
               now=now - timedelta(days=1))
    deleted = []
    while n := delete_expired(store, days=400, batch=5, now=now):
        deleted.append(n)
    assert deleted == [5, 5, 3]  # 12 old + the old decision of "both", 5 rows a statement
    with store.connect() as conn:
        left = sorted(conn.execute(select(decisions.c.transaction_id)).scalars())
        labelled = sorted(conn.execute(select(labels.c.transaction_id)).scalars())
    assert left == ["both", "young-0", "young-1", "young-2"]
    assert labelled == ["both", "young-0"]
