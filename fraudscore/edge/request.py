"""What a handler gets (a :class:`Request` the edge has authenticated, read and admitted) and
gives back (an :data:`Answer`: status, body, headers; a body that is not bytes or str is JSON)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .keys import ApiKey
from .routes import Route

Answer = tuple[int, Any, list[tuple[bytes, bytes]]]


@dataclass(slots=True)
class Request:
    scope: dict[str, Any]
    route: Route
    params: dict[str, str]
    key: ApiKey | None
    body: bytes
    request_id: bytes
    started: float  # time.perf_counter() when the edge received it
