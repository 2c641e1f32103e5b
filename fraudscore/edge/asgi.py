"""Small ASGI helpers shared by the middlewares."""

from __future__ import annotations

import os
import re
from itertools import count
from typing import Any

from pydantic_core import to_json

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")
_ids = count(1)
_id_prefix = os.urandom(4).hex() + "-"  # unique per worker process and start


def header(scope: dict[str, Any], name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def request_id(scope: dict[str, Any]) -> bytes:
    """The caller's X-Request-ID when it is a sane token, else a new one (worker prefix + counter)."""
    supplied = header(scope, b"x-request-id")
    if supplied is not None and _REQUEST_ID.match(supplied):
        return supplied
    return f"{_id_prefix}{next(_ids):x}".encode()


async def send_json(send, status: int, body: Any, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = to_json(body)  # compact, as BentoML answers; ~3x faster than json.dumps
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        *extra_headers,
    ]})
    await send({"type": "http.response.body", "body": payload})
