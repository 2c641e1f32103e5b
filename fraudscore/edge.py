"""The request guard: what every scoring request must pass before its body is parsed.

Pure ASGI, after authentication: the model must be loaded (else 503 with the reason), the body
must be JSON (else 415; 422 on the FastAPI-compatible route, as FastAPI answered) and no larger
than ``FRAUD_MAX_BODY_BYTES`` (else 413, checked on Content-Length and while reading).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import metrics
from .asgi import header, send_json
from .auth import LEGACY_PREFIX
from .settings import get_settings


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return True  # BentoML and FastAPI both read a body without a type as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class RequestGuard:
    def __init__(self, app, paths: Iterable[str], unavailable_reason: Callable[[], str | None],
                 max_body_bytes: int | None = None) -> None:
        self.app = app
        self.paths = frozenset(paths)  # every scoring route: service.py passes them all
        self.unavailable_reason = unavailable_reason
        self.max_body_bytes = max_body_bytes or get_settings().max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        legacy = scope["path"].startswith(LEGACY_PREFIX)

        if (reason := self.unavailable_reason()) is not None:
            await send_json(send, 503, {"error": "model unavailable", "detail": reason})
            return
        if not _is_json(header(scope, b"content-type")):
            await self._reject(send, legacy, 415, "unsupported_media_type",
                               "Content-Type must be application/json")
            return
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self._reject(send, legacy, 400, "bad_content_length", "invalid Content-Length")
                return
            if int(declared) > self.max_body_bytes:
                await self._reject(send, legacy, 413, "too_large", self._too_large())
                return

        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._reject(send, legacy, 413, "too_large", self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body_bytes} bytes"

    @staticmethod
    async def _reject(send, legacy: bool, status: int, reason: str, message: str) -> None:
        metrics.REJECTED.labels(reason=reason).inc()
        if legacy:  # FastAPI answered every unreadable body with 422 and a "detail" list
            status = 413 if status == 413 else 422
            await send_json(send, status, {"detail": [{"type": reason, "loc": ["body"], "msg": message}]})
        else:
            await send_json(send, status, {"error": message})
