"""The issue's "done when": `bentoml serve` with FRAUD_ALERT_WEBHOOK_URL at a local receiver
delivers a signed alert for model/sample_fraud.json within 2 s of the verdict."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from fraudscore.alerts.signing import verify
from tests.conftest import KEY
from tests.process.conftest import ROOT, start_server
from tests.receiver import Receiver, wait_for

pytestmark = pytest.mark.process

SECRET = "process-test-signing-secret-0123456789"  # noqa: S105 (a test key)


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def test_a_blocked_sample_delivers_a_signed_alert_within_two_seconds(trained, tmp_path):
    receiver = Receiver()
    sample = json.loads((ROOT / "model" / "sample_fraud.json").read_text())
    srv = start_server(tmp_path / "server.log", workers=2, FRAUD_MODEL_TAG=trained.tag,
                       FRAUD_DATA_DIR=str(tmp_path / "data"), FRAUD_ALERT_WEBHOOK_URL=receiver.url,
                       FRAUD_ALERT_SECRET=SECRET, FRAUD_ALERT_LINK_TEMPLATE="https://console/d/{transaction_id}")
    try:
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": KEY}, timeout=10) as http:
            time.sleep(1.0)  # the writers migrate the fresh store first
            r = http.post("/fraud_score", json=sample)
            decided = time.time()
            assert r.status_code == 200, r.text
            verdict = r.json()
            assert verdict["decision"] == "block", verdict  # the tests' model blocks the sample
            assert wait_for(lambda: receiver.ids(), 2.0), srv.logs()[-3000:]
            got = receiver.requests[0]
            assert got.at - decided < 2.0
            assert verify(SECRET, got.headers["X-Fraud-Signature"], got.body)
            body = got.json()
            assert body["transaction_id"] == "sample-fraud-1" == verdict["transaction_id"]
            assert body["score"] == verdict["fraud_score"] and body["decision"] == "block"
            assert body["link"] == "https://console/d/sample-fraud-1"
            assert got.headers["X-Fraud-Alert-Id"] == body["alert_id"]
            print(f"decision -> receipt: {(got.at - decided) * 1e3:.0f} ms")
            time.sleep(1.5)  # the gauges are published once a second
            metrics = http.get("/metrics").text
            assert _metric(metrics, "fraud_alerts_sent_total") == 1
            assert _metric(metrics, "fraud_alerts_outbox_depth") == 0
            assert "fraud_alerts_oldest_pending_seconds" in metrics
            assert len(receiver.requests) == 1  # two workers' senders: still one delivery
        logs = srv.logs()
        assert "alerts webhook" in logs  # the destination is named ...
        assert str(receiver.port) not in logs and SECRET not in logs  # ... never its URL or secret
    finally:
        srv.stop()
        receiver.close()
