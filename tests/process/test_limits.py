"""Keys, scopes and rate limits in a real `bentoml serve` (2 workers): named keys from a TOML file,
reloaded while it runs; per-key 429s with their headers; failed authentications throttled per
address, with X-Forwarded-For believed only from trusted proxies; exact limits over Redis."""

from __future__ import annotations

import asyncio
import os
import secrets
import time

import httpx
import pytest

from tests.conftest import tx_body

pytestmark = pytest.mark.process
SCORER, READER = "scorer-key-" + secrets.token_hex(8), "reader-key-" + secrets.token_hex(8)


def _key_file(path, **extra_keys: str) -> str:
    text = (f'[keys.scorer]\nkey = "{SCORER}"\nrate_limit = "5/minute"\n\n'
            f'[keys.reader]\nkey = "{READER}"\nscopes = ["read"]\n')
    for name, key in extra_keys.items():
        text += f'\n[keys.{name}]\nkey = "{key}"\n'
    path.write_text(text)
    return str(path)


def _statuses(url: str, n: int, headers: dict, body: dict, connections: int = 1) -> list[int]:
    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
            rs = await asyncio.gather(*(c.post("/fraud_score", json=body, headers=headers)
                                        for _ in range(n)))
        return [r.status_code for r in rs]

    return asyncio.run(run())


def test_named_keys_scopes_rate_limits_and_reload(serve, trained, stand_in, tmp_path):
    keys = tmp_path / "keys.toml"
    srv = serve(FRAUD_MODEL_TAG=trained.tag, FRAUD_API_KEYS_FILE=_key_file(keys), workers=2,
                FRAUD_AUTH_FAILURE_LIMIT="off")
    body = tx_body(stand_in, 0)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post("/fraud_score", json=body, headers={"X-API-Key": READER})
        assert r.status_code == 403 and "may not score" in r.json()["error"]  # read scope only
        assert c.get("/model_info", headers={"X-API-Key": READER}).status_code == 200
        statuses = [c.post("/fraud_score", json=body, headers={"X-API-Key": SCORER}).status_code
                    for _ in range(8)]  # one connection: one worker, whose count is exact
        assert statuses == [200] * 5 + [429] * 3
        limited = c.post("/fraud_score", json=body, headers={"X-API-Key": SCORER})
        assert limited.headers["ratelimit-limit"] == "5" and limited.headers["ratelimit-remaining"] == "0"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert "rate limit of key 'scorer'" in limited.json()["error"]
        assert SCORER not in srv.logs()  # the key's name is logged, never the key

        # rotate without a restart: a new key works and the revoked reader is refused within seconds
        new = "rotated-key-" + secrets.token_hex(8)
        keys.write_text(keys.read_text().replace(f'key = "{READER}"', f'key = "{new}"'))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if c.get("/model_info", headers={"X-API-Key": new}).status_code == 200:
                break
            time.sleep(0.2)
        for _ in range(4):  # both workers
            assert c.get("/model_info", headers={"X-API-Key": new}).status_code == 200
            assert c.get("/model_info", headers={"X-API-Key": READER}).status_code == 403


def test_failed_authentications_are_throttled_per_client_address(serve, trained, stand_in, tmp_path):
    srv = serve(FRAUD_MODEL_TAG=trained.tag, FRAUD_AUTH_FAILURE_LIMIT="5/minute",
                FRAUD_API_KEYS_FILE=_key_file(tmp_path / "keys.toml"))
    body = tx_body(stand_in, 0)
    with httpx.Client(base_url=srv.url, timeout=30) as c:  # one connection: one worker's count
        spoofed = [c.post("/fraud_score", json=body, headers={
            "X-API-Key": f"guess-{i:012d}", "X-Forwarded-For": f"203.0.113.{i}"}).status_code
            for i in range(7)]
        assert spoofed == [403] * 5 + [429] * 2  # X-Forwarded-For from an untrusted peer is ignored
        r = c.post("/fraud_score", json=body, headers={"X-API-Key": SCORER})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1  # even a valid key now


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(serve, trained, stand_in, tmp_path):
    srv = serve(FRAUD_MODEL_TAG=trained.tag, FRAUD_AUTH_FAILURE_LIMIT="3/minute",
                FRAUD_TRUSTED_PROXIES="127.0.0.1", FRAUD_API_KEYS_FILE=_key_file(tmp_path / "keys.toml"))
    body = tx_body(stand_in, 0)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for i in range(10):  # ten clients behind the proxy, one failure each: none throttled
            r = c.post("/fraud_score", json=body, headers={"X-API-Key": "guess-000000000000",
                                                          "X-Forwarded-For": f"198.51.100.{i}"})
            assert r.status_code == 403
        one = [c.post("/fraud_score", json=body, headers={"X-API-Key": "guess-000000000000",
                                                          "X-Forwarded-For": "198.51.100.99"}).status_code
               for _ in range(5)]
        assert one == [403] * 3 + [429] * 2


def test_redis_makes_a_key_limit_exact_across_workers(serve, trained, stand_in, tmp_path, redis_url):
    key = "shared-key-" + secrets.token_hex(8)
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[keys.shared-{secrets.token_hex(4)}]\nkey = "{key}"\nrate_limit = "30/minute"\n')
    srv = serve(FRAUD_MODEL_TAG=trained.tag, FRAUD_API_KEYS_FILE=str(keys), workers=2,
                FRAUD_RATE_LIMIT_STORAGE=redis_url)
    statuses = _statuses(srv.url, 60, {"X-API-Key": key}, tx_body(stand_in, 0), connections=16)
    assert statuses.count(200) == 30 and statuses.count(429) == 30
    assert os.environ.get("FRAUD_RATE_LIMIT_STORAGE") is None
