"""Startup and readiness failures, each on its own `bentoml serve`: a missing or corrupt model keeps
the process up and answers 503; no API key stops the process before it serves anything."""

from __future__ import annotations

import contextlib
import subprocess
import time

import bentoml
import httpx
import pytest

from fraudscore import artifact
from fraudscore.training.data import generate
from fraudscore.training.trainer import TrainConfig, train
from tests.conftest import KEY, tx_body
from tests.process.conftest import ROOT, free_port, kill_group, serve_command, server_env

pytestmark = pytest.mark.process

H = {"X-API-Key": KEY}
KEY_VARS = ("FRAUD_API_KEYS", "API_KEY", "FRAUD_API_KEYS_FILE")


def _assert_stays_unready(srv, seconds: float = 1.5, reason: str = "") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r = httpx.get(f"{srv.url}/readyz", timeout=5)
        assert r.status_code == 503 and r.json()["status"] == "unavailable"  # and says why
        assert reason in r.json()["reason"]
        time.sleep(0.3)


def _wait_live(srv, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{srv.url}/livez", timeout=5).status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"/livez not 200 within {timeout} s:\n{srv.logs()[-3000:]}")


def test_missing_model_keeps_the_process_up_and_answers_503(serve, stand_in):
    tag = "fraud_detector:doesnotexist"
    srv = serve("missing-model", expect_ready=False, workers=2, FRAUD_MODEL_TAG=tag)
    _wait_live(srv)
    _assert_stays_unready(srv, reason="not in the model store")
    with httpx.Client(base_url=srv.url, headers=H, timeout=10) as c:
        for path, body in (("/fraud_score", tx_body(stand_in, 0)),
                           ("/fraud_score/batch", {"transactions": [tx_body(stand_in, 0)]}),
                           ("/v1/fraud-score", tx_body(stand_in, 0))):
            r = c.post(path, json=body)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json")
            assert "not in the model store" in r.json()["detail"] and tag in r.json()["detail"]
        info = c.get("/model_info")
        assert info.status_code == 503 and "not in the model store" in info.json()["detail"]
        assert f'fraud_model_ready{{model_version="{tag}"}} 0.0' in c.get("/metrics").text
        # authentication still comes first
        assert c.post("/fraud_score", json=tx_body(stand_in, 0), headers={"X-API-Key": ""}).status_code == 403
    assert srv.alive()
    logs = srv.logs()
    assert "Traceback" not in logs
    assert "[ERROR] [entry_service:FraudScorer:1] model unavailable" in logs  # an operator's problem



def test_corrupt_model_is_refused_by_its_checksum(serve, trained, stand_in):
    extra = train(generate(5_000, seed=11), TrainConfig(n_estimators=3, n_jobs=1), progress=False,
                  log=lambda *_: None)
    try:
        onnx = bentoml.models.get(extra.tag).path_of(artifact.ONNX_FILE)
        with open(onnx, "r+b") as fh:  # flip one byte in the middle of the graph
            data = bytearray(fh.read())
            data[len(data) // 2] ^= 0xFF
            fh.seek(0)
            fh.write(data)
        srv = serve("corrupt-model", expect_ready=False, workers=2, FRAUD_MODEL_TAG=extra.tag)
        _wait_live(srv)
        _assert_stays_unready(srv, reason="checksum mismatch for model.onnx")
        for path in ("/fraud_score", "/v1/fraud-score"):
            r = httpx.post(f"{srv.url}{path}", json=tx_body(stand_in, 0), headers=H, timeout=10)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert "checksum mismatch for model.onnx" in r.json()["detail"]
        assert srv.alive()
    finally:
        bentoml.models.delete(extra.tag)  # :latest is the session's model again


@pytest.mark.parametrize("keys", [None, " , "], ids=["unset", "blank"])
def test_refuses_to_start_without_a_key(trained, tmp_path, keys):
    port = free_port()
    env = server_env(drop=KEY_VARS, FRAUD_MODEL_TAG=trained.tag)
    if keys is not None:
        env["FRAUD_API_KEYS"] = keys
    log = tmp_path / "no-key.log"
    answered = []
    with open(log, "wb") as fh:
        proc = subprocess.Popen(serve_command(port), cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):  # it must never serve, not even once
                    answered.append(httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code)
                time.sleep(0.2)
            still_running = proc.poll() is None
        finally:
            kill_group(proc)
    output = log.read_text(errors="replace")
    assert not still_running, f"`bentoml serve` kept running without a key:\n{output[-3000:]}"
    assert proc.returncode != 0
    assert "no API key configured" in output, output[-3000:]
    assert not answered, answered


def test_a_review_edge_above_the_learned_block_stops_the_server(trained, tmp_path):
    port = free_port()
    env = server_env(FRAUD_MODEL_TAG=trained.tag, FRAUD_REVIEW_THRESHOLD=str(trained.thresholds.block + 1))
    done = subprocess.run(serve_command(port), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "review <= block" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_sklearn_engine_without_batching_serves_the_same_answers(serve, trained, stand_in):
    from fraudscore.scoring.model import OnnxForest

    srv = serve("sklearn", FRAUD_MODEL_TAG=trained.tag, FRAUD_ENGINE="sklearn",
                FRAUD_ADAPTIVE_BATCHING="false")
    rows = [tx_body(stand_in, i, transaction_id=f"tx-{i}") for i in range(30)]
    with httpx.Client(base_url=srv.url, headers=H, timeout=10) as c:
        info = c.get("/model_info").json()
        assert (info["engine"], info["adaptive_batching"]) == ("sklearn", False)
        batch = c.post("/fraud_score/batch", json={"transactions": rows})
        assert batch.status_code == 200
        singles = [c.post("/fraud_score", json=r).json() for r in rows]
    assert batch.json() == singles
    onnx = OnnxForest(artifact.load(trained.tag).model_bytes).predict_proba(stand_in.X[:30])
    assert max(abs(v["fraud_probability"] - p) for v, p in zip(singles, onnx, strict=True)) < 2e-6
