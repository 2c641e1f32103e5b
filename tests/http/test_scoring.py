import pytest

from fraudscore import stages
from tests.conftest import LEGACY_KEY, SECOND_KEY, tx_body

NATIVE_FIELDS = {"fraud_score", "fraud_probability", "is_fraud", "decision", "threshold", "model_version",
                 "transaction_id"}


def test_scores_one_transaction(client, auth, stand_in, trained):
    r = client.post("/fraud_score", json=tx_body(stand_in, 0), headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert set(body) - {"reasons"} == NATIVE_FIELDS  # an id is generated when none was given
    assert 0 <= body["fraud_score"] <= 100 and isinstance(body["fraud_score"], int)
    assert body["model_version"] == trained.tag
    assert body["threshold"] == trained.thresholds.block


def test_echoes_the_transaction_id(client, auth, stand_in):
    r = client.post("/fraud_score", json=tx_body(stand_in, 1, transaction_id="tx-42"), headers=auth)
    assert r.status_code == 200 and r.json()["transaction_id"] == "tx-42"


def test_decisions_follow_the_trained_thresholds(client, auth, stand_in, trained):
    frauds = [i for i in range(len(stand_in.y)) if stand_in.y[i] == 1][:20]
    rows = [tx_body(stand_in, i) for i in frauds + list(range(40))]
    r = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth)
    assert r.status_code == 200
    th = trained.thresholds
    seen = set()
    for v in r.json():
        expected = "block" if v["fraud_score"] >= th.block else (
            "review" if v["fraud_score"] >= th.review else "approve")
        assert v["decision"] == expected and v["is_fraud"] == (v["fraud_score"] >= th.block)
        seen.add(v["decision"])
    assert {"approve", "block"} <= seen  # known frauds of the training data are caught


def test_batch_keeps_order_and_equals_single_scoring(client, auth, stand_in):
    rows = [tx_body(stand_in, i, transaction_id=f"t{i}") for i in range(0, 3000, 30)]
    rows += [tx_body(stand_in, i, transaction_id=f"f{i}") for i in range(len(stand_in.y)) if stand_in.y[i]]
    batch = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth)
    assert batch.status_code == 200
    results = batch.json()
    assert [v["transaction_id"] for v in results] == [r["transaction_id"] for r in rows]
    for row, verdict in list(zip(rows, results, strict=True))[::7]:
        single = client.post("/fraud_score", json=row, headers=auth).json()
        assert single == verdict


@pytest.mark.parametrize("size", [0, 1001])
def test_batch_size_outside_1_to_cap_is_refused(client, auth, stand_in, size):
    rows = [tx_body(stand_in, 0)] * size
    r = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth)
    assert r.status_code == 400
    assert "at least 1" in r.text or "at most 1000" in r.text


def test_batch_at_the_cap_is_accepted(client, auth, stand_in):
    r = client.post("/fraud_score/batch", json={"transactions": [tx_body(stand_in, 5)] * 1000}, headers=auth)
    assert r.status_code == 200 and len(r.json()) == 1000


def test_legacy_route_answers_exactly_like_the_fastapi_service(client, auth, stand_in):
    body = tx_body(stand_in, 3)
    native = client.post("/fraud_score", json=body, headers=auth).json()
    r = client.post("/v1/fraud-score", json={**body, "merchant": "ignored as FastAPI did"}, headers=auth)
    assert r.status_code == 200
    assert r.json() == {"fraud-score": native["fraud_score"], "is-fraud": native["is_fraud"],
                        "model-version": native["model_version"]}


def test_legacy_route_invalid_body_is_422_fastapi_style(client, auth, stand_in):
    body = tx_body(stand_in, 3)
    del body["V7"]
    r = client.post("/v1/fraud-score", json=body, headers=auth)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "V7"]
    r = client.post("/v1/fraud-score", content=b"{", headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


def test_model_info(client, auth, trained):
    r = client.get("/model_info", headers=auth)
    assert r.status_code == 200
    info = r.json()
    assert info["tag"] == trained.tag
    assert info["thresholds"] == trained.thresholds.as_dict()
    assert info["thresholds_source"] == {"block": "model", "review": "model"}
    assert info["stage"] == stages.get(trained.tag).stage  # the entry's stage (promotion.json)
    assert info["metrics"]["auprc"] == trained.metrics["auprc"]
    assert len(info["top_feature_importances"]) == 10 and "onnxruntime" in info["versions"]
    assert info["data_source"].startswith("generated stand-in")
    assert client.get("/model_info").status_code == 403


@pytest.mark.parametrize("headers", [
    {"X-API-Key": SECOND_KEY}, {"X-API-Key": LEGACY_KEY}, {"Authorization": f"Bearer {SECOND_KEY}"},
    {"authorization": f"bearer {LEGACY_KEY}"},
])
def test_every_configured_key_works_in_both_headers(client, stand_in, headers):
    assert client.post("/fraud_score", json=tx_body(stand_in, 0), headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/fraud_score", "/fraud_score/batch", "/v1/fraud-score"])
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong-key-0123456789abcdef"},
                                     {"Authorization": "Basic dGVzdA=="}, {"X-API-Key": ""}])
