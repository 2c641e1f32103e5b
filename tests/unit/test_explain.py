"""Reason codes: exact TreeSHAP against shap, additivity against ONNX Runtime, sentences, storage."""

import io
import re
from pathlib import Path

import bentoml
import numpy as np
import pytest

from fraudscore import artifact
from fraudscore.features import FEATURES
from fraudscore.scoring.explain import QUANTILE_POINTS, Explainer, from_artifact
from fraudscore.scoring.model import OnnxForest
from fraudscore.scoring.sentences import describe
from fraudscore.training.trainer import PARITY_TOLERANCE


@pytest.fixture(scope="module")
def entry(trained):
    art = artifact.load(trained.tag, extra_files=(artifact.EXPLAIN_FILE,))
    assert artifact.EXPLAIN_FILE in art.extra
    return art


@pytest.fixture(scope="module")
def forest(trained):
    import skops.io as sio

    path = Path(bentoml.models.get(trained.tag).path) / artifact.SKOPS_FILE
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


@pytest.fixture(scope="module")
def rows(stand_in, entry):
    """Every fraud, 200 other rows, and 60 rows moved exactly onto a split threshold or the next
    float32 above it (where a routing mistake would show)."""
    X = stand_in.X[np.r_[np.flatnonzero(stand_in.y), 0:200]].copy()
    with np.load(io.BytesIO(entry.extra[artifact.EXPLAIN_FILE])) as f:
        feat, hi = f["slot_feature"], f["slot_hi"]
    rng = np.random.default_rng(0)
    finite = np.flatnonzero(np.isfinite(hi))
    edges = stand_in.X[rng.integers(0, len(stand_in.y), 60)].copy()
    for i, s in enumerate(rng.choice(finite, 60, replace=False)):
        t = hi[s] if i % 2 else np.nextafter(hi[s], np.float32(np.inf))
        edges[i, feat[s]] = float(t)
    return np.vstack([X, edges])


def _explainer(entry, table_entries=None) -> Explainer:
    data = entry.extra[artifact.EXPLAIN_FILE]
    if table_entries is None:
        return Explainer.from_bytes(data, entry.serving)
    return Explainer.from_bytes(data, entry.serving, table_entries)


def _mixed_budget(entry) -> int:
    """A table budget that tabulates the shorter paths only, so both methods run in one call."""
    with np.load(io.BytesIO(entry.extra[artifact.EXPLAIN_FILE])) as f:
        sizes = np.diff(f["leaf_start"])
    cut = int(np.median(sizes))
    return int(sum(1 << int(d) for d in sizes if d <= cut))


@pytest.mark.parametrize("budget", ["tables", "quadrature", "mixed"])
def test_contributions_equal_shap_tree_path_dependent(entry, forest, rows, budget):
    import shap

    table_entries = {"tables": None, "quadrature": 0, "mixed": _mixed_budget(entry)}[budget]
    explainer = _explainer(entry, table_entries)
    if budget == "mixed":
        assert 0 < explainer.longest_tabulated < int(np.diff(
            np.load(io.BytesIO(entry.extra[artifact.EXPLAIN_FILE]))["leaf_start"]).max())
    reference = shap.TreeExplainer(forest, feature_perturbation="tree_path_dependent")
    expected = reference.shap_values(rows.astype(np.float32))[..., 1]
    assert len(rows) >= 200 and expected.shape == (len(rows), len(FEATURES))
    np.testing.assert_allclose(explainer.contributions(rows), expected, rtol=0, atol=1e-6)
    assert explainer.base_value == pytest.approx(float(np.atleast_1d(reference.expected_value)[1]), abs=1e-12)


