"""API-key authentication as a pure ASGI middleware.

Keys arrive as ``X-API-Key: <key>`` (the FastAPI service's header) or ``Authorization: Bearer
<key>`` (what ``bentoml.SyncHTTPClient(token=...)`` sends). The check runs on headers only, before
any body is read. Keys are compared in constant time, against every configured key, and never
logged. Probes and ``/metrics`` pass without a key; the docs UI too when ``FRAUD_DOCS_PUBLIC`` is
true (default false: the schema of a payments API is not advertised to anonymous callers).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable

from ..ops import metrics
from ..settings import get_settings
from .asgi import send_json

PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
DOCS_PATHS = frozenset({"/", "/docs.json", "/schema.json"})
DOCS_PREFIXES = ("/static_content/", "/assets/")
LEGACY_PREFIX = "/v1/"


class ApiKeyCheck:
    """``check(presented) -> bool`` over a set of valid keys, in constant time."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        # Digests of equal length: comparing them reveals neither a key's content nor its length.
        self._digests = tuple(hashlib.sha256(k).digest() for k in keys)
        if not self._digests:
            raise ValueError("ApiKeyCheck needs at least one key")

    def __call__(self, presented: bytes) -> bool:
        digest = hashlib.sha256(presented).digest()
        ok = False
        for key in self._digests:  # no early exit: timing does not reveal which key matched
            ok |= hmac.compare_digest(digest, key)
        return ok


def _presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key the caller sent: X-API-Key if present, else a Bearer token (whatever the order)."""
    bearer = None
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and bearer is None and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip()
    return bearer


class ApiKeyMiddleware:
    def __init__(self, app, check: Callable[[bytes], bool] | None = None,
                 docs_public: bool | None = None) -> None:
        settings = get_settings()
        self.app = app
        # Resolving the keys here makes a worker with no key fail at start, not at first request.
        self.check = check or ApiKeyCheck(settings.resolved_api_keys())
        self.docs_public = settings.docs_public if docs_public is None else docs_public

    def _is_public(self, path: str) -> bool:
        if path in PUBLIC_PATHS:
            return True
        return self.docs_public and (path in DOCS_PATHS or path.startswith(DOCS_PREFIXES))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan" or (scope["type"] == "http" and self._is_public(scope["path"])):
            await self.app(scope, receive, send)
            return
        key = _presented_key(scope["headers"])
        if key is not None and self.check(key):
            await self.app(scope, receive, send)
            return
        reason = "missing" if key is None else "invalid"
        metrics.REJECTED.labels(reason=f"auth_{reason}").inc()
        if scope["type"] != "http":  # a websocket (none is served today) is closed, not answered
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"].startswith(LEGACY_PREFIX):
            body = {"detail": "Not authenticated" if key is None else "Invalid API key"}
        else:
            body = {"error": f"{reason} API key",
                    "detail": "send X-API-Key: <key> or Authorization: Bearer <key>"}
        await send_json(send, 403, body)
