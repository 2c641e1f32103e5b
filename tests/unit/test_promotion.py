"""Model stages, the promotion gate (`make promote`), `make build`'s production bentofile and
`train.py --import-joblib`: real entries in the tests' private model store, no mock."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import bentoml
import joblib
import numpy as np
import pytest
import yaml

import train as train_cli
from fraudscore import artifact, devtools, stages
from fraudscore.features import FEATURES
from fraudscore.scoring.model import OnnxForest
from fraudscore.training import promote
from fraudscore.training.data import generate, write_csv
from fraudscore.training.importer import import_joblib
from fraudscore.training.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
TINY = TrainConfig(n_estimators=12, n_jobs=1, seed=7)
LOW = ["--min-auprc", "0.05", "--min-recall", "0.05", "--min-frauds", "1"]  # floors a tiny model reaches


def _count() -> int:
    return len(bentoml.models.list(artifact.MODEL_NAME))


def _quiet(*_: object) -> None:
    pass


@pytest.fixture(scope="module")
def standin_tag() -> str:
    """A candidate trained on the stand-in (its own entry: these tests change its stage)."""
    return train(generate(20_000, seed=11), TINY, progress=False, log=_quiet).tag


@pytest.fixture(scope="module")
def standin_forest():
    """A forest fitted outside this project, as the FastAPI service's was: on a DataFrame."""
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    data = generate(20_000, seed=3)
    frame = pd.DataFrame(data.X, columns=list(FEATURES))
    return RandomForestClassifier(n_estimators=15, random_state=0, n_jobs=1).fit(frame, data.y)


@pytest.fixture(scope="module")
def imported(standin_forest, tmp_path_factory):
    path = tmp_path_factory.mktemp("joblib") / "fraud-model.joblib"
    joblib.dump(standin_forest, path)
    return import_joblib(path, generate(20_000, seed=8), TINY, log=_quiet), path


# ------------------------------------------------------------------------------ import-joblib

