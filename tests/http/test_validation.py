"""Every malformed input: a clear 4xx naming the problem, never a 5xx, never an ERROR log line."""

import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudscore.features import FEATURES
from tests.conftest import tx_body

JSON = {"content-type": "application/json"}


def _raw(body: dict, field: str, literal: str) -> bytes:
    """The body with one field's value replaced by a raw JSON literal (NaN, 1e400, ...)."""
    return json.dumps({**body, field: "__X__"}).replace('"__X__"', literal).encode()


BAD_VALUES = [
    ("V1", "NaN"), ("V2", "Infinity"), ("V3", "-Infinity"), ("V4", "1e400"), ("V5", "3.5e38"),
    ("V6", '"NaN"'), ("V7", '"1.5"'), ("V8", "true"), ("V9", "null"), ("V10", '{"x": 1}'),
    ("V11", "[1.0]"), ("Amount", "-5"), ("transaction_id", "123"), ("transaction_id", '""'),
]


@pytest.fixture(autouse=True)
def no_error_logs(caplog):
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records)


@pytest.mark.parametrize(("field", "literal"), BAD_VALUES)
def test_bad_value_is_400_naming_the_field(client, auth, stand_in, field, literal):
    r = client.post("/fraud_score", content=_raw(tx_body(stand_in, 0), field, literal),
                    headers={**auth, **JSON})
    assert r.status_code == 400
    assert [e["loc"] for e in r.json()["detail"]] == [[field]]


@pytest.mark.parametrize(("field", "literal"), BAD_VALUES)
def test_bad_value_is_422_on_the_legacy_route(client, auth, stand_in, field, literal):
    r = client.post("/v1/fraud-score", content=_raw(tx_body(stand_in, 0), field, literal),
                    headers={**auth, **JSON})
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", field]]


def test_bad_value_inside_a_batch_names_its_index(client, auth, stand_in):
    rows = [tx_body(stand_in, i) for i in range(3)]
    rows[2]["V4"] = "oops"
    r = client.post("/fraud_score/batch", json={"transactions": rows}, headers=auth)
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["transactions", 2, "V4"]


@pytest.mark.parametrize(("body", "status"), [
    (b"", 400), (b"{", 400), (b"[]", 400), (b"null", 400), (b'"x"', 400), (b"\xff\xfe", 400),
    (b"{" * 100_000, 400), (b'{"Time": 1}', 400),
])
def test_malformed_json_is_400(client, auth, body, status):
    r = client.post("/fraud_score", content=body, headers={**auth, **JSON})
    assert r.status_code == status and r.json()


def test_missing_and_unknown_fields_are_named(client, auth, stand_in):
    body = tx_body(stand_in, 0, Class=1)
    del body["Amount"]
    r = client.post("/fraud_score", json=body, headers=auth)
    assert r.status_code == 400
    assert sorted(e["loc"][0] for e in r.json()["detail"]) == ["Amount", "Class"]


@pytest.mark.parametrize("path", ["/fraud_score", "/fraud_score/batch"])
@pytest.mark.parametrize("ctype", ["text/plain", "multipart/form-data; boundary=x",
                                   "application/x-www-form-urlencoded", "application/vnd.bentoml+pickle"])
def test_wrong_content_type_is_415(client, auth, stand_in, path, ctype):
    r = client.post(path, content=json.dumps(tx_body(stand_in, 0)), headers={**auth, "content-type": ctype})
    assert r.status_code == 415


def test_wrong_content_type_is_422_on_the_legacy_route(client, auth, stand_in):
    r = client.post("/v1/fraud-score", content=json.dumps(tx_body(stand_in, 0)),
                    headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 422


@pytest.mark.parametrize("path", ["/fraud_score", "/fraud_score/batch", "/v1/fraud-score"])
def test_oversized_body_is_413(client, auth, path):
    big = b"[" + b"1," * (1_100_000) + b"1]"
    assert client.post(path, content=big, headers={**auth, **JSON}).status_code == 413

    def chunks():  # no Content-Length: counted while reading
        for _ in range(30):
            yield b" " * 100_000

    assert client.post(path, content=chunks(), headers={**auth, **JSON}).status_code == 413


def test_charset_and_json_suffix_types_are_accepted(client, auth, stand_in):
    body = json.dumps(tx_body(stand_in, 0))
    for ctype in ("application/json; charset=utf-8", "application/problem+json"):
        r = client.post("/fraud_score", content=body, headers={**auth, "content-type": ctype})
        assert r.status_code == 200


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FEATURES), value=_json_values, drop=st.booleans())
def test_fuzzed_values_never_cause_a_server_error(client, auth, stand_in, field, value, drop):
    body = tx_body(stand_in, 0)
    if drop:
        del body[field]
    else:
        body[field] = value
    raw = json.dumps(body, allow_nan=True).encode()  # NaN/Infinity literals included
    for path in ("/fraud_score", "/v1/fraud-score"):
        r = client.post(path, content=raw, headers={**auth, **JSON})
        assert r.status_code in (200, 400, 422), (path, r.status_code, r.text)
        if r.status_code != 200:
            locs = [e["loc"] for e in r.json()["detail"]]
            assert locs and all(field in loc for loc in locs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=200))
def test_fuzzed_bytes_never_cause_a_server_error(client, auth, raw):
    for path, status in (("/fraud_score", 400), ("/fraud_score/batch", 400), ("/v1/fraud-score", 422)):
        r = client.post(path, content=raw, headers={**auth, **JSON})
        assert r.status_code == status, (path, raw, r.status_code, r.text)


def test_batch_body_allows_no_other_field(client, auth, stand_in):
    r = client.post("/fraud_score/batch", json={"transactions": [tx_body(stand_in, 0)], "x": 1}, headers=auth)
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["x"]
    r = client.post("/fraud_score/batch", json=[tx_body(stand_in, 0)], headers=auth)
    assert r.status_code == 400
