"""Reasons, transaction ids, the decision log's read API and labels, in-process (SQLite store)."""

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import tx_body
from tests.http.conftest import ANALYST_KEY, READER_KEY

ANALYST, READER = {"X-API-Key": ANALYST_KEY}, {"X-API-Key": READER_KEY}


def _fraud_rows(stand_in, n):
    return [i for i in range(len(stand_in.y)) if stand_in.y[i] == 1][:n]


def _recorded(client, tx_id: str, timeout: float = 10.0) -> dict:
    """The store's answer for ``tx_id`` once the background writer has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/decisions/{tx_id}", headers=ANALYST)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 404, r.text
        time.sleep(0.05)
    raise AssertionError(f"{tx_id} was not recorded within {timeout} s")


def _cursor(created_at: str, row_id: int) -> str:
    """A cursor made the way the API makes its own (base64url of ``[created_at, id]``)."""
    return base64.urlsafe_b64encode(json.dumps([created_at, row_id]).encode()).decode().rstrip("=")


def test_flagged_verdicts_carry_reasons_and_approvals_only_when_asked(client, auth, stand_in, trained):
    frauds = [tx_body(stand_in, i) for i in _fraud_rows(stand_in, 10)]
    verdicts = client.post("/fraud_score/batch", json={"transactions": frauds}, headers=auth).json()
    flagged = [v for v in verdicts if v["decision"] != "approve"]
    assert flagged and all(1 <= len(v["reasons"]) <= 3 for v in flagged)
    for v in flagged:
        r = v["reasons"]
        sizes = [abs(x["contribution"]) for x in r]
        assert sizes == sorted(sizes, reverse=True)
        assert all(x["description"].startswith(f"{x['feature']} = ") for x in r)
    legit = tx_body(stand_in, 0)
    plain = client.post("/fraud_score", json=legit, headers=auth).json()
    assert plain["decision"] == "approve" and "reasons" not in plain
    explained = client.post("/fraud_score?explain=true", json=legit, headers=auth).json()
    assert explained["decision"] == "approve" and explained["reasons"]
    assert client.post("/fraud_score?explain=maybe", json=legit, headers=auth).status_code == 400


def test_the_legacy_route_keeps_its_shape_unless_asked(client, auth, stand_in):
    body = tx_body(stand_in, _fraud_rows(stand_in, 1)[0])
    assert set(client.post("/v1/fraud-score", json=body, headers=auth).json()) == {
        "fraud-score", "is-fraud", "model-version"}
    asked = client.post("/v1/fraud-score?explain=true", json=body, headers=auth).json()
    assert {"transaction-id", "reasons"} <= set(asked)


def test_every_verdict_is_recorded_and_can_be_read_back(client, auth, stand_in, trained):
    i = _fraud_rows(stand_in, 1)[0]
    sent = tx_body(stand_in, i, transaction_id=f"rec-{time.time_ns()}")
    verdict = client.post("/fraud_score", json=sent, headers=auth).json()
    found = _recorded(client, sent["transaction_id"])
    d = found["decision"]
    assert (d["score"], d["decision"], d["model_version"]) == (
        verdict["fraud_score"], verdict["decision"], trained.tag)
    assert d["route"] == "/fraud_score" and d["key_name"].startswith("env-") and d["role"] == "primary"
    assert d["features"] == {k: v for k, v in sent.items() if k != "transaction_id"}
    assert d["reasons"] == verdict.get("reasons") and d["latency_ms"] > 0 and found["times_scored"] == 1
    generated = client.post("/fraud_score", json=tx_body(stand_in, 3), headers=auth).json()["transaction_id"]
    assert _recorded(client, generated)["decision"]["transaction_id"] == generated


def test_generated_ids_are_version_7_uuids_in_the_order_they_were_made(client, auth, stand_in):
    """Time-ordered ids keep the store's index growing at its end, and tell when they were made."""
    before_ms = time.time_ns() // 1_000_000
    ids = [client.post("/fraud_score", json=tx_body(stand_in, i), headers=auth).json()["transaction_id"]
           for i in range(3)]
    batch = client.post("/fraud_score/batch", headers=auth,
                        json={"transactions": [tx_body(stand_in, i) for i in range(3)]}).json()
    ids += [v["transaction_id"] for v in batch]
    after_ms = time.time_ns() // 1_000_000
    parsed = [uuid.UUID(i) for i in ids]
    assert [u.version for u in parsed] == [7] * 6 and len(set(ids)) == 6
    made_ms = [u.int >> 80 for u in parsed]  # the first 48 bits: Unix time in milliseconds
    assert made_ms == sorted(made_ms) and before_ms <= made_ms[0] and made_ms[-1] <= after_ms


