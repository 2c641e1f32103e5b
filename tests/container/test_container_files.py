"""The container image definition (bentofile.yaml, deploy/container/) agrees with itself and with
the ECS task definition. Static checks only: `make container-test` builds and runs the image."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "deploy" / "container"
BENTO_PATH = "/home/bentoml/bento"  # where BentoML's Dockerfile unpacks the bento
SH, BASH = shutil.which("sh") or "/bin/sh", shutil.which("bash") or "/bin/bash"


def _bash_array(script: Path, name: str) -> list[str]:
    match = re.search(rf"^{name}=\(([^)]*)\)", script.read_text(), re.M)
    assert match, f"{name}=(...) not found in {script.name}"
    return shlex.split(match.group(1))


@pytest.fixture(scope="module")
def bentofile() -> dict:
    return yaml.safe_load((ROOT / "bentofile.yaml").read_text())


def test_image_starts_with_the_bentos_production_configuration(bentofile):
    envs = {e["name"]: e.get("value") for e in bentofile["envs"]}
    config = envs["BENTOML_CONFIG"]
    assert config.startswith(f"{BENTO_PATH}/src/")
    assert config.removeprefix(f"{BENTO_PATH}/src/") in bentofile["include"]
    assert envs["FRAUD_ENV_FILE"] == ""  # no dotenv file read in the image
    assert envs["FRAUD_LOG_FORMAT"] == "json"  # log collectors get one JSON object a line


def test_setup_script_exists_and_runs_under_sh(bentofile):
    script = ROOT / bentofile["docker"]["setup_script"]
    assert script.is_file() and os.access(script, os.X_OK)
    assert subprocess.run([SH, "-n", str(script)], capture_output=True).returncode == 0


@pytest.mark.parametrize("script", sorted(p.name for p in CONTAINER.glob("*.sh")))
def test_scripts_parse(script):
    done = subprocess.run([BASH, "-n", str(CONTAINER / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_writable_paths_are_declared_and_prepared_in_the_image():
    writable = _bash_array(CONTAINER / "smoke.sh", "WRITABLE_PATHS")
    volume = re.search(r'VOLUME (\[[^\]]*\])', (CONTAINER / "build.sh").read_text())
    assert volume and yaml.safe_load(volume.group(1).replace('\\"', '"')) == writable
    setup = (CONTAINER / "image-setup.sh").read_text()
    for path in writable:
        if path.startswith("/home/bentoml/"):
            assert path.removeprefix("/home/bentoml/") in setup


def test_ecs_mounts_exactly_the_writable_paths():
    ecs = ROOT / "deploy" / "ecs.yaml"
    if not ecs.exists():
        pytest.skip("no deploy/ecs.yaml")
    from cfnlint.decode import decode_str

    template, matches = decode_str(ecs.read_text())
    assert template is not None and not matches, matches
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container.get("ReadonlyRootFilesystem") is True
    mounted = sorted(m["ContainerPath"] for m in container.get("MountPoints", []))
    assert mounted == sorted(_bash_array(CONTAINER / "smoke.sh", "WRITABLE_PATHS"))
