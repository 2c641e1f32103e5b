"""train.py --from-store: a model trained on the labelled decisions of a store (and a CSV)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import bentoml
import numpy as np
import pytest

import train as train_cli
from fraudscore import artifact
from fraudscore.store.labels import add_labels
from fraudscore.training.data import generate, write_csv
from tests.storetools import rec, write

T0 = datetime(2026, 2, 1, tzinfo=UTC)
FAST = ["--trees", "5", "--jobs", "1", "--quiet"]


def _with_password(url: str) -> str:
    if url.startswith("sqlite"):
        return url
    parts = urlsplit(url)  # the server trusts loopback, so any password connects
    return urlunsplit(parts._replace(netloc=f"{parts.username}:hunter2-secret@{parts.hostname}:{parts.port}"))


def _fill(engine, frauds: int = 30, legit: int = 400) -> int:
    data = generate(20_000, seed=11)
    rows = np.r_[np.flatnonzero(data.y == 1)[:frauds], np.flatnonzero(data.y == 0)[:legit]]
    records = [rec(f"tx-{i}", 50, at=T0 + timedelta(minutes=k), features=data.X[i])
               for k, i in enumerate(rows)]
    # not training data: a shadow decision, and a decision nobody labelled
    records += [rec("tx-unlabelled", 3), rec(f"tx-{rows[0]}", 90, role="shadow", version="fraud_detector:v2")]
    write(engine, records)
    add_labels(engine, [{"transaction_id": f"tx-{i}", "label": "fraud" if data.y[i] else "legit",
                         "source": "review", "observed_at": T0 + timedelta(days=1)} for i in rows])
    return len(rows)


def _latest_metadata() -> dict:
    return bentoml.models.get(f"{artifact.MODEL_NAME}:latest").info.metadata


def test_training_on_the_labelled_decisions_of_a_store(store, store_url, capsys):
    n = _fill(store)
    url = _with_password(store_url)
    assert train_cli.main(["--from-store", url, *FAST]) == 0
    meta = _latest_metadata()
    assert meta["rows"] == n and meta["frauds"] == 30
    assert meta["data_source"].startswith("decision store ")
    assert f"{n} labelled decisions" in meta["data_source"]
    assert "hunter2" not in meta["data_source"] and "hunter2" not in capsys.readouterr().out


def test_training_on_a_csv_and_a_store(store, store_url, tmp_path):
    n = _fill(store)
    csv = tmp_path / "creditcard.csv"
    write_csv(generate(3_000, seed=5), csv)
    args = ["--from-store", store_url, "--data", str(csv), "--since", "2026-01-01", *FAST]
    assert train_cli.main(args) == 0
    meta = _latest_metadata()
    assert meta["rows"] == 3_000 + n
    assert meta["data_source"].startswith("file creditcard.csv + decision store ")
    assert "since 2026-01-01T00:00:00+00:00" in meta["data_source"]


@pytest.mark.parametrize("case", ["empty", "too_few_frauds", "since_later"])
def test_unusable_stores_are_refused_and_nothing_is_registered(store, store_url, capsys, case):
    if case == "too_few_frauds":
        _fill(store, frauds=4)
    elif case == "since_later":
        _fill(store)
    before = len(bentoml.models.list(artifact.MODEL_NAME))
    extra = ["--since", "2026-02-03"] if case == "since_later" else []
    assert train_cli.main(["--from-store", store_url, *extra, *FAST]) == 2
    err = capsys.readouterr().err
    expected = {"empty": "has no labelled decisions",
                "too_few_frauds": "needs at least 10 labelled decisions",
                "since_later": "has no labelled decisions since 2026-02-03"}[case]
    assert expected in err
    assert len(bentoml.models.list(artifact.MODEL_NAME)) == before


def test_an_unreachable_store_is_a_clear_error(capsys):
    assert train_cli.main(["--from-store", "postgresql://u:pw-123@127.0.0.1:1/x", *FAST]) == 2
    err = capsys.readouterr().err
    assert "cannot read the decision store postgresql://u:***@127.0.0.1:1/x" in err and "pw-123" not in err