def test_an_imported_forest_serves_its_own_probabilities_and_is_a_candidate(imported, standin_forest):
    result, path = imported
    entry = stages.get(result.tag)
    assert entry.stage == stages.CANDIDATE and entry.record is None
    rows = generate(5_000, seed=99).X
    onnx = OnnxForest(artifact.load(result.tag).model_bytes).predict_proba(rows)
    sklearn = standin_forest.predict_proba(_frame(rows))[:, 1]
    assert np.max(np.abs(onnx - sklearn)) <= 1e-5
    # the same entry contents as training: explainer, report, thresholds, feature statistics
    files = {p.name for p in entry.path.iterdir()}
    assert {artifact.EXPLAIN_FILE, "report.html", artifact.SERVING_FILE, artifact.SKOPS_FILE} <= files
    meta = entry.metadata
    assert meta["origin"] == "train.py --import-joblib fraud-model.joblib"
    assert meta["imported_file"]["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    assert meta["evaluated_on_standin"] is True and meta["trained_on_standin"] is False
    assert meta["metrics"]["test_frauds"] > 0 and 0 < meta["metrics"]["auprc"] <= 1


def _frame(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(FEATURES))


def test_the_cli_imports_with_trust_pickle_only(imported, capsys):
    _, path = imported
    before = _count()
    assert train_cli.main(["--import-joblib", str(path), "--quiet"]) == 2
    assert "--trust-pickle" in capsys.readouterr().err and _count() == before
    assert train_cli.main(["--import-joblib", str(path), "--trust-pickle", "--rows", "5000",
                           "--jobs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "registered fraud_detector:" in out and "stage: candidate" in out
    assert _count() == before + 1


def _bad_files(tmp: Path) -> list[tuple[Path, str]]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    data = generate(5_000, seed=4)
    cases = []
    text = tmp / "notes.joblib"
    text.write_text("this is not a model\n")
    cases.append((text, "is not a joblib file"))
    logistic = tmp / "logistic.joblib"
    joblib.dump(LogisticRegression().fit(data.X[:, 1:5], data.y), logistic)
    cases.append((logistic, "not a scikit-learn RandomForestClassifier"))
    narrow = tmp / "narrow.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=2).fit(data.X[:, :29], data.y), narrow)
    cases.append((narrow, "takes 29 features"))
    shuffled = tmp / "shuffled.joblib"
    joblib.dump(RandomForestClassifier(n_estimators=2).fit(
        _frame(data.X)[list(reversed(FEATURES))], data.y), shuffled)
    cases.append((shuffled, "in this order"))
    three = tmp / "three.joblib"
    labels = data.y.astype(int) + (data.X[:, 1] > 1)
    joblib.dump(RandomForestClassifier(n_estimators=2).fit(data.X, labels), three)
    cases.append((three, "classes are [0, 1, 2]"))
    unfitted = tmp / "unfitted.joblib"
    joblib.dump(RandomForestClassifier(), unfitted)
    cases.append((unfitted, "never fitted"))
    cases.append((tmp / "missing.joblib", "cannot read"))
    return cases


def test_bad_files_are_refused_naming_the_problem_and_nothing_is_registered(tmp_path, capsys):
    before = _count()
    for path, message in _bad_files(tmp_path):
        code = train_cli.main(["--import-joblib", str(path), "--trust-pickle", "--rows", "5000", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, (path.name, err)
        assert message in err and "Traceback" not in err, (path.name, err)
    assert _count() == before


# ------------------------------------------------------------------------------ the gate

def test_a_standin_model_is_refused_without_allow_standin(standin_tag, capsys):
    assert promote.main([standin_tag, *LOW]) == 1
    out, err = capsys.readouterr()
    assert "trained on" in out and "FAIL" in out and "--allow-standin" in out
    assert "refused" in err and stages.get(standin_tag).stage == stages.CANDIDATE


def test_floors_above_what_the_model_reaches_are_refused(standin_tag, capsys):
    auprc = stages.get(standin_tag).metadata["metrics"]["auprc"]
    floor = f"{min(auprc + 0.01, 1.0):.4f}"
    assert promote.main([standin_tag, "--allow-standin", "--min-auprc", floor, "--min-recall", "0",
                         "--min-frauds", "1"]) == 1
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("AUPRC")]
    assert "FAIL" in line and f"{auprc:.4f}" in line and floor in line
    too_few = promote.gate(standin_tag, promote.Floors(0, 0, 10_000), allow_standin=True)
    assert [c.name for c in too_few if not c.passed] == ["held-out frauds"]
    assert stages.get(standin_tag).stage == stages.CANDIDATE


def test_promotion_records_the_stage_and_retires_the_previous_one(standin_tag, imported, capsys):
    other = imported[0].tag
    assert promote.main([other, "--allow-standin", *LOW]) == 0
    assert promote.main([standin_tag, "--allow-standin", *LOW]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == standin_tag  # the pinned tag, last
    assert f"retired {other}" in out
    assert stages.get(standin_tag).stage == stages.PRODUCTION
    assert stages.get(other).stage == stages.RETIRED
    assert stages.production_tag() == standin_tag
    record = json.loads((stages.get(standin_tag).path / stages.PROMOTION_FILE).read_text())
    assert record["gate"]["allow_standin"] is True and all(c["passed"] for c in record["gate"]["checks"])
    with pytest.raises(stages.NoProductionModel, match="retired"):
        stages.production_tag(other)


def test_data_re_measures_the_held_out_figures(standin_tag, tmp_path):
    path = tmp_path / "holdout.csv"
    write_csv(generate(6_000, seed=21), path)
    from fraudscore.training.data import load_csv

    checks = {c.name: c for c in promote.gate(standin_tag, promote.Floors(0, 0, 1), data=load_csv(path))}
    assert checks["held-out data"].passed and "holdout.csv (re-measured)" in checks["held-out data"].value
    assert not checks["trained on"].passed  # a stand-in model stays refused whatever it is measured on
    assert checks["ONNX parity (6,000 --data rows)"].passed


def test_parity_between_the_graph_and_the_forest_is_checked(standin_tag, imported):
    """An entry whose model.onnx is not the export of its model.skops (both with valid checksums)."""
    source = stages.get(standin_tag).path
    files = {p.name: p.read_bytes() for p in source.iterdir() if p.name in stages.get(standin_tag)
             .metadata["checksums"]}
    files[artifact.ONNX_FILE] = (stages.get(imported[0].tag).path / artifact.ONNX_FILE).read_bytes()
    meta = {k: v for k, v in stages.get(standin_tag).metadata.items()
            if k not in ("checksums", "format_version")}
    tag = artifact.register(files, meta, labels={"test": "parity"})
    checks = promote.gate(tag, promote.Floors(0, 0, 1), allow_standin=True)
    (parity,) = [c for c in checks if c.name.startswith("ONNX parity")]
    assert not parity.passed and "ONNX differs" in parity.value


def test_a_record_that_does_not_match_its_entry_counts_for_nothing(standin_tag):
    tag = _new_entry()
    other = stages.get(standin_tag).metadata["checksums"]
    (stages.get(tag).path / stages.PROMOTION_FILE).write_text(   # another entry's record, copied
        json.dumps({"stage": "production", "promoted_at": "2999-01-01T00:00:00+00:00", "checksums": other}))
    e = stages.get(tag)
    assert e.stage == stages.CANDIDATE and "other files" in e.problem
    assert all(x.tag != tag for x in stages.entries() if x.stage == stages.PRODUCTION)


def _new_entry() -> str:
    cfg = TrainConfig(n_estimators=3, n_jobs=1)
    return train(generate(5_000, seed=12), cfg, progress=False, log=_quiet).tag


def test_an_altered_file_unpins_the_production_model(standin_tag):
    entry = stages.get(stages.production_tag())
    report = entry.path / "report.html"
    original = report.read_bytes()
    try:
        report.write_bytes(original + b"<!-- edited -->")
        with pytest.raises(artifact.ArtifactError, match="checksum mismatch for report.html"):
            stages.production_tag()
    finally:
        report.write_bytes(original)


# ------------------------------------------------------------------------------ make build

def test_the_production_bentofile_pins_the_promoted_model(standin_tag, tmp_path, capsys):
    stages.production_tag(standin_tag)  # promoted above
    out = tmp_path / "bentofile.yaml"
    assert devtools.production_bentofile(str(out)) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["models"] == [standin_tag]
    assert {"name": "FRAUD_MODEL_TAG", "value": standin_tag} in spec["envs"]
    original = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert {k: v for k, v in spec.items() if k not in ("models", "envs", "labels")} == \
        {k: v for k, v in original.items() if k not in ("models", "envs", "labels")}
    candidate = _new_entry()
    assert devtools.production_bentofile(str(out), candidate) == 1
    assert "candidate, not in production" in capsys.readouterr().err


def test_make_build_refuses_a_store_with_no_promoted_model(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, "-m", "fraudscore.devtools", "production-bentofile",
                           str(tmp_path / "b.yaml")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no model in the store is in production" in done.stderr and "make promote" in done.stderr
    assert not (tmp_path / "b.yaml").exists()


def test_models_lists_stages(standin_tag, capsys):
    assert stages.main([]) == 0
    out = capsys.readouterr().out
    (line,) = [ln for ln in out.splitlines() if ln.startswith(standin_tag)]
    assert "production" in line
    assert stages.main(["--production"]) == 0 and capsys.readouterr().out.strip() == standin_tag


def test_skops_of_a_calibrated_entry_loads_for_the_parity_check():
    import skops.io as sio
    from sklearn.calibration import CalibratedClassifierCV

    result = train(generate(5_000, seed=13), TrainConfig(n_estimators=3, n_jobs=1, calibration="sigmoid"),
                   progress=False, log=_quiet)
    model = promote._load_model(artifact.load(result.tag, model_file=artifact.SKOPS_FILE).model_bytes)
    assert isinstance(model, CalibratedClassifierCV)
    buf = io.BytesIO()
    from fraudscore.scoring.thresholds import Thresholds

    sio.dump(Thresholds(10, 5), buf)  # a type that is not scikit-learn's is refused before it is built
    with pytest.raises(artifact.ArtifactError, match="not scikit-learn's"):
        promote._load_model(buf.getvalue())


def test_an_unknown_tag_or_a_bad_file_is_a_message_not_a_traceback(standin_tag, tmp_path, capsys):
    assert promote.main(["fraud_detector:nosuchversion"]) == 2
    assert "not in the model store" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text('"Time","V1"\n1,2\n')
    assert promote.main([standin_tag, "--data", str(bad)]) == 2
    assert "wrong columns" in capsys.readouterr().err


def test_model_info_reports_the_stage_of_the_entry_in_service_as_it_is_now(standin_tag, imported):
    from fraudscore.scoring.scorer import Scorer
    from fraudscore.settings import Settings

    settings = Settings(_env_file=None, model_tag=standin_tag)
    scorer = Scorer(artifact.load(standin_tag), settings, counted=False)  # makes no metric series
    other = imported[0].tag
    assert promote.main([other, "--allow-standin", *LOW]) == 0
    assert scorer.model_info().stage == stages.get(standin_tag).stage != stages.PRODUCTION
    assert promote.main([standin_tag, "--allow-standin", *LOW]) == 0
    assert scorer.model_info().stage == stages.PRODUCTION  # promoted while it serves
    assert scorer.model_info("merchant", scorer.thresholds).stage == stages.PRODUCTION
    assert promote.main([other, "--allow-standin", *LOW]) == 0
    assert scorer.model_info().stage == stages.RETIRED
