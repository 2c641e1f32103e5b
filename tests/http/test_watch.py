"""Warnings, per-key thresholds and the drift / threshold / readiness gauges, over HTTP."""

from fraudscore.features import FEATURES
from tests.conftest import tx_body
from tests.http.conftest import MERCHANT_KEY

MERCHANT = {"X-API-Key": MERCHANT_KEY}


def _outlier(stand_in, **extra):
    return tx_body(stand_in, 2, **extra) | {"V14": -1e6}


def test_a_feature_outside_the_training_range_is_a_warning(client, auth, stand_in, trained):
    from fraudscore import artifact

    stats = artifact.load(trained.tag).serving["feature_stats"]["V14"]
    r = client.post("/fraud_score", json=_outlier(stand_in), headers=auth)
    assert r.status_code == 200
    assert r.json()["warnings"] == [{"feature": "V14", "value": -1e6, "low": stats["min"],
                                     "high": stats["max"]}]
    rows = [tx_body(stand_in, 2), _outlier(stand_in)]
    batch = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth).json()
    assert "warnings" not in batch[0] and batch[1]["warnings"][0]["feature"] == "V14"


def test_the_legacy_route_keeps_its_shape_with_an_outlier(client, auth, stand_in):
    r = client.post("/v1/fraud-score", json=_outlier(stand_in), headers=auth)
    assert r.status_code == 200 and set(r.json()) == {"fraud-score", "is-fraud", "model-version"}


def test_a_key_with_its_own_thresholds_gets_its_decisions(client, auth, stand_in, trained):
    rows = [tx_body(stand_in, i) for i in range(len(stand_in.y)) if stand_in.y[i]][:20]
    rows += [tx_body(stand_in, i) for i in range(300)]
    default = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth).json()
    merchant = client.post("/fraud_score/batch", json={"transactions": rows}, headers=MERCHANT).json()
    th = trained.thresholds
    for d, s in zip(default, merchant, strict=True):
        assert d["fraud_score"] == s["fraud_score"]
        assert s["threshold"] == 95 and s["is_fraud"] == (s["fraud_score"] >= 95)
        assert s["decision"] == ("block" if s["fraud_score"] >= 95 else "review" if s["fraud_score"] >= 50
                                 else "approve")
        assert d["threshold"] == th.block
    assert any(d["decision"] != s["decision"] for d, s in zip(default, merchant, strict=True))
    one = client.post("/fraud_score", json=rows[0], headers=MERCHANT).json()
    assert one["threshold"] == 95
    legacy = client.post("/v1/fraud-score", json=rows[0], headers=MERCHANT).json()
    assert legacy["is-fraud"] == (legacy["fraud-score"] >= 95)


def test_model_info_shows_the_thresholds_of_the_calling_key(client, auth, trained):
    info = client.get("/model_info", headers=MERCHANT).json()
    assert info["thresholds"] == {"block": 95, "review": 50}
    source = "key file [keys.merchant_a]"
    assert info["thresholds_source"] == {"block": source, "review": source}
    info = client.get("/model_info", headers=auth).json()
    assert info["thresholds"] == trained.thresholds.as_dict()
    assert info["threshold_mode"] == "static" and info["target_block_rate"] is None
    assert info["block_threshold_bounds"] is None and info["drift"].startswith("PSI over")


def _series(text: str, name: str) -> dict[str, float]:
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
            if ln.startswith(name + "{") or ln.startswith(name + " ")}


def test_the_drift_threshold_and_readiness_gauges_are_exported(client, auth, stand_in, trained):
    # training-like traffic, enough to replace the whole window (10,000 rows; other tests sent
    # the same row 1,000 times, a population unlike training's, which the gauges rightly showed)
    for start in range(0, 11_000, 1_000):
        rows = [tx_body(stand_in, i) for i in range(start, start + 1_000)]
        assert client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth).status_code == 200
    text = client.get("/metrics").text
    psi = _series(text, "fraud_drift_psi")
    # Time is a clock: no drift series (README, Drift)
    assert {f'fraud_drift_psi{{feature="{f}"}}' for f in FEATURES if f != "Time"} == set(psi)
    assert max(psi.values()) < 0.1  # the training population: no drift
    assert list(_series(text, "fraud_score_psi").values())[0] < 0.25
    tag = trained.tag
    assert _series(text, "fraud_block_threshold") == {
        f'fraud_block_threshold{{model_version="{tag}"}}': trained.thresholds.block}
    assert _series(text, "fraud_review_threshold") == {
        f'fraud_review_threshold{{model_version="{tag}"}}': trained.thresholds.review}
    assert _series(text, "fraud_model_ready")[f'fraud_model_ready{{model_version="{tag}"}}'] == 1.0


def test_warnings_and_a_keys_thresholds_are_recorded_in_the_decision_log(client, stand_in):
    from tests.http.test_decisions import _recorded

    body = _outlier(stand_in, transaction_id="watch-outlier-1")
    r = client.post("/fraud_score", json=body, headers=MERCHANT)
    assert r.status_code == 200
    record = _recorded(client, "watch-outlier-1")["decision"]
    assert record["warnings"] == r.json()["warnings"] and record["key_name"] == "merchant_a"
    assert (record["threshold"], record["review_threshold"]) == (95, 50)


def test_the_openapi_document_declares_the_warnings(client, auth):
    schemas = client.get("/docs.json", headers=auth).json()["components"]["schemas"]
    verdict = schemas["FraudScoreOut"]
    assert "warnings" in verdict["properties"] and "warnings" not in verdict.get("required", [])
    assert set(schemas["WarningOut"]["required"]) == {"feature", "value", "low", "high"}
    info = schemas["ModelInfoOut"]["properties"]
    assert {"threshold_mode", "target_block_rate", "block_threshold_bounds", "drift"} <= set(info)
