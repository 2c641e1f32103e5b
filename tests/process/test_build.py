"""`bentoml build` (what `make build` runs): a bento with the production model and no secret."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import KEY, LEGACY_KEY, SECOND_KEY

pytestmark = pytest.mark.process
ROOT = Path(__file__).resolve().parents[2]


def test_bento_carries_service_model_and_configuration_but_no_secret(trained, tmp_path):
    """What `make build` does: the production model pinned into a generated bentofile, then
    `bentoml build -f` on it."""
    from fraudscore import devtools, stages

    stages.promote(trained.tag, {"checks": [], "note": "test_build: a real record, no gate run"})
    bentofile = tmp_path / "bentofile.yaml"
    assert devtools.production_bentofile(str(bentofile)) == 0
    env = dict(os.environ)
    done = subprocess.run([str(ROOT / ".venv/bin/bentoml"), "build", "-f", str(bentofile), "--output", "tag"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    bento = Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    assert [m["tag"] for m in info["models"]] == [trained.tag]
    assert {e["name"]: e["value"] for e in info["envs"]}["FRAUD_MODEL_TAG"] == trained.tag
    src = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*") if p.is_file()}
    assert {"service.py", "configuration.yaml", "fraudscore/scoring/pipeline.py"} <= src
    assert not any(p.startswith(("tests/", ".venv/")) or p.endswith(".env") for p in src)
    # training needs scikit-learn, which the bento lacks
    assert not any(f.startswith("fraudscore/training/") for f in src)
    requirements = (bento / "env/python/requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "pytest" not in requirements
    for path in bento.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (KEY, SECOND_KEY, LEGACY_KEY):
                assert secret.encode() not in data, f"{secret} found in {path}"
    assert not any(e["name"] in ("FRAUD_API_KEYS", "API_KEY") for e in info.get("envs", []))