def test_missing_or_wrong_key_is_403(client, stand_in, path, headers):
    r = client.post(path, json=tx_body(stand_in, 0), headers=headers)
    assert r.status_code == 403
    assert "detail" in r.json()


def test_key_is_checked_before_the_body_is_read_over_http(client):
    # an oversized, malformed body without a key: refused for the key, not for the body
    r = client.post("/v1/fraud-score", content=b"x" * (3 * 1024 * 1024),
                    headers={"content-type": "application/json"})
    assert r.status_code == 403 and r.json() == {"detail": "Not authenticated"}


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/healthz", "/metrics"])
def test_probes_and_metrics_need_no_key(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/", "/docs.json", "/schema.json"])
def test_docs_are_not_public_by_default(client, auth, path):
    assert client.get(path).status_code == 403
    assert client.get(path, headers=auth).status_code == 200


def _sample(text: str, series: str) -> float:
    values = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(series + " ")]
    return sum(values)


def test_metrics_count_decisions_and_rejections(client, auth, stand_in, trained):
    approve = f'fraud_decisions_total{{decision="approve",model_version="{trained.tag}"}}'
    missing = 'fraud_requests_rejected_total{reason="auth_missing"}'
    scores = f'fraud_score_count{{model_version="{trained.tag}"}}'
    before = client.get("/metrics").text
    legit = [tx_body(stand_in, i) for i in range(10) if stand_in.y[i] == 0][:5]
    verdicts = client.post("/fraud_score/batch", json={"transactions": legit}, headers=auth).json()
    client.post("/fraud_score", json=legit[0])  # no key
    after = client.get("/metrics").text
    approved = sum(v["decision"] == "approve" for v in verdicts)
    assert _sample(after, approve) - _sample(before, approve) == approved
    assert _sample(after, scores) - _sample(before, scores) == len(legit)
    assert _sample(after, missing) - _sample(before, missing) == 1
    assert "fraud_model_inference_seconds_bucket" in after


def test_x_api_key_wins_over_bearer_whatever_the_header_order(client, stand_in):
    from tests.conftest import KEY

    body = tx_body(stand_in, 0)
    wrong = "wrong-key-0123456789abcdef"
    for headers in ([("X-API-Key", wrong), ("Authorization", f"Bearer {KEY}")],
                    [("Authorization", f"Bearer {KEY}"), ("X-API-Key", wrong)]):
        assert client.post("/fraud_score", json=body, headers=headers).status_code == 403
    for headers in ([("X-API-Key", KEY), ("Authorization", f"Bearer {wrong}")],
                    [("Authorization", f"Bearer {wrong}"), ("X-API-Key", KEY)]):
        assert client.post("/fraud_score", json=body, headers=headers).status_code == 200


@pytest.mark.parametrize("path", ["/fraud_score", "/fraud_score/batch", "/v1/fraud-score"])
def test_scoring_routes_answer_other_methods_with_405(client, auth, path):
    r = client.get(path, headers=auth)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_answers_are_compact_json(client, auth, stand_in):
    r = client.post("/fraud_score", json=tx_body(stand_in, 0), headers=auth)
    assert r.status_code == 200 and b", " not in r.content and b'":' in r.content
    assert int(r.headers["content-length"]) == len(r.content)


def test_a_failing_model_is_a_logged_500_at_once(client, auth, stand_in, monkeypatch, caplog):
    from fraudscore.scoring.model import OnnxForest

    def boom(self, X):
        raise RuntimeError("onnxruntime fell over")

    monkeypatch.setattr(OnnxForest, "predict_proba", boom)
    for path, body in (("/fraud_score", tx_body(stand_in, 0)),
                       ("/fraud_score/batch", {"transactions": [tx_body(stand_in, 0)] * 150})):
        r = client.post(path, json=body, headers=auth)
        assert r.status_code == 500 and r.json() == {"error": "internal error (see the server log)"}
    failures = [rec for rec in caplog.records if rec.getMessage().startswith("POST /fraud_score")]
    assert failures and all(rec.levelname == "ERROR" and rec.exc_info for rec in failures)


def test_batch_validation_stops_at_the_first_invalid_transaction(client, auth, stand_in):
    # 1,000 empty objects (3 kB) would be 30,000 errors: validation stops at the first item
    r = client.post("/fraud_score/batch", json={"transactions": [{}] * 1000}, headers=auth)
    assert r.status_code == 400
    assert r.json()["error"].startswith("30 validation error(s)") and len(r.json()["detail"]) == 20
    assert all(e["loc"][:2] == ["transactions", 0] for e in r.json()["detail"])
    rows = [tx_body(stand_in, i) for i in range(5)] + [{}]
    r = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth)
    assert r.status_code == 400 and r.json()["detail"][0]["loc"][:2] == ["transactions", 5]
