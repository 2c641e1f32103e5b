"""Quality figures and the shadow comparison on a constructed store with known answers; the
report command."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from fraudscore.store.labels import add_labels
from fraudscore.store.quality import quality, shadow_comparison
from fraudscore.store.report import main, parse_window
from tests.storetools import rec, write

NOW = datetime(2026, 6, 1, tzinfo=UTC)
V1, V2 = "fraud_detector:v1", "fraud_detector:v2"
H = timedelta(hours=1)


@pytest.fixture
def scored(store):
    """v1 (primary) scored 10 transactions a day ago; v2 (shadow) scored 6 of them; 5 labelled."""
    at = NOW - timedelta(days=1)
    #          tx    v1 score   v2 score   label (delay after the decision)
    table = [("b1", 80, 90, ("fraud", 1)), ("b2", 70, 20, ("legit", 2)), ("r1", 40, 65, ("fraud", 3)),
             ("r2", 35, 35, None), ("a1", 5, 70, ("fraud", 4)), ("a2", 3, 3, ("legit", 5)),
             ("a3", 2, None, None), ("a4", 2, None, None), ("a5", 1, None, None), ("a6", 1, None, None)]
    records = []
    for tx, s1, s2, _ in table:
        records.append(rec(tx, s1, at=at, version=V1))
        if s2 is not None:
            records.append(rec(tx, s2, at=at + timedelta(milliseconds=3), version=V2, role="shadow"))
    records.append(rec("old", 90, at=NOW - timedelta(days=40), version=V1))  # outside a 30-day window
    write(store, records)
    for tx, _, _, lab in table:
        if lab:
            item = {"transaction_id": tx, "label": lab[0], "source": "review", "observed_at": at + H}
            add_labels(store, [item], now=at + lab[1] * H)
    # b2 was first reported as fraud, then cleared: its current label is legit, received after 2 h
    add_labels(store, [{"transaction_id": "b2", "label": "fraud", "source": "customer", "observed_at": at}],
               now=at + 30 * H)
    add_labels(store, [{"transaction_id": "old", "label": "fraud", "source": "review", "observed_at": NOW}],
               now=NOW)
    return store


def test_quality_per_version_and_role(scored):
    primary, shadow = quality(scored, timedelta(days=30), NOW)
    assert primary == {
        "model_version": V1, "role": "primary", "decisions": 10, "alerts": 4, "blocked": 2, "labelled": 5,
        "labelled_frauds": 3, "alert_rate": 0.4,
        "precision": 0.5,  # blocked b1 (fraud) and b2 (legit)
        "recall": 0.3333,  # of frauds b1, r1, a1 only b1 was blocked
        "recall_with_review": 0.6667,  # r1 was sent to review
        "label_delay_p50_s": 3 * 3600.0, "label_delay_p90_s": 5 * 3600.0,  # delays 1..5 h, nearest rank
    }
    assert shadow["model_version"] == V2 and shadow["role"] == "shadow"
    # v2: b1 90 block, b2 20 approve, r1 65 block, r2 35 review, a1 70 block, a2 3 approve
    assert (shadow["decisions"], shadow["alerts"], shadow["blocked"]) == (6, 4, 3)
    assert (shadow["precision"], shadow["recall"], shadow["recall_with_review"]) == (1.0, 1.0, 1.0)
    assert quality(scored, timedelta(days=60), NOW)[0]["decisions"] == 11
    assert quality(scored, timedelta(hours=1), NOW) == []


def test_shadow_against_primary_on_the_same_transactions(scored):
    (row,) = shadow_comparison(scored, timedelta(days=30), NOW)
    deltas = [90 - 80, 20 - 70, 65 - 40, 0, 70 - 5, 0]
    assert row == {
        "primary_version": V1, "shadow_version": V2, "pairs": 6,
        "agreement": 0.5,  # b1 block/block, r2 review/review, a2 approve/approve
        "mean_abs_score_delta": round(sum(map(abs, deltas)) / 6, 3),
        "mean_score_delta": round(sum(deltas) / 6, 3),
        "labelled": 5, "labelled_frauds": 3,
        "primary_precision": 0.5, "primary_recall": 0.3333, "shadow_precision": 1.0, "shadow_recall": 1.0,
    }


def test_the_report_prints_both_tables_and_json(scored, store_url, capsys):
    assert main(["--store", store_url, "--window", "400d"]) == 0
    out = capsys.readouterr().out
    assert "Decision quality" in out and "Shadow vs primary" in out
    assert V1 in out and V2 in out and "33.3%" in out
    assert main(["--store", store_url, "--window", "400d", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [q["decisions"] for q in data["quality"]] == [11, 6] and data["shadow"][0]["pairs"] == 6


def test_report_errors_are_messages(tmp_path, capsys):
    assert main(["--store", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
    assert main(["--store", "postgresql://u:topsecret@127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err
    assert "cannot read postgresql://u:***@127.0.0.1:1/x" in err and "topsecret" not in err
    with pytest.raises(SystemExit) as exc:
        main(["--window", "30 parsecs"])
    assert exc.value.code == 2
    assert parse_window("12h") == timedelta(hours=12) and parse_window("2w") == timedelta(days=14)


def test_a_transaction_scored_again_counts_once_by_its_latest_decision(store):
    at = NOW - timedelta(days=1)
    write(store, [rec("twice", 80, at=at), rec("once", 5, at=at), rec("twice", 5, at=at + 3 * H)])
    add_labels(store, [{"transaction_id": "twice", "label": "fraud", "source": "chargeback",
                        "observed_at": at + H}], now=at + 2 * H)  # before the second scoring
    (row,) = quality(store, timedelta(days=30), NOW)
    assert (row["decisions"], row["labelled"], row["labelled_frauds"], row["blocked"]) == (2, 1, 1, 0)
    assert row["recall"] == 0.0  # its latest decision approved it
    assert row["label_delay_p50_s"] == 2 * 3600.0  # from its first decision: never negative


def test_the_quality_gauges_publish_the_report_figures(scored):
    from fraudscore.edge.handlers import _collect_metrics
    from fraudscore.store.quality_gauges import QualityGauges

    gauges = QualityGauges(scored, window_days=30, interval_s=3600)
    try:
        gauges.refresh(now=NOW)
    finally:
        gauges.close()
    text = _collect_metrics().decode()  # what /metrics answers
    (primary,) = [ln for ln in text.splitlines()
                  if ln.startswith("fraud_quality_recall{") and f'model_version="{V1}"' in ln]
    assert float(primary.rsplit(" ", 1)[1]) == pytest.approx(0.3333)  # as quality() says, above
    assert f'fraud_quality_label_delay_seconds{{model_version="{V1}",quantile="0.9",role="primary"}}' in text


def test_labelled_only_gives_the_same_precision_recall_and_delay(scored):
    full = {(r["model_version"], r["role"]): r for r in quality(scored, timedelta(days=30), NOW)}
    for row in quality(scored, timedelta(days=30), NOW, labelled_only=True):
        same = full[(row["model_version"], row["role"])]
        for k in ("precision", "recall", "recall_with_review", "labelled", "labelled_frauds",
                  "label_delay_p50_s", "label_delay_p90_s"):
            assert row[k] == same[k], k
        assert row["decisions"] == row["labelled"]  # only labelled transactions were read
