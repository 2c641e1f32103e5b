"""``python -m fraudscore backtest``: the cost model on a constructed set, and the command."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from fraudscore.features import FEATURES
from fraudscore.offline import backtest, score
from fraudscore.offline.sweep import Costs, ScoreCounts, outcome, policy_costs, recommend, sweep

# legit: 1,000 at score 0, 10 at 30, 5 at 60; frauds: 2 at 10 (Amount 100), 3 at 50 (20), 5 at 90 (500)
SCORES = np.array([0] * 1000 + [30] * 10 + [60] * 5 + [10] * 2 + [50] * 3 + [90] * 5)
LABELS = np.array([0] * 1015 + [1] * 10)
AMOUNTS = np.array([1.0] * 1015 + [100.0] * 2 + [20.0] * 3 + [500.0] * 5)
COSTS = Costs(miss=None, decline=10.0, review=5.0)


@pytest.fixture
def counts() -> ScoreCounts:
    return ScoreCounts.of(SCORES, LABELS, AMOUNTS, days=1.0)


@pytest.mark.parametrize(("block", "review", "cost"), [
    (91, 91, 2760.0),  # nothing caught: every fraud's Amount
    (61, 61, 260.0),  # frauds at 90 blocked; those at 10 and 50 missed
    (61, 11, 290.0),  # 18 reviews (90) + the two frauds at 10 missed (200)
    (61, 10, 100.0),  # 20 reviews, nothing missed, nothing declined
    (31, 10, 110.0),  # 5 legit declined (50) + 12 reviews (60)
    (11, 10, 160.0),  # 15 declined (150) + 2 reviews (10)
    (1, 1, 150.0),  # everything above 0 blocked: 15 declines
])
def test_policy_costs_known_answers(counts, block, review, cost):
    assert policy_costs(counts, COSTS)[block - 1, review - 1] == cost
    assert outcome(counts, COSTS, block, review).cost == cost


def test_a_fixed_miss_cost_replaces_the_amount(counts):
    assert policy_costs(counts, Costs(miss=50.0, decline=10.0, review=5.0))[90, 90] == 10 * 50.0


def test_block_only_sweep_known_answers(counts):
    s = sweep(counts, COSTS)
    i = 31 - 1  # flag at score >= 31: 5 legit at 60, 8 frauds
    assert s["alerts"][i] == 13 and s["alert_rate"][i] == 13 / 1025
    assert s["precision"][i] == 8 / 13 and s["recall"][i] == 8 / 10
    assert s["cost"][i] == 50 + 200  # 5 declines + the frauds at 10 missed
    assert s["precision"][-1] == 1.0 and s["alerts"][-1] == 0  # nothing flagged: precision by convention


@pytest.mark.parametrize(("capacity", "block", "review", "cost"), [
    (1000, 90, 10, 100.0),  # cheapest (100 for block 61-90); ties: fewer reviews, then higher thresholds
    (15, 50, 10, 110.0),  # 20 reviews no longer fit: 12 reviews and 5 declines
    (0, 10, 10, 150.0),  # no review at all
])
def test_recommendation_under_review_capacity(counts, capacity, block, review, cost):
    best = recommend(counts, COSTS, reviews_per_day=capacity)
    assert (best.block, best.review, best.cost) == (block, review, cost)
    assert best.reviews_per_day <= capacity


def test_recommendation_is_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 101, 5_000)
    y = rng.random(5_000) < scores / 300
    amount = rng.lognormal(3, 1, 5_000)
    counts = ScoreCounts.of(scores, y, amount, days=2.0)
    best = recommend(counts, COSTS, reviews_per_day=200)

    def cost(b: int, r: int) -> float:
        missed = amount[y & (scores < r)].sum()
        declined = (~y & (scores >= b)).sum()
        reviewed = ((scores >= r) & (scores < b)).sum()
        return missed + 10 * declined + 5 * reviewed, reviewed / 2.0

    brute = min((cost(b, r)[0], b, r) for b in range(1, 101) for r in range(1, b + 1) if cost(b, r)[1] <= 200)
    assert best.cost == pytest.approx(brute[0])
    assert cost(best.block, best.review)[1] <= 200


def test_backtest_command_prints_writes_and_agrees_with_the_scores(trained, stand_in, tmp_path, capsys):
    idx = np.arange(0, 20_000, 2)
    features = {f: stand_in.X[idx, j] for j, f in enumerate(FEATURES)}
    table = pa.table({"tx": [f"t{i}" for i in idx], **features, "Class": stand_in.y[idx]})  # tx: ignored
    pcsv.write_csv(table, tmp_path / "labelled.csv")
    status = backtest.main([str(tmp_path / "labelled.csv"), "--model", trained.tag, "--out",
                            str(tmp_path / "bt"), "--reviews-per-day", "20", "--decline-cost", "25",
                            "--review-cost", "4"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "recommended (block" in printed and "apply it: FRAUD_DECISION_THRESHOLD=" in printed
    summary = json.loads((tmp_path / "bt" / "backtest.json").read_text())
    assert (tmp_path / "bt" / "backtest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((tmp_path / "bt" / "backtest.csv").read_text().splitlines()) == 101

    # the same answer from the score command's own output
    assert score.main([str(tmp_path / "labelled.csv"), "-o", str(tmp_path / "s.parquet"), "--keep", "Class",
                       "--keep", "tx", "--model", trained.tag, "--quiet"]) == 0
    scored = pq.read_table(tmp_path / "s.parquet")
    days = (max(scored["Time"].to_pylist()) - min(scored["Time"].to_pylist())) / 86_400
    counts = ScoreCounts.of(scored["fraud_score"].to_numpy(), np.array(scored["Class"].to_pylist(), int),
                            scored["Amount"].to_numpy(), days)
    best = recommend(counts, Costs(None, 25.0, 4.0), reviews_per_day=20)
    assert summary["apply"] == {"FRAUD_DECISION_THRESHOLD": best.block, "FRAUD_REVIEW_THRESHOLD": best.review}
    assert summary["recommended"]["reviews_per_day"] <= 20
    assert summary["in_force"]["block"] == trained.thresholds.block
    assert summary["days"] == pytest.approx(days)


def test_backtest_refuses_bad_labels_and_unlabelled_files(trained, stand_in, tmp_path, capsys):
    table = pa.table({**{f: stand_in.X[:500, j] for j, f in enumerate(FEATURES)},
                      "Class": pa.array([0] * 100 + [2] + [0] * 399)})
    pq.write_table(table, tmp_path / "bad.parquet")
    out = ["--out", str(tmp_path / "o")]
    assert backtest.main([str(tmp_path / "bad.parquet"), "--model", trained.tag, *out]) == 2
    assert "row 101 (row group 0), column Class: 2 is not 0 or 1" in capsys.readouterr().err
    pq.write_table(table.drop_columns(["Class"]), tmp_path / "unlabelled.parquet")
    assert backtest.main([str(tmp_path / "unlabelled.parquet"), "--model", trained.tag, *out]) == 2
    assert "missing columns ['Class']" in capsys.readouterr().err
    pq.write_table(table.set_column(30, "Class", pa.array([0] * 500)), tmp_path / "nofraud.parquet")
    assert backtest.main([str(tmp_path / "nofraud.parquet"), "--model", trained.tag, *out]) == 2
    assert "needs frauds" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _fill_store(engine, stand_in) -> tuple[np.ndarray, np.ndarray]:
    """Labelled decisions over two days: rows, and their current labels (one label superseded)."""
    from datetime import UTC, datetime, timedelta

    from fraudscore.store.labels import add_labels
    from tests.storetools import rec, write

    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    rows = np.r_[np.flatnonzero(stand_in.y == 1)[:25], np.flatnonzero(stand_in.y == 0)[:575]]
    step = timedelta(days=2) / (len(rows) - 1)
    write(engine, [rec(f"tx-{i}", at=t0 + k * step, features=stand_in.X[i]) for k, i in enumerate(rows)]
          + [rec("tx-unlabelled", 3, at=t0), rec(f"tx-{rows[0]}", 90, role="shadow", at=t0)])
    labels = stand_in.y[rows].astype(int)
    add_labels(engine, [{"transaction_id": f"tx-{i}", "label": "fraud" if y else "legit", "source": "review",
                         "observed_at": t0 + timedelta(days=3)} for i, y in zip(rows, labels, strict=True)])
    # a chargeback later turns a legitimate-looking transaction into a fraud: the current label counts
    add_labels(engine, [{"transaction_id": f"tx-{rows[-1]}", "label": "fraud", "source": "chargeback",
                         "observed_at": t0 + timedelta(days=9)}])
    labels[-1] = 1
    return rows, labels


def test_backtest_from_a_store_equals_the_backtest_of_the_same_rows_in_a_file(trained, stand_in, store,
                                                                            store_url, tmp_path, capsys):
    rows, labels = _fill_store(store, stand_in)
    pq.write_table(pa.table({**{f: stand_in.X[rows, j] for j, f in enumerate(FEATURES)}, "Class": labels}),
                   tmp_path / "same.parquet")
    common = ["--model", trained.tag, "--reviews-per-day", "5"]
    assert backtest.main(["--from-store", store_url, *common, "--out", str(tmp_path / "store")]) == 0
    printed = capsys.readouterr().out
    assert "on decision store " in printed and "600 rows, 26 frauds, 2.00 days" in printed
    assert backtest.main([str(tmp_path / "same.parquet"), *common, "--days", "2",
                          "--out", str(tmp_path / "file")]) == 0
    from_store, from_file = (json.loads((tmp_path / d / "backtest.json").read_text())
                             for d in ("store", "file"))
    assert from_store["input"].startswith("decision store ")
    assert from_store["days"] == pytest.approx(2.0)
    for field in ("rows", "frauds", "recommended", "in_force", "apply"):
        assert from_store[field] == pytest.approx(from_file[field]), field
    tables = [pcsv.read_csv(tmp_path / d / "backtest.csv") for d in ("store", "file")]
    assert tables[0].column_names == tables[1].column_names
    for name in tables[0].column_names:  # the days differ by the decision times' microseconds
        assert np.allclose(tables[0][name].to_numpy(), tables[1][name].to_numpy(), rtol=1e-6), name


def test_backtest_from_a_store_refuses_what_it_cannot_use(trained, stand_in, store, store_url, tmp_path,
                                                           capsys):
    out = ["--model", trained.tag, "--out", str(tmp_path / "o")]
    assert backtest.main(["--from-store", store_url, *out]) == 2
    assert "has no labelled decisions" in capsys.readouterr().err
    _fill_store(store, stand_in)
    assert backtest.main(["--from-store", store_url, "--since", "2026-03-05", *out]) == 2
    assert "since 2026-03-05T00:00:00+00:00 has no labelled decisions" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    assert backtest.main(["--from-store", missing, *out]) == 2
    assert "nowhere.db: no such file" in capsys.readouterr().err
    assert not (tmp_path / "nowhere.db").exists() and not (tmp_path / "o").exists()
    for argv in (["x.parquet", "--from-store", store_url], [], ["x.parquet", "--since", "2026-01-01"],
                 ["--from-store", store_url, "--since", "yesterday"]):
        with pytest.raises(SystemExit) as stop:
            backtest.main(argv)
        assert stop.value.code == 2
    assert "must be an ISO date" in capsys.readouterr().err
