"""Rate limits with the `limits` library, in memory and in a real Redis."""

import asyncio
import logging
import secrets

import pytest

from fraudscore.edge.keys import ApiKey
from fraudscore.edge.ratelimit import RateLimits
from fraudscore.settings import Settings


def _limits(**env) -> RateLimits:
    return RateLimits(Settings(_env_file=None, api_keys="k" * 20, **env))


def _key(name: str = "", limit: str | None = None) -> ApiKey:
    return ApiKey(name or f"key-{secrets.token_hex(4)}", frozenset({"score"}), limit)


async def _hits(limits: RateLimits, key: ApiKey, n: int) -> list[bool]:
    return [await limits.check_key(key) is None for _ in range(n)]


def test_a_key_gets_its_rate_then_429_with_the_headers():
    limits = _limits(rate_limit="5/minute")
    key = _key()
    assert asyncio.run(_hits(limits, key, 8)) == [True] * 5 + [False] * 3
    refused = asyncio.run(limits.check_key(key))
    headers = dict(refused.headers())
    assert headers[b"ratelimit-limit"] == b"5" and headers[b"ratelimit-remaining"] == b"0"
    assert 1 <= int(headers[b"retry-after"]) <= 60 and headers[b"ratelimit-policy"] == b"5;w=60"
    assert asyncio.run(_hits(limits, _key(), 5)) == [True] * 5  # another key: its own budget


def test_a_keys_own_limit_wins_and_off_means_none():
    limits = _limits(rate_limit="2/minute")
    assert asyncio.run(_hits(limits, _key(limit="4/minute"), 5)) == [True] * 4 + [False]
    assert all(asyncio.run(_hits(limits, _key(limit="off"), 50)))
    assert all(asyncio.run(_hits(_limits(rate_limit="off"), _key(), 50)))


def test_failed_authentications_block_the_address_until_the_window_ends():
    limits = _limits(auth_failure_limit="3/minute")

    async def run():
        results = [await limits.auth_failed("10.0.0.1") for _ in range(4)]
        return results, limits.address_blocked("10.0.0.1"), limits.address_blocked("10.0.0.2")

    results, blocked, other = asyncio.run(run())
    assert results[:3] == [None] * 3 and results[3] is not None
    assert blocked is not None and 1 <= int(dict(blocked.headers())[b"retry-after"]) <= 60
    assert other is None


def test_redis_counts_exactly_across_workers(redis_url):
    # two RateLimits over one Redis: as two workers (or two ECS tasks) share one budget
    a, b = (_limits(rate_limit="10/minute", rate_limit_storage=redis_url) for _ in range(2))
    key = _key()

    async def run():
        try:
            return [await (a if i % 2 else b).check_key(key) is None for i in range(16)]
        finally:
            await a.aclose()
            await b.aclose()

    assert sum(asyncio.run(run())) == 10


def test_redis_down_lets_requests_through_counted_and_logged_once(caplog):
    limits = _limits(rate_limit="1/minute", rate_limit_storage="redis://127.0.0.1:1/0")
    async def run():
        try:
            return await _hits(limits, _key(), 20)
        finally:
            await limits.aclose()

    with caplog.at_level(logging.WARNING, logger="bentoml.fraudscore"):
        assert all(asyncio.run(run()))
    warnings = [r for r in caplog.records if "rate-limit storage failed" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("value", ["0/second", "-1/minute"])
def test_nonsense_rates_are_refused(value):
    with pytest.raises(ValueError):
        _limits(rate_limit=value)
