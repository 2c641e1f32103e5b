"""The edge: every HTTP request of the service, from the wire to its answer, in one ASGI step.

Below it runs the hardened HTTP protocol (protocol.py: header size, count and time limits, body
time limit, lingering close) and BentoML's timeout; inside it, in this order:

receive -> match the route table (routes.py) -> authenticate (keys.py; failed attempts throttled
per address, ratelimit.py) -> route? method? scope? -> rate-limit the key -> read the body (JSON,
size) -> admit (shed on queueing delay, admission.py) -> validate, score, decide (handlers.py ->
scoring/) -> respond; every answer counted by route template, status and latency (ops/metrics.py)
and stamped with its X-Request-ID. Errors are raised as :class:`HttpError` and rendered by one
table (errors.py). Paths that are not in the route table are answered 404 here, after
authentication: nothing outside the table reaches BentoML's router.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from ..ops import metrics
from ..ops.logs import Throttled
from ..settings import Settings, get_settings
from .admission import controller
from .asgi import header, send_json
from .asgi import request_id as make_request_id
from .errors import HttpError, render
from .handlers import Handlers
from .keys import ApiKey, KeySource
from .protocol import ADMITTED, ANSWERED, LET_IN
from .ratelimit import RateLimits
from .request import Request
from .routes import Route, match

log = logging.getLogger("bentoml.fraudscore")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LINE = "%s %s -> %d in %.1f ms (key %s, request %s) %s"
_KEY_NAME, _ERROR = "fraudscore.key", "fraudscore.error"  # scope keys, for the log line
_SCOPE_WORDS = {"score": "score transactions", "read": "read decisions", "label": "post labels"}


def _presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key the caller sent: X-API-Key if present, else a Bearer token (whatever the order)."""
    bearer = None
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization" and bearer is None and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip()
    return bearer


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return True  # BentoML and FastAPI both read a body without a type as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class Edge:
    def __init__(self, app, pipeline: Callable[[], Any], batch_model: type[BaseModel],
                 settings: Settings | None = None, store: Callable[[], Any] = lambda: None) -> None:
        settings = settings or get_settings()
        self.app = app  # BentoML's router: only the table's routes without a handler of ours
        self.keys = KeySource(settings)  # a worker with no key fails at start, not at first request
        self.limits = RateLimits(settings)
        self.admission = controller(settings.overload_target_ms, settings.overload_interval_ms)
        self.handlers = Handlers(pipeline, batch_model, settings, store)
        self.max_body = settings.max_body_bytes
        self.docs_public = settings.docs_public
        self._instruments: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._floods: dict[int, Throttled] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # none is served
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, self._on_lifespan(send))  # BentoML loads the service
            return
        started = time.perf_counter()
        route, params = match(scope["path"])
        label = route.path if route is not None else "other"
        request_id = make_request_id(scope)
        status = 0

        async def send_stamped(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            await self._handle(scope, receive, send_stamped, route, params, request_id, started)
        except asyncio.CancelledError:  # the timeout (ops/bentoml_fixes.py) answers 504 for us
            status = status or 504
            raise
        finally:
            scope.pop(LET_IN, None)  # answered before its body came (403, 413...): never counted
            admitted = scope.pop(ADMITTED, None)
            if admitted is not None:
                admitted.done()
            status = status or scope.get(ANSWERED, 499)  # 499: the client left before the answer
            elapsed = time.perf_counter() - started
            self._count(label, scope["method"], status, elapsed)
            if not 200 <= status < 300:
                self._log_answer(scope, label, status, elapsed, request_id)

    def _on_lifespan(self, send):
        async def send_after_closing(message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await self.limits.aclose()
            await send(message)

        return send_after_closing

    def _count(self, label: str, method: str, status: int, elapsed: float) -> None:
        method = method if method in _METHODS else "other"
        instruments = self._instruments.get((label, method, status))
        if instruments is None:  # bounded: routes x methods x statuses
            instruments = self._instruments[(label, method, status)] = (
                metrics.HTTP_REQUESTS.labels(route=label, method=method, status=str(status)),
                metrics.HTTP_DURATION.labels(route=label))
        instruments[0].inc()
        instruments[1].observe(elapsed)

    def _log_answer(self, scope, label: str, status: int, elapsed: float, request_id: bytes) -> None:
        """One INFO line per answer that is not a success; refusals that come in floods (429,
        503) at most one line per interval each, with the count of the others. Its fields
        (``extra``: top-level fields of a JSON line, ops/logs.py) name the key, never its value."""
        where = label if label != "other" else repr(scope["path"][:80])  # repr: no line breaks
        key_name, rid, ms = scope.get(_KEY_NAME), request_id.decode(), round(elapsed * 1000, 2)
        args = (scope["method"][:16], where, status, ms, key_name or "-", rid, scope.get(_ERROR, ""))
        fields = {"request_id": rid, "key": key_name, "route": label, "method": scope["method"][:16],
                  "status": status, "latency_ms": ms}
        if status in (429, 503):
            throttled = self._floods.get(status)
            if throttled is None:
                throttled = self._floods[status] = Throttled(log, logging.INFO, 10.0)
            throttled.emit(_LINE, *args, extra=fields)
        else:  # a server error has its own ERROR line with the traceback, logged where it happened
            log.info(_LINE, *args, extra=fields)

    async def _handle(self, scope, receive, send, route: Route | None, params: dict[str, str],
                      request_id: bytes, started: float) -> None:
        legacy = route is not None and route.legacy
        try:
            key = None
            if route is None or not (route.public or (route.access == "docs" and self.docs_public)):
                key = await self._authenticate(scope, legacy)
            if route is None:
                raise HttpError(404, "not_found", "not found")
            if scope["method"] not in route.methods:
                raise HttpError(405, "method_not_allowed", "Method Not Allowed",
                                headers=[(b"allow", ", ".join(route.methods).encode())])
            if key is not None:
                await self._authorize(key, route)
            if route.handler is None:
                await self.app(scope, receive, send)
                return
            body = b""
            if scope["method"] == "POST":
                body = await self._read_body(scope, receive)
                if body is None:
                    return  # the client went away: nobody to answer
            if route.hot:
                self._admit(scope)
            req = Request(scope, route, params, key, body, request_id, started)
            status, answer, headers = await getattr(self.handlers, route.handler)(req)
        except HttpError as err:
            if err.reason:
                metrics.REJECTED.labels(reason=err.reason).inc()
            scope[_ERROR] = err.message
            status, answer = render(err, legacy)
            headers = err.headers
        except Exception:  # the model or our code failed: a server error, logged with its cause
            log.exception("%s %s failed", scope["method"], scope["path"], extra={
                "request_id": request_id.decode(), "key": scope.get(_KEY_NAME),
                "route": route.path if route is not None else "other"})
            status, answer = render(HttpError(500, "", "internal error (see the server log)"), legacy)
            headers = []
        if isinstance(answer, bytes | str):
            await self._send_raw(send, status, answer, headers)
        else:
            await send_json(send, status, answer, headers)

    async def _authenticate(self, scope, legacy: bool) -> ApiKey:
        address = scope["client"][0] if scope.get("client") else "unknown"
        blocked = self.limits.address_blocked(address)
        if blocked is not None:
            raise HttpError(429, "", "too many failed authentications from this address",
                            headers=blocked.headers())
        presented = _presented_key(scope["headers"])
        key = self.keys.current().find(presented) if presented is not None else None
        if key is not None:
            scope[_KEY_NAME] = key.name
            return key
        reason = "missing" if presented is None else "invalid"
        metrics.REJECTED.labels(reason=f"auth_{reason}").inc()
        limited = await self.limits.auth_failed(address)
        if limited is not None:
            raise HttpError(429, "", "too many failed authentications from this address",
                            headers=limited.headers())
        if legacy:
            raise HttpError(403, "", "Not authenticated" if presented is None else "Invalid API key")
        raise HttpError(403, "", f"{reason} API key",
                        "send X-API-Key: <key> or Authorization: Bearer <key>")

    async def _authorize(self, key: ApiKey, route: Route) -> None:
        if route.access in _SCOPE_WORDS and route.access not in key.scopes:
            metrics.REJECTED.labels(reason="scope").inc()
            raise HttpError(403, "", f"the key {key.name!r} may not {_SCOPE_WORDS[route.access]}",
                            f"this route needs the scope {route.access!r}")
        limited = await self.limits.check_key(key)
        if limited is not None:
            raise HttpError(429, "", f"rate limit of key {key.name!r} exceeded "
                            f"({limited.limit.amount} per {limited.limit.get_expiry()} s)",
                            headers=limited.headers())

    async def _read_body(self, scope, receive) -> bytes | None:
        if not _is_json(header(scope, b"content-type")):
            raise HttpError(415, "unsupported_media_type", "Content-Type must be application/json")
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HttpError(400, "bad_content_length", "invalid Content-Length")
            if int(declared) > self.max_body:
                raise self._too_large()
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _too_large(self) -> HttpError:
        # Answered before the body is read; the protocol keeps reading (and dropping) what the
        # client still sends for a while before it closes, so clients that write their whole body
        # before they read (Python's urllib) see this answer instead of a reset connection.
        return HttpError(413, "too_large", f"request body larger than {self.max_body} bytes",
                         headers=[(b"connection", b"close")])

    def _admit(self, scope) -> None:
        now = time.monotonic()
        arrived = scope.get("fraudscore.arrived")  # set by the protocol when the body was complete
        if arrived is not None and not self.admission.admit(now - arrived, now):
            raise HttpError(503, "overloaded", "overloaded: the request waited too long, retry shortly",
                            headers=[(b"retry-after", b"1")])

    @staticmethod
    async def _send_raw(send, status: int, body: bytes | str, headers: list[tuple[bytes, bytes]]) -> None:
        payload = body.encode() if isinstance(body, str) else body
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(payload)).encode()), *headers]})
        await send({"type": "http.response.body", "body": payload})
