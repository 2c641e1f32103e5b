import numpy as np
import pytest

from fraudscore.features import CSV_COLUMNS, FEATURES
from fraudscore.training.data import DataError, generate, load_csv, write_csv


def test_stand_in_is_deterministic_and_seeded():
    a, b, c = generate(5_000, seed=1), generate(5_000, seed=1), generate(5_000, seed=2)
    assert a.sha256 == b.sha256 and np.array_equal(a.X, b.X)
    assert a.sha256 != c.sha256


def test_stand_in_follows_the_published_statistics():
    d = generate(100_000, seed=3)
    assert d.X.shape == (100_000, len(FEATURES))
    assert d.y.sum() == 172  # 0.172% frauds
    legit, fraud = d.X[d.y == 0], d.X[d.y == 1]
    v = {f: j for j, f in enumerate(FEATURES)}
    # best separators shift strongly in the published direction
    assert np.mean(fraud[:, v["V14"]]) < -3 and abs(np.mean(legit[:, v["V14"]])) < 0.05
    assert np.mean(fraud[:, v["V4"]]) > 2
    # heavy tails: kurtosis of legitimate V1 far above a Gaussian's 3
    x = legit[:, v["V1"]] - legit[:, v["V1"]].mean()
    assert np.mean(x**4) / np.mean(x**2) ** 2 > 6
    # fraud features skewed: medians sit inside the means
    assert abs(np.median(fraud[:, v["V3"]])) < abs(np.mean(fraud[:, v["V3"]]))
    amount = d.X[:, v["Amount"]]
    assert amount.min() >= 0 and amount.max() <= 25_691.16
    assert 15 < np.median(amount[d.y == 0]) < 30
    time = d.X[:, v["Time"]]
    assert time.min() >= 0 and time.max() <= 172_792 and np.all(np.diff(time) >= 0)
    night = ((time / 3600) % 24) < 6
    assert night[d.y == 1].mean() > night[d.y == 0].mean()  # frauds relatively more at night


def test_csv_round_trip_with_quoted_header(tmp_path, stand_in):
    path = tmp_path / "creditcard.csv"
    write_csv(stand_in, path)
    assert path.read_text().splitlines()[0] == ",".join(f'"{c}"' for c in CSV_COLUMNS)
    loaded = load_csv(path)
    assert np.array_equal(loaded.X, stand_in.X) and np.array_equal(loaded.y, stand_in.y)
    assert loaded.source == "file creditcard.csv" and len(loaded.sha256) == 64


def _write(tmp_path, header, rows):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([",".join(header), *(",".join(r) for r in rows)]) + "\n")
    return path


GOOD = ["0"] * 30
HEADER = [f'"{c}"' for c in CSV_COLUMNS]


@pytest.mark.parametrize(("header", "rows", "message"), [
    (HEADER[:-2] + HEADER[-1:], [GOOD[:-1] + ["1"]] * 12, "missing ['Amount']"),
    ([*HEADER, '"Extra"'], [[*GOOD, "1", "0"]] * 12, "extra ['Extra']"),
    (HEADER, [[*GOOD[:-1], "abc", "1"]] + [[*GOOD, "1"]] * 11, "column Amount is not a number"),
    (HEADER, [["nan", *GOOD[1:], "1"]] + [[*GOOD, "1"]] * 11, "column Time is not finite"),
    (HEADER, [[*GOOD[:3], "inf", *GOOD[4:], "0"]] * 12, "column V3 is not finite"),
    (HEADER, [[*GOOD, "0"]] * 50, "no fraud rows"),
    (HEADER, [[*GOOD, "2"]] * 12, "must be 0 or 1"),
    (HEADER, [[*GOOD, "1"], GOOD], "line 3: 30 fields, expected 31"),
    (HEADER, [], "no rows"),
])
def test_bad_csv_is_refused_with_a_message_naming_the_problem(tmp_path, header, rows, message):
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_csv(_write(tmp_path, header, rows))


def test_unreadable_paths_are_refused(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_csv(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="cannot read"):
        load_csv(tmp_path)  # a directory
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not a UTF-8"):
        load_csv(tmp_path / "bin.csv")


def test_a_forest_separates_the_stand_in_well_but_not_perfectly():
    """Faithful means near the published real-data range (AUPRC ~0.8), not at 1.0 or chance."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    d = generate(100_000, seed=42)
    Xtr, Xte, ytr, yte = train_test_split(d.X, d.y, test_size=0.3, stratify=d.y, random_state=0)
    forest = RandomForestClassifier(30, n_jobs=-1, random_state=0).fit(Xtr, ytr)
    p = forest.predict_proba(Xte)[:, 1]
    assert 0.55 < average_precision_score(yte, p) < 0.95
    assert 0.85 < roc_auc_score(yte, p) < 0.995
