"""Rate limits, with the `limits` library: requests per key, failed authentications per address.

- Per key: ``FRAUD_RATE_LIMIT`` (default 2000/second), or the key's own ``rate_limit`` in the key
  file. Fixed windows (one counter per key and window: the cheapest exact strategy, ~3 us a
  request in memory); a client can burst up to twice the rate across a window boundary.
- Failed authentications per client address: ``FRAUD_AUTH_FAILURE_LIMIT`` (default 20/minute).
  Past it the address is refused with 429 before its key is even looked at, until the window
  ends, so guessing keys costs a window per few guesses.
- Storage, ``FRAUD_RATE_LIMIT_STORAGE``: ``memory://`` (default) counts in each worker alone: a key
  limited to N/s may get up to N/s from EACH worker (2 per task as shipped), never fewer than N/s
  in all; ``redis://host:port[/db]`` counts in one Redis for every worker and every task: exact,
  at the price of a round trip per request. When Redis fails, requests are let through (a limiter
  must not take scoring down), counted in ``fraud_rate_limit_errors_total`` and logged at most
  once every 10 s; Redis is retried after a second.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse

from ..ops import metrics
from ..ops.logs import Throttled
from ..settings import Settings
from .keys import ApiKey

log = logging.getLogger("bentoml.fraudscore")
REDIS_RETRY_S = 1.0
# A reply is late when Redis is slow OR the event loop is: in a burst right after start (60 requests
# on 16 connections), the loop's turn outgrew 50 ms, requests failed open, and a 30/minute key got
# 47 answers in a CI run. 250 ms tells a Redis that is gone from a loop that is busy.
REDIS_TIMEOUT_S = 0.25


@dataclass(frozen=True)
class Limited:
    """Why a request is refused: the limit and when it may retry (seconds from now)."""

    limit: RateLimitItem
    retry_after_s: float

    def headers(self) -> list[tuple[bytes, bytes]]:
        retry = str(max(1, math.ceil(self.retry_after_s))).encode()
        window = self.limit.get_expiry()
        return [(b"retry-after", retry), (b"ratelimit-limit", str(self.limit.amount).encode()),
                (b"ratelimit-remaining", b"0"), (b"ratelimit-reset", retry),
                (b"ratelimit-policy", f"{self.limit.amount};w={window}".encode())]


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._default = parse(settings.rate_limit) if settings.rate_limit else None
        self._auth = parse(settings.auth_failure_limit) if settings.auth_failure_limit else None
        self._items: dict[str, RateLimitItem] = {}
        self._blocked: dict[str, float] = {}  # address -> monotonic time its refusal ends
        self._redis = not settings.rate_limit_storage.startswith("memory://")
        self._pool = None
        if self._redis:
            from limits.aio.storage import RedisStorage
            from limits.aio.strategies import FixedWindowRateLimiter
            from redis.asyncio import ConnectionPool

            # our own pool, so shutdown can close its connections (aclose)
            self._pool = ConnectionPool.from_url(settings.rate_limit_storage, socket_timeout=REDIS_TIMEOUT_S,
                                                 socket_connect_timeout=REDIS_TIMEOUT_S)
            storage = RedisStorage("async+" + settings.rate_limit_storage, wrap_exceptions=True,
                                   implementation="redispy", connection_pool=self._pool)
        else:
            from limits.storage import MemoryStorage
            from limits.strategies import FixedWindowRateLimiter

            storage = MemoryStorage()
        self._limiter = FixedWindowRateLimiter(storage)
        self._redis_down_until = 0.0
        self._errors = Throttled(log, logging.WARNING, 10.0)

    async def aclose(self) -> None:
        """Close the Redis connections (at shutdown)."""
        if self._pool is not None:
            await self._pool.disconnect()

    def _item(self, key: ApiKey) -> RateLimitItem | None:
        if key.rate_limit is None:
            return self._default
        if key.rate_limit == "off":
            return None
        item = self._items.get(key.rate_limit)
        if item is None:
            item = self._items[key.rate_limit] = parse(key.rate_limit)
        return item

    async def _hit(self, item: RateLimitItem, *identity: str) -> bool | None:
        """True: within the limit; False: over it; None: the storage failed (let it through)."""
        if not self._redis:
            return self._limiter.hit(item, *identity)
        if time.monotonic() < self._redis_down_until:
            return None
        try:
            return await self._limiter.hit(item, *identity)
        except Exception as exc:  # StorageError, or a timeout: fail open, briefly stop asking
            self._redis_down_until = time.monotonic() + REDIS_RETRY_S
            metrics.RATE_LIMIT_ERRORS.inc()
            self._errors.emit("rate-limit storage failed, requests are let through: %s", exc)
            return None

    async def _retry_after(self, item: RateLimitItem, *identity: str) -> float:
        stats = self._limiter.get_window_stats(item, *identity)
        if self._redis:
            try:
                stats = await stats
            except Exception:
                return float(item.get_expiry())
        return max(0.0, stats.reset_time - time.time())

    async def check_key(self, key: ApiKey) -> Limited | None:
        """Count one request of ``key``; a :class:`Limited` when it is over its rate."""
        item = self._item(key)
        if item is None or await self._hit(item, "key", key.name) is not False:
            return None
        metrics.RATE_LIMITED.labels(kind="key").inc()
        return Limited(item, await self._retry_after(item, "key", key.name))

    def address_blocked(self, address: str) -> Limited | None:
        """Refused for its failed authentications? (A dict lookup: on every keyed request.)"""
        until = self._blocked.get(address)
        if until is None:
            return None
        now = time.monotonic()
        if now >= until:
            del self._blocked[address]
            return None
        metrics.RATE_LIMITED.labels(kind="auth_failures").inc()
        return Limited(self._auth, until - now)

    async def auth_failed(self, address: str) -> Limited | None:
        """Count a failed authentication; a :class:`Limited` once the address is over its budget."""
        if self._auth is None or await self._hit(self._auth, "auth", address) is not False:
            return None
        retry = await self._retry_after(self._auth, "auth", address)
        if len(self._blocked) > 100_000:  # an attack from very many addresses: forget the oldest
            self._blocked.clear()
        self._blocked[address] = time.monotonic() + retry
        metrics.RATE_LIMITED.labels(kind="auth_failures").inc()
        return Limited(self._auth, retry)
