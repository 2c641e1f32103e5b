"""Target-rate thresholds and the readiness / threshold gauges in a real `bentoml serve`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import bentoml
import httpx
import pytest

from fraudscore import artifact
from tests.conftest import KEY, tx_body
from tests.process.conftest import ROOT, free_port, serve_command, server_env

pytestmark = pytest.mark.process

H = {"X-API-Key": KEY}


def _gauge(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_target_rate_mode_serves_with_bounds_and_gauges(serve, trained, stand_in):
    srv = serve("target-rate", workers=2, FRAUD_MODEL_TAG=trained.tag, FRAUD_THRESHOLD_MODE="target-rate",
                FRAUD_TARGET_BLOCK_RATE="0.002")
    with httpx.Client(base_url=srv.url, headers=H, timeout=10) as c:
        info = c.get("/model_info").json()
        assert info["threshold_mode"] == "target-rate" and info["target_block_rate"] == 0.002
        bounds = info["block_threshold_bounds"]
        assert bounds["low"] <= info["thresholds"]["block"] <= bounds["high"]
        assert info["thresholds_source"] == {"block": "target-rate", "review": "target-rate"}
        rows = [tx_body(stand_in, i) for i in range(200)]
        assert c.post("/fraud_score/batch", json={"transactions": rows}).status_code == 200
        text = c.get("/metrics").text
    tag = trained.tag
    assert _gauge(text, f'fraud_model_ready{{model_version="{tag}"}}') == 1.0
    block = _gauge(text, f'fraud_block_threshold{{model_version="{tag}"}}')
    assert block is not None and bounds["low"] <= block <= bounds["high"]
    assert _gauge(text, f'fraud_review_threshold{{model_version="{tag}"}}') is not None


def test_target_rate_with_an_entry_lacking_its_reference_stops_the_start(trained):
    root = Path(bentoml.models.get(trained.tag).path)
    serving = json.loads((root / artifact.SERVING_FILE).read_text())
    del serving["threshold_reference"]
    tag = artifact.register({artifact.ONNX_FILE: (root / artifact.ONNX_FILE).read_bytes(),
                             artifact.SERVING_FILE: json.dumps(serving).encode()},
                            dict(bentoml.models.get(trained.tag).info.metadata), labels={})
    try:
        env = server_env(FRAUD_MODEL_TAG=tag, FRAUD_THRESHOLD_MODE="target-rate",
                         FRAUD_TARGET_BLOCK_RATE="0.002")
        done = subprocess.run(serve_command(free_port()), cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        output = done.stdout + done.stderr
        assert done.returncode != 0
        assert "has no threshold reference" in output and "FRAUD_THRESHOLD_MODE=static" in output
        assert "Traceback" not in output
    finally:
        bentoml.models.delete(tag)
