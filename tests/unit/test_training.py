import hashlib
import subprocess
import sys
from pathlib import Path

import bentoml
import numpy as np
import pytest

from fraudscore import artifact
from fraudscore.features import FEATURES
from fraudscore.scoring.model import OnnxForest
from fraudscore.training.data import generate, write_csv
from fraudscore.training.trainer import PARITY_TOLERANCE, ParityError, TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def _count_models() -> int:
    return len(bentoml.models.list(artifact.MODEL_NAME))


def test_training_registers_one_complete_entry(trained):
    model = bentoml.models.get(trained.tag)
    files = {p.name for p in Path(model.path).iterdir()}
    assert {artifact.ONNX_FILE, artifact.SKOPS_FILE, artifact.SERVING_FILE} <= files
    meta = model.info.metadata
    for key in ("trained_at", "data_source", "data_sha256", "metrics", "thresholds", "versions", "checksums"):
        assert key in meta
    assert set(meta["metrics"]) >= {"auprc", "roc_auc", "precision_at_threshold", "recall_at_threshold"}
    assert meta["versions"]["scikit-learn"] and meta["versions"]["onnxruntime"]
    loaded = artifact.load(trained.tag)
    assert loaded.serving["features"] == list(FEATURES)
    assert set(loaded.serving["feature_stats"]["V14"]) >= {"mean", "std", "quantiles", "decile_edges"}
    assert 1 <= loaded.serving["thresholds"]["review"] <= loaded.serving["thresholds"]["block"] <= 100


def test_onnx_matches_scikit_learn_within_tolerance(trained, stand_in):
    import skops.io as sio

    model = bentoml.models.get(trained.tag)
    path = Path(model.path) / artifact.SKOPS_FILE
    forest = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    onnx = OnnxForest((Path(model.path) / artifact.ONNX_FILE).read_bytes())
    diff = np.abs(forest.predict_proba(stand_in.X)[:, 1] - onnx.predict_proba(stand_in.X))
    assert diff.max() <= PARITY_TOLERANCE
    assert trained.metrics["onnx_max_abs_diff"] <= PARITY_TOLERANCE


def test_a_model_failing_parity_is_not_registered(monkeypatch):
    before = _count_models()
    monkeypatch.setattr("fraudscore.training.trainer.PARITY_TOLERANCE", -1.0)  # nothing can pass
    with pytest.raises(ParityError):
        train(generate(5_000, seed=3), progress=False, log=lambda *_: None,
              cfg=TrainConfig(n_estimators=3, n_jobs=1))
    assert _count_models() == before


