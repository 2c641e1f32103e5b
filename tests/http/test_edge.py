"""The edge in-process: duplicate keys, the docs page and OpenAPI document, readiness, metrics
labels, out-of-range counting, and a 504 for a call still queued when the timeout comes."""

import asyncio
import json
import re

import httpx
import pytest

from fraudscore.edge.routes import ROUTES
from tests.conftest import tx_body


def _raw(body: dict, replace: tuple[str, str] | None = None) -> bytes:
    text = json.dumps(body)
    if replace:
        text = text.replace(*replace, 1)
    return text.encode()


def test_a_repeated_key_is_refused_on_every_route(client, auth, stand_in):
    body = tx_body(stand_in, 0)
    repeated = _raw(body, ('"V14": ', '"V14": 0.5, "V14": '))
    headers = {**auth, "content-type": "application/json"}
    r = client.post("/fraud_score", content=repeated, headers=headers)
    assert r.status_code == 400 and r.json()["detail"][0]["type"] == "duplicate_key"
    assert "V14" in r.json()["detail"][0]["msg"]
    batch = b'{"transactions": [' + _raw(body) + b", " + repeated + b"]}"
    assert client.post("/fraud_score/batch", content=batch, headers=headers).status_code == 400
    legacy = client.post("/v1/fraud-score", content=repeated, headers=headers)
    assert legacy.status_code == 422 and legacy.json()["detail"][0]["type"] == "duplicate_key"
    # a colon inside an id is no repeat: it takes the slower check, and passes
    ok = client.post("/fraud_score", json={**body, "transaction_id": "order:1:2"}, headers=auth)
    assert ok.status_code == 200 and ok.json()["transaction_id"] == "order:1:2"


def test_a_null_transaction_id_is_accepted_as_documented(client, auth, stand_in):
    r = client.post("/fraud_score", json={**tx_body(stand_in, 0), "transaction_id": None}, headers=auth)
    assert r.status_code == 200 and len(r.json()["transaction_id"]) == 36  # one is generated
    schema = client.get("/docs.json", headers=auth).json()["components"]["schemas"]["TransactionIn"]
    assert {"type": "null"} in schema["properties"]["transaction_id"]["anyOf"]


def test_the_docs_page_loads_no_third_party_script(client, auth):
    page = client.get("/", headers=auth)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("./") for s in sources), sources
    assert "googletagmanager" not in page.text and "<script>" not in page.text  # no inline script
    script = client.get("/docs.js", headers=auth)
    assert script.status_code == 200 and "validatorUrl: null" in script.text
    for asset in [s for s in sources if s.startswith("./static_content/")]:
        assert client.get(asset[1:], headers=auth).status_code == 200, asset


def test_the_openapi_document_describes_every_route_and_error(client, auth):
    doc = client.get("/docs.json", headers=auth).json()
    documented = set(doc["paths"])
    assert documented == {r.path for r in ROUTES if not r.prefix}
    for route in ROUTES:
        if route.prefix:
            continue
        for method in route.methods:
            if method == "HEAD":
                continue
            op = doc["paths"][route.path][method.lower()]
            statuses = set(op["responses"])
            if not route.public and route.access != "docs":
                assert {"403", "429"} <= statuses and op["security"]
            if route.request_body:
                assert op["requestBody"]["required"] is True
            if route.hot:
                expected = {"408", "413", "429", "431", "503", "504"} | ({"422"} if route.legacy else {"415"})
                assert expected <= statuses, route.path
                assert "Retry-After" in op["responses"]["503"]["headers"]
    errors = doc["components"]["schemas"]["ErrorOut"]["properties"]
    assert "type" not in errors["detail"] or errors["detail"]["type"] != "string"  # a list or a message
    legacy = doc["paths"]["/v1/fraud-score"]["post"]["responses"]
    assert "422" in legacy and legacy["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "LegacyFraudScoreOut")


def test_readiness_says_ready_with_the_model(client, trained):
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready", "model_version": trained.tag}


def test_unknown_paths_are_counted_as_other(client, auth):
    client.get("/nope-1", headers=auth)
    client.get("/nope-2")
    text = client.get("/metrics").text
    routes = set(re.findall(r'fraud_http_requests_total\{[^}]*route="([^"]*)"', text))
    assert "other" in routes and not any("nope" in r for r in routes)


def test_values_outside_the_training_range_are_counted_per_feature(client, auth, stand_in, trained):
    series = f'fraud_feature_out_of_range_total{{feature="V14",model_version="{trained.tag}"}}'

    def count() -> float:
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in client.get("/metrics").text.splitlines()
                   if ln.startswith(series))

    before = count()
    outlier = {**tx_body(stand_in, 0), "V14": -80.0}
    assert client.post("/fraud_score", json=outlier, headers=auth).status_code == 200
    assert client.post("/fraud_score", json=tx_body(stand_in, 0), headers=auth).status_code == 200
    assert count() - before == 1


def test_a_call_still_queued_when_the_timeout_comes_gets_one_504(trained, stand_in):
    from fraudscore.edge.app import Edge
    from fraudscore.ops.bentoml_fixes import TimeoutMiddleware
    from fraudscore.schemas import batch_request_model
    from fraudscore.scoring.pipeline import ScoringPipeline
    from fraudscore.settings import Settings

    settings = Settings(_env_file=None, model_tag=trained.tag, api_keys="k" * 20)
    pipeline = ScoringPipeline.load(settings)
    pipeline.scorer.predict = lambda X: (_ for _ in ()).throw(AssertionError("never runs"))
    stuck = asyncio.Event()  # the model is busy: nothing leaves the queue

    async def busy(X):
        await stuck.wait()

    pipeline._batcher = busy
    app = TimeoutMiddleware(Edge(None, lambda: pipeline, batch_request_model(10), settings), timeout=0.2)

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/fraud_score", json=tx_body(stand_in, 0), headers={"X-API-Key": "k" * 20})

    from fraudscore.ops import metrics

    def counted() -> float:
        return metrics.HTTP_REQUESTS.labels(route="/fraud_score", method="POST", status="504")._value.get()

    before = counted()
    r = asyncio.run(run())
    assert r.status_code == 504 and "0.2 seconds" in r.json()["error"]
    assert counted() - before == 1  # counted as what the client got, not as a client that left


@pytest.mark.parametrize("path", ["/fraud_score/", "/model_info/", "/docs.json/"])
def test_a_trailing_slash_is_not_a_route_and_never_redirects(client, auth, path):
    r = client.get(path, headers={**auth, "host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers
