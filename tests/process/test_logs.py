"""JSON logs of a real `bentoml serve` (FRAUD_LOG_FORMAT=json): one line per refused request with
its request id, key name, route, status and latency, and never the key itself."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import tx_body
from tests.process.conftest import start_server

pytestmark = pytest.mark.process

NAMED_KEY = "checkout-key-0123456789abcdef"
WRONG_KEY = "wrong-key-THIS-MUST-NEVER-BE-LOGGED"


def _records(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _wait_for(server, request_ids: set[str], timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = _records(server.logs())
        if request_ids <= {r.get("request_id") for r in records} or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def test_refusals_are_one_json_line_each_with_their_fields(trained, stand_in, tmp_path, monkeypatch):
    # two workers, a model and a store each: a busy shared machine needed more than the usual 40 s
    monkeypatch.setattr("tests.process.conftest.READY_TIMEOUT", 120.0)
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[keys.checkout]\nkey = "{NAMED_KEY}"\nscopes = ["score"]\n')
    server = start_server(tmp_path / "server.log", FRAUD_LOG_FORMAT="json", FRAUD_MODEL_TAG=trained.tag,
                          FRAUD_API_KEYS_FILE=str(keys))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            wrong = http.post("/fraud_score", json=tx_body(stand_in, 0),
                              headers={"X-API-Key": WRONG_KEY, "X-Request-ID": "req-forbidden-1"})
            bad = http.post("/fraud_score", json={"Amount": "lots"},
                            headers={"X-API-Key": NAMED_KEY, "X-Request-ID": "req-invalid-1"})
            scope = http.get("/decisions/tx-1", headers={"X-API-Key": NAMED_KEY})
            ok = http.post("/fraud_score", json=tx_body(stand_in, 0),
                           headers={"X-API-Key": NAMED_KEY, "X-Request-ID": "req-fine-1"})
        assert (wrong.status_code, bad.status_code, scope.status_code, ok.status_code) == (403, 400, 403, 200)
        generated = scope.headers["x-request-id"]  # none sent: the edge made one
        records = _wait_for(server, {"req-forbidden-1", "req-invalid-1", generated})
        text = server.logs()
    finally:
        server.stop()

    by_id: dict[str, list[dict]] = {}
    for r in records:
        if "request_id" in r and "status" in r:
            by_id.setdefault(r["request_id"], []).append(r)
    (forbidden,) = by_id["req-forbidden-1"]
    assert forbidden["status"] == 403 and forbidden["route"] == "/fraud_score"
    assert forbidden["method"] == "POST" and "key" not in forbidden  # no valid key: no name
    assert isinstance(forbidden["latency_ms"], int | float) and forbidden["latency_ms"] >= 0
    assert forbidden["level"] == "INFO" and forbidden["logger"] == "bentoml.fraudscore"
    (invalid,) = by_id["req-invalid-1"]
    assert invalid["status"] == 400 and invalid["key"] == "checkout" and invalid["route"] == "/fraud_score"
    (no_scope,) = by_id[generated]
    assert no_scope["status"] == 403 and no_scope["key"] == "checkout"
    assert no_scope["route"] == "/decisions/{transaction_id}"  # the template, not the path
    assert "req-fine-1" not in by_id  # a 200 is counted, not logged
    # model events: each worker's load, with the version it serves
    loaded = [r for r in records if r.get("event") == "model_loaded"]
    assert loaded and all(r["model_version"] == trained.tag for r in loaded)
    assert {r["component"] for r in loaded} <= {"entry_service:FraudScorer:1", "entry_service:FraudScorer:2"}
    # no key material anywhere, and no ERROR (a 400 is the client's mistake)
    assert WRONG_KEY not in text and NAMED_KEY not in text
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
