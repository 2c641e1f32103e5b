"""Small ASGI helpers shared by the middlewares."""

from __future__ import annotations

from typing import Any

from pydantic_core import to_json


def header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def send_json(send, status: int, body: Any, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = to_json(body)  # compact, as BentoML answers; ~3x faster than json.dumps
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        *extra_headers,
    ]})
    await send({"type": "http.response.body", "body": payload})