def test_contributions_add_up_to_the_served_probability(entry, rows):
    explainer = _explainer(entry)
    served = OnnxForest(entry.model_bytes).predict_proba(rows)
    total = explainer.base_value + explainer.contributions(rows).sum(axis=1)
    assert np.max(np.abs(total - served)) <= PARITY_TOLERANCE
    assert served.max() > 0.5  # the frauds are in there: large contributions were checked too
    single = np.vstack([explainer.contributions(rows[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(single, explainer.contributions(rows[:5]))


def test_reasons_are_the_largest_contributions_in_order(entry, rows):
    explainer = _explainer(entry)
    X = rows[:40]
    phi = explainer.contributions(X)
    for top_k in (1, 3, 5):
        reasons = explainer.reasons(X, top_k=top_k)
        assert len(reasons) == len(X)
        for i, row in enumerate(reasons):
            assert len(row) == min(top_k, int(np.count_nonzero(phi[i])))
            sizes = [abs(r["contribution"]) for r in row]
            assert sizes == sorted(sizes, reverse=True)
            assert sizes[0] == round(float(np.abs(phi[i]).max()), 6)
            for r in row:
                j = FEATURES.index(r["feature"])
                assert r["value"] == float(str(np.float32(X[i, j])))  # what the model saw
                assert r["contribution"] == round(float(phi[i, j]), 6)
                assert r["description"].startswith(f"{r['feature']} = ")
    with pytest.raises(ValueError, match="top_k"):
        explainer.reasons(X, top_k=0)
    with pytest.raises(ValueError, match="shape"):
        explainer.contributions(X[:, :5])


GRID = np.quantile(np.arange(1.0, 10_001.0), np.linspace(0, 1, QUANTILE_POINTS), method="inverted_cdf")


@pytest.mark.parametrize(("feature", "value", "sentence"), [
    ("V14", -9.5, "V14 = -9.50 is lower than every training transaction"),
    ("V14", 3.0, "V14 = 3.00 is lower than 99.9% of training transactions"),
    ("V14", 2_500.0, "V14 = 2,500.00 is lower than 74.9% of training transactions"),
    ("V14", 9_990.0, "V14 = 9,990.00 is higher than 99.8% of training transactions"),
    ("V14", 10_000.0, "V14 = 10,000.00 is higher than 99.9% of training transactions"),
    ("Amount", 1_250.0, "Amount = 1,250.00 is lower than 87.4% of training transactions"),
    ("Amount", 25_691.16, "Amount = 25,691.16 is higher than every training transaction"),
    ("Time", 5_000.5, "Time = 5,000.50 is higher than 50.0% of training transactions"),
])
def test_sentences(feature, value, sentence):
    assert describe(feature, value, GRID) == sentence


def test_sentences_are_true_bounds_within_a_tenth_of_a_point():
    rng = np.random.default_rng(1)
    train = np.round(rng.standard_t(3, 60_000) * 2, 2)  # heavy tails and ties, like Amount
    grid = np.quantile(train, np.linspace(0, 1, QUANTILE_POINTS), method="inverted_cdf")
    for value in np.r_[rng.choice(train, 300), rng.normal(0, 20, 300), train.min(), train.max()]:
        text = describe("V1", float(value), grid)
        assert not re.search(r"(?<!\d)(100|0)\.0%", text)
        if "every" in text:
            assert (value < train.min()) if "lower" in text else (value > train.max())
            continue
        match = re.search(r"(lower|higher) than (\d+\.\d)%", text)
        if match is None:
            assert "at the median" in text and value == grid[QUANTILE_POINTS // 2]
            continue
        # in exact counts: shown = per-mille floor of the share above (below) the value
        count = int(((train > value) if match[1] == "lower" else (train < value)).sum())
        shown, n = round(float(match[2]) * 10), train.size
        assert (count * 1000 > shown * n) if match[1] == "lower" else (count * 1000 >= shown * n)
        assert count * 1000 <= (shown + 1) * n


def test_numbers_read_plainly():
    assert describe("V3", -0.001, GRID).startswith("V3 = 0.00 is")  # no "-0.00"
    tied = np.r_[np.zeros(700), np.arange(1.0, 301.0)]  # most values equal: a tied median
    tied_grid = np.quantile(tied, np.linspace(0, 1, QUANTILE_POINTS), method="inverted_cdf")
    assert describe("Amount", 0.0, tied_grid) == "Amount = 0.00 is at the median of training transactions"
    assert describe("V3", float("nan"), GRID) == "V3 = nan is not a finite number"


def test_explain_file_is_plain_arrays_checked_on_load(trained, entry):
    with np.load(io.BytesIO(entry.extra[artifact.EXPLAIN_FILE]), allow_pickle=False) as f:
        assert {"leaf_value", "leaf_start", "slot_feature", "slot_lo", "slot_hi", "slot_zero",
                "quantiles", "base_value", "format_version"} <= set(f.files)
        assert f["quantiles"].shape == (len(FEATURES), QUANTILE_POINTS)
    assert bentoml.models.get(trained.tag).info.metadata["explain"]["slots"] > 0
    path = Path(bentoml.models.get(trained.tag).path) / artifact.EXPLAIN_FILE
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(artifact.ArtifactError, match="checksum mismatch for explain.npz"):
            artifact.load(trained.tag, extra_files=(artifact.EXPLAIN_FILE,))
        assert artifact.load(trained.tag).extra == {}  # callers that do not ask are unaffected
        path.unlink()
        with pytest.raises(artifact.ArtifactError, match="missing explain.npz"):
            artifact.load(trained.tag, extra_files=(artifact.EXPLAIN_FILE,))
    finally:
        path.write_bytes(original)


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_bad_explain_files_are_refused_with_a_reason(entry):
    with np.load(io.BytesIO(entry.extra[artifact.EXPLAIN_FILE])) as f:
        good = {k: f[k] for k in f.files}
    serving = entry.serving
    with pytest.raises(ValueError, match="unreadable"):
        Explainer.from_bytes(b"not a zip file", serving)
    with pytest.raises(ValueError, match="unreadable"):  # an object array would need unpickling
        Explainer.from_bytes(_npz(**{**good, "leaf_value": np.array([{"x": 1}], dtype=object)}), serving)
    with pytest.raises(ValueError, match="no array 'quantiles'"):
        Explainer.from_bytes(_npz(**{k: v for k, v in good.items() if k != "quantiles"}), serving)
    with pytest.raises(ValueError, match="feature outside"):
        Explainer.from_bytes(_npz(**{**good, "slot_feature": good["slot_feature"] + 30}), serving)
    with pytest.raises(ValueError, match="other features"):
        Explainer.from_bytes(_npz(**good), {**serving, "features": list(FEATURES)[::-1]})
    assert Explainer.from_bytes(_npz(**good), serving).base_value == pytest.approx(float(good["base_value"]))


def test_an_entry_from_before_reason_codes_loads_without_an_explainer(trained, entry):
    root = Path(bentoml.models.get(trained.tag).path)
    files = {name: (root / name).read_bytes()
             for name in (artifact.ONNX_FILE, artifact.SKOPS_FILE, artifact.SERVING_FILE)}
    meta = {k: v for k, v in bentoml.models.get(trained.tag).info.metadata.items()
            if k not in ("checksums", "format_version", "explain")}
    old = artifact.register(files, meta, labels={"stage": "test"})
    try:
        loaded = artifact.load(old, extra_files=(artifact.EXPLAIN_FILE,))
        assert loaded.extra == {} and from_artifact(loaded) is None
        assert from_artifact(entry) is not None
    finally:
        bentoml.models.delete(old)