def test_scopes_keep_scoring_reading_and_labelling_apart(client, auth, stand_in):
    assert client.get("/decisions", headers=auth).status_code == 403  # a scoring key reads nothing
    assert client.post("/labels", json={"labels": []}, headers=READER).status_code == 403
    r = client.post("/fraud_score", json=tx_body(stand_in, 0), headers=ANALYST)
    assert r.status_code == 403 and "may not score" in r.json()["error"]
    assert client.get("/decisions?limit=1", headers=READER).status_code == 200


def test_the_review_queue_pages_oldest_first_with_a_cursor(client, auth, stand_in):
    since = datetime.now(UTC).isoformat()
    ids = [f"page-{time.time_ns()}-{k}" for k in range(5)]
    for k, tx_id in enumerate(ids):
        client.post("/fraud_score", json=tx_body(stand_in, 10 + k, transaction_id=tx_id), headers=auth)
    _recorded(client, ids[-1])
    seen, cursor = [], None
    for _ in range(10):
        params = {"since": since, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/decisions", params=params, headers=READER).json()
        seen += [d["transaction_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s for s in seen if s in ids] == ids  # every one, once, in order
    for bad in ({"cursor": "nonsense"}, {"limit": "0"}, {"limit": "5.5"}, {"decision": "maybe"},
                {"since": "yesterday"},
                {"since": "2026-01-01T00:00:00"}, {"colour": "red"},
                # a bare number is not a time (pydantic alone reads it as Unix seconds or ms);
                # a time with no UTC equivalent, a cursor beyond a 64-bit row id: 400, not 500/503
                {"until": "1700000000"}, {"since": "0001-01-01T00:00:00+01:00"},
                {"cursor": _cursor("2026-01-01T00:00:00+00:00", 2**64)},
                {"cursor": _cursor("0001-01-01T00:00:00+01:00", 1)}):
        r = client.get("/decisions", params=bad, headers=READER)
        assert r.status_code == 400, (bad, r.text)
        assert any(e["loc"][0] == "query" for e in r.json()["detail"]), r.json()
    assert client.get("/decisions/no-such-transaction", headers=READER).status_code == 404


def test_labels_are_idempotent_superseded_and_unknown_ids_reported(client, auth, stand_in):
    tx_id = f"label-{time.time_ns()}"
    client.post("/fraud_score", json=tx_body(stand_in, 0, transaction_id=tx_id), headers=auth)
    _recorded(client, tx_id)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    first = {"transaction_id": tx_id, "label": "legit", "source": "review", "observed_at": t0.isoformat()}
    t1 = (t0 + timedelta(hours=1)).isoformat()
    later = {**first, "label": "fraud", "source": "chargeback", "observed_at": t1}
    unknown = {**first, "transaction_id": "never-scored"}
    r = client.post("/labels", json={"labels": [first, later, unknown, first]}, headers=ANALYST)
    assert [x["status"] for x in r.json()["results"]] == ["recorded", "recorded", "unknown_transaction",
                                                           "duplicate"]
    again = client.post("/labels", json={"labels": [first]}, headers=ANALYST).json()["results"]
    assert again == [{"transaction_id": tx_id, "status": "duplicate"}]
    found = _recorded(client, tx_id)
    assert found["label"]["label"] == "fraud" and len(found["label_history"]) == 2


@pytest.mark.parametrize(("labels", "field"), [
    ([{"transaction_id": "x", "label": "maybe", "source": "review", "observed_at": "2026-01-01T00:00:00Z"}],
     "label"),
    ([{"transaction_id": "x", "label": "fraud", "source": "review", "observed_at": "2026-01-01T00:00:00"}],
     "observed_at"),
    ([{"transaction_id": "x", "label": "fraud", "source": "review",
       "observed_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()}], "observed_at"),
    ([{"transaction_id": "x", "label": "fraud", "source": "re view", "observed_at": "2026-01-01T00:00:00Z"}],
     "source"),
    ([{"transaction_id": "x", "label": "fraud", "source": "review", "observed_at": "1700000000"}],
     "observed_at"),
    ([{"transaction_id": "x", "label": "fraud", "source": "review", "observed_at": 1700000000}],
     "observed_at"),
    ([], "labels"),
])
def test_bad_labels_are_400_naming_the_field_and_write_nothing(client, labels, field):
    r = client.post("/labels", json={"labels": labels}, headers=ANALYST)
    assert r.status_code == 400 and field in {str(p) for e in r.json()["detail"] for p in e["loc"]}, r.json()
