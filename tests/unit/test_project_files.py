"""Files that must agree with each other."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_bento_requirements_are_the_lock_files_serving_set():
    exported = subprocess.run(
        [sys.executable, "-m", "uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
         "--format", "requirements-txt", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    committed = (ROOT / "requirements.txt").read_text()

    def pins(text: str) -> list[str]:
        return sorted(ln for ln in text.splitlines() if ln and not ln.startswith(("#", " ")))

    assert pins(committed) == pins(exported), "run `make requirements` after changing uv.lock"
    assert not any(p.startswith(("scikit-learn", "pytest", "skl2onnx")) for p in pins(committed))


def test_bentofile_carries_no_secret_and_points_at_the_service():
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert bentofile["service"] == "service:FraudScorer"
    names = {e["name"] for e in bentofile.get("envs", [])}
    assert not names & {"FRAUD_API_KEYS", "API_KEY", "FRAUD_API_KEYS_FILE"}
    assert ".env" in bentofile["exclude"]


def test_configuration_names_the_service_class():
    config = yaml.safe_load((ROOT / "configuration.yaml").read_text())
    assert list(config["services"]) == ["FraudScorer"] and "version" not in config
