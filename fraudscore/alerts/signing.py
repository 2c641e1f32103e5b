"""The webhook's signature: ``X-Fraud-Signature: t=<unix seconds>,v1=<hex>`` where hex is
HMAC-SHA256(secret, f"{t}.{body}"), the scheme Stripe's webhooks use.

The timestamp is signed with the body, so a receiver that also checks its age (``tolerance_s``)
refuses a captured request replayed later; within the window, ``X-Fraud-Alert-Id`` deduplicates.
A receiver needs only this module (standard library only) or the README's ten lines.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Fraud-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body`` (the exact bytes sent) signed now (or at ``timestamp``)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},{SCHEME}={_digest(secret, t, body)}"


def verify(secret: str | bytes, header: str | None, body: bytes, tolerance_s: float = DEFAULT_TOLERANCE_S,
           now: float | None = None) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance_s`` seconds of now (either side: clocks differ); False for anything else (no
    header, a malformed one, another body, another secret, a stale or future timestamp)."""
    if not header:
        return False
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(name, []).append(value)
    try:
        (t_text,) = fields.get("t", [])
        t = int(t_text)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - t) > tolerance_s:
        return False
    expected = _digest(secret, t, body)
    # several v1 values are allowed (a sender rotating its secret may sign with both)
    return any(hmac.compare_digest(expected, v) for v in fields.get(SCHEME, []))
