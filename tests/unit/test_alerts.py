"""Alerts without a network: the signature (sign, verify, tampering, replay window), the settings
that must refuse to start, the outbox rows written with the decisions, the messages' shapes."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select

from fraudscore.alerts import destinations as fmt
from fraudscore.alerts.outbox import outbox_hook
from fraudscore.alerts.signing import sign, verify
from fraudscore.settings import ConfigError, Settings, load_settings
from fraudscore.store.batches import BatchWriter
from fraudscore.store.schema import alert_outbox, decisions
from tests.storetools import rec

SECRET = "s" * 32
BODY = b'{"alert_id":"a","score":97}'


def test_a_signature_verifies_and_nothing_else_does():
    header = sign(SECRET, BODY)
    assert header.startswith("t=") and ",v1=" in header
    assert verify(SECRET, header, BODY)
    assert not verify(SECRET, header, BODY.replace(b"97", b"98"))  # tampered body
    assert not verify("another-secret-of-thirty-two-chars!", header, BODY)
    assert not verify(SECRET, None, BODY) and not verify(SECRET, "garbage", BODY)
    assert not verify(SECRET, "t=abc,v1=00", BODY)


def test_a_stale_or_future_timestamp_is_refused_even_when_the_signature_is_right():
    old = sign(SECRET, BODY, timestamp=int(time.time()) - 301)
    assert not verify(SECRET, old, BODY)
    assert verify(SECRET, old, BODY, tolerance_s=600)
    assert not verify(SECRET, sign(SECRET, BODY, timestamp=int(time.time()) + 301), BODY)
    # the timestamp is signed: moving it forward breaks the signature
    t, v1 = old.split(",")
    assert not verify(SECRET, f"t={int(time.time())},{v1}", BODY)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    import hashlib
    import hmac

    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


@pytest.mark.parametrize("env, message", [
    ({"FRAUD_ALERT_WEBHOOK_URL": "https://hooks.example/x"}, "FRAUD_ALERT_SECRET of at least 32"),
    ({"FRAUD_ALERT_WEBHOOK_URL": "https://hooks.example/x", "FRAUD_ALERT_SECRET": "short"},
     "FRAUD_ALERT_SECRET of at least 32"),
    ({"FRAUD_ALERT_SLACK_URL": "ftp://hooks.example/T0/B0/token-in-url"}, "must be an http(s):// URL"),
    ({"FRAUD_ALERT_SLACK_URL": "https://hooks.example/T0/B0/token-in-url", "FRAUD_DECISION_LOG": "false"},
     "need FRAUD_DECISION_LOG=true"),
    ({"FRAUD_ALERT_MIN_SCORE": "101"}, "FRAUD_ALERT_MIN_SCORE"),
    ({"FRAUD_ALERT_LINK_TEMPLATE": "https://c/{decision}"}, "only use {transaction_id}"),
    ({"FRAUD_ALERT_MAX_AGE": "soon"}, "FRAUD_ALERT_MAX_AGE"),
])
def test_alert_settings_that_cannot_work_refuse_to_start_without_showing_the_urls(monkeypatch, env, message):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)
    assert "token-in-url" not in str(info.value) and "hooks.example" not in str(info.value)


def test_alert_settings_defaults_and_durations():
    s = Settings()
    assert s.alert_destinations() == {} and s.alert_min_score is None
    assert s.alert_budget_per_minute == 30 and s.alert_max_age.total_seconds() == 86_400
    assert Settings(alert_max_age="90m").alert_max_age.total_seconds() == 5_400
    assert Settings(alert_max_age="3600").alert_max_age.total_seconds() == 3_600
    s = Settings(alert_webhook_url="http://127.0.0.1:9/h", alert_secret=SECRET,
                 alert_slack_url="https://hooks.slack.com/services/T/B/X")
    assert s.alert_destinations() == {"slack": "https://hooks.slack.com/services/T/B/X",
                                      "webhook": "http://127.0.0.1:9/h"}
    assert "hooks.slack.com" not in repr(s) and "127.0.0.1:9" not in repr(s)


def _outbox(engine):
    with engine.connect() as conn:
        return conn.execute(select(alert_outbox).order_by(alert_outbox.c.id)).mappings().all()


def test_alerting_decisions_get_one_outbox_row_per_destination_in_their_own_transaction(store):
    writer = BatchWriter(store, on_batch=outbox_hook(("slack", "webhook"), None))
    batch = [rec("ok-1", 5), rec("review-1", 40), rec("block-1", 97), rec("block-2", 60),
             rec("shadow-block", 99, role="shadow")]
    writer.write(batch)
    writer.close()
    rows = _outbox(store)
    assert [(r["transaction_id"], r["destination"]) for r in rows] == [
        ("block-1", "slack"), ("block-1", "webhook"), ("block-2", "slack"), ("block-2", "webhook")]
    assert rows[0]["alert_id"] == rows[1]["alert_id"] != rows[2]["alert_id"]  # one id per alert
    assert all(r["status"] == "pending" and r["attempts"] == 0 for r in rows)
    p = rows[0]["payload"]
    assert p["transaction_id"] == "block-1" and p["decision"] == "block" and p["score"] == 97
    assert p["model_version"] == "fraud_detector:v1" and p["reasons"][0]["feature"] == "V14"
    assert p["decided_at"].endswith("Z")


def test_a_minimum_score_alerts_on_reviews_too(store):
    writer = BatchWriter(store, on_batch=outbox_hook(("webhook",), 40))
    writer.write([rec("a", 39), rec("b", 40), rec("c", 90)])
    writer.close()
    assert [r["transaction_id"] for r in _outbox(store)] == ["b", "c"]


def test_a_batch_that_fails_leaves_neither_decisions_nor_alerts(store):
    hook = outbox_hook(("webhook",), None)

    def failing(conn, batch):
        hook(conn, batch)  # the alert rows are written, then the transaction fails
        raise RuntimeError("the database went away")

    writer = BatchWriter(store, on_batch=failing)
    with pytest.raises(RuntimeError):
        writer.write([rec("block-1", 97)])
    writer.close()
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(decisions)).scalar() == 0
    assert _outbox(store) == []


def test_the_messages_hold_what_a_reader_needs():
    fields = {"transaction_id": "tx-<1>", "decision": "block", "score": 97, "probability": 0.97,
              "threshold": 60, "model_version": "fraud_detector:v9", "decided_at": "2026-12-01T00:00:00Z",
              "reasons": [{"feature": "V14", "value": -9.5, "contribution": 0.31},
                          {"feature": "V4", "value": 6.1, "contribution": 0.2}]}
    body = json.loads(fmt.webhook_body("id-1", fields, "https://console/decisions/{transaction_id}"))
    assert body == {"alert_id": "id-1", **{k: fields[k] for k in fields}, "link": "https://console/decisions/tx-<1>"}
    text = fmt.slack_text(fields, "https://console/decisions/{transaction_id}")
    for part in ("*block*", "score 97/100", "`tx-&lt;1&gt;`", "V14=-9.5 (+0.310)", "V4=6.1",
                 "fraud_detector:v9", "<https://console/decisions/tx-<1>|Open the decision>"):
        assert part in text, part
    assert "Open the decision" not in fmt.slack_text(fields, None)
    flood = [{**fields, "transaction_id": f"t{i}", "score": 60 + i} for i in range(37)]
    digest = fmt.digest_text(flood, None)
    assert digest.startswith(":rotating_light: 37 transactions blocked in the last minute; top 5: `t36` (96)")


def test_the_readmes_receiver_check_accepts_our_signature_and_refuses_the_rest():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### The webhook and its signature"):readme.index("### Delivery semantics")]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README's snippet)
    readme_verify = namespace["verify"]
    assert readme_verify(SECRET, sign(SECRET, BODY), BODY)
    assert not readme_verify(SECRET, sign(SECRET, BODY), BODY + b" ")
    assert not readme_verify(SECRET, sign(SECRET, BODY, timestamp=int(time.time()) - 400), BODY)
    assert not readme_verify(SECRET, "v1=00", BODY)