def test_checksum_mismatch_and_missing_files_are_detected(trained, tmp_path):
    model = bentoml.models.get(trained.tag)
    onnx = Path(model.path) / artifact.ONNX_FILE
    original = onnx.read_bytes()
    try:
        onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(artifact.ArtifactError, match="checksum mismatch for model.onnx"):
            artifact.load(trained.tag)
        onnx.unlink()
        with pytest.raises(artifact.ArtifactError, match="missing model.onnx"):
            artifact.load(trained.tag)
    finally:
        onnx.write_bytes(original)
    with pytest.raises(artifact.ArtifactError, match="not in the model store"):
        artifact.load("fraud_detector:doesnotexist")


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train.py"), "--quiet", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_trains_on_a_real_format_csv_and_reports(tmp_path):
    path = tmp_path / "creditcard.csv"
    write_csv(generate(8_000, seed=5), path)
    before = _count_models()
    done = _train_cli("--data", str(path), "--trees", "5", "--jobs", "1")
    assert done.returncode == 0, done.stderr
    assert "registered fraud_detector:" in done.stdout and "auprc" in done.stdout
    assert _count_models() == before + 1
    tag = done.stdout.split("registered ")[1].split()[0]
    assert bentoml.models.get(tag).info.metadata["data_source"] == "file creditcard.csv"
    report = Path(done.stdout.split("report: ")[1].split()[0])
    assert report == Path(bentoml.models.get(tag).path) / "report.html" and report.is_file()
    assert "served probabilities: the forest's, uncalibrated" in done.stdout


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    ('"Time","V1"\n1,2\n', "wrong columns"),
])
def test_cli_refuses_bad_files_and_registers_nothing(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    before = _count_models()
    done = _train_cli("--data", str(path))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert _count_models() == before


@pytest.mark.parametrize("option", [["--trees", "0"], ["--jobs", "0"], ["--seed", "-1"],
                                    ["--review-budget", "5"], ["--max-features", "2"], ["--rows", "x"],
                                    ["--calibration", "isotonic"]])
def test_cli_rejects_bad_options_without_a_traceback(option):
    done = _train_cli(*option)
    assert done.returncode == 2 and option[0] in done.stderr and "Traceback" not in done.stderr


def test_an_entry_whose_serving_file_lacks_a_key_is_unavailable_not_a_crash():
    from fraudscore.scoring.pipeline import ScoringPipeline, check_configuration
    from fraudscore.settings import Settings

    tag = artifact.register({artifact.ONNX_FILE: b"graph", artifact.SERVING_FILE: b'{"features": []}'},
                            {"trained_at": "now"}, labels={})
    try:
        with pytest.raises(artifact.ArtifactError, match="lacks thresholds, feature_stats"):
            artifact.load(tag)
        settings = Settings(_env_file=None, model_tag=tag)
        check_configuration(settings)  # the deployment hook: no KeyError, the server starts
        pipeline = ScoringPipeline.load(settings)
        assert not pipeline.ready and "lacks thresholds" in pipeline.unavailable_reason
    finally:
        bentoml.models.delete(tag)


def test_the_training_report_is_in_the_entry_and_shows_its_plots(trained):
    from fraudscore.training.report import HTML_FILE, PLOTS

    model = bentoml.models.get(trained.tag)
    root = Path(model.path)
    checksums = model.info.metadata["checksums"]
    html = (root / HTML_FILE).read_text()
    for name in PLOTS:
        data = (root / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        assert checksums[name] == hashlib.sha256(data).hexdigest()
        assert f'<img src="{name}"' in html
    assert trained.report == root / HTML_FILE
    assert f"{trained.metrics['auprc']}" in html and "Brier" in html and "calibration" in html
    assert sum(p.stat().st_size for p in root.glob("report*")) < 1_000_000


def test_calibration_is_measured_always_and_served_only_when_asked(trained, stand_in):
    assert trained.calibration.keys() == {"none", "isotonic", "sigmoid"}
    meta = bentoml.models.get(trained.tag).info.metadata
    assert meta["calibration"]["served"] == "none"
    assert trained.metrics["brier"] == trained.calibration["none"]["brier"]

    calibrated = train(generate(20_000, seed=7), TrainConfig(n_estimators=12, n_jobs=1, seed=7,
                                                             calibration="sigmoid"),
                       progress=False, log=lambda *_: None)
    model = bentoml.models.get(calibrated.tag)
    assert model.info.metadata["calibration"]["served"] == "sigmoid"
    assert model.info.labels["calibration"] == "sigmoid"
    assert calibrated.metrics["onnx_max_abs_diff"] <= PARITY_TOLERANCE  # parity of the served graph
    assert calibrated.metrics["brier"] == calibrated.calibration["sigmoid"]["brier"]
    raw = OnnxForest((Path(bentoml.models.get(trained.tag).path) / artifact.ONNX_FILE).read_bytes())
    served = OnnxForest((Path(model.path) / artifact.ONNX_FILE).read_bytes())
    X = stand_in.X[:2_000]
    assert not np.allclose(raw.predict_proba(X), served.predict_proba(X), atol=1e-3)
    # a sigmoid keeps the order of the forest's scores: the same ranking, so the same AUPRC
    assert calibrated.calibration["sigmoid"]["auprc"] == calibrated.calibration["none"]["auprc"]
    with pytest.raises(ValueError, match="calibration must be one of"):
        train(generate(5_000, seed=3), TrainConfig(n_estimators=2, calibration="isotonic"), progress=False,
              log=lambda *_: None)
