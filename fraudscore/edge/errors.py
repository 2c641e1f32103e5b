"""Every error answer of the edge, in one table: what went wrong -> status and body.

Native routes answer ``{"error": message, "detail": ...}``; the FastAPI-compatible route answers
what FastAPI did: ``{"detail": message}``, and 422 with ``{"detail": [{"type", "loc", "msg"}]}``
for a body it cannot use.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

MAX_ERRORS_SHOWN = 20  # a 3 kB body of 1,000 empty objects has 30,000 errors: answer with the first


class HttpError(Exception):
    """An answer other than 200, raised anywhere below the edge and rendered by :func:`render`."""

    def __init__(self, status: int, reason: str, message: str, detail: Any = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.detail, self.headers = detail, headers or []


def bad_request(reason: str, message: str, detail: Any = None) -> HttpError:
    return HttpError(400, reason, message, detail)


def invalid_body(exc: ValidationError) -> HttpError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return HttpError(400, "invalid_body", f"{exc.error_count()} validation error(s) for {exc.title}",
                     errors[:MAX_ERRORS_SHOWN])


def render(err: HttpError, legacy: bool) -> tuple[int, Any]:
    if not legacy:
        body = {"error": err.message}
        if err.detail is not None:
            body["detail"] = err.detail
        return err.status, body
    if err.status in (400, 415):  # FastAPI answered any body it could not use with 422
        detail = err.detail if isinstance(err.detail, list) else None
        items = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in detail] \
            if detail and err.reason == "invalid_body" else \
            [{"type": err.reason, "loc": ["body"], "msg": err.message}]
        return 422, {"detail": items}
    message = f"{err.message}: {err.detail}" if isinstance(err.detail, str) else err.message
    return err.status, {"detail": message}


# The statuses the edge answers and what each means (the OpenAPI document lists them per route).
STATUS_TEXT = {
    400: "The body is not valid JSON, has a duplicate key, or fails validation (each field named)",
    403: "No API key, an unknown key, or a key without the scope this route needs",
    404: "No such route",
    405: "Method not allowed on this route (see the Allow header)",
    408: "The request's headers or body did not arrive in time (the connection is closed)",
    413: "The body is larger than FRAUD_MAX_BODY_BYTES (the connection is closed)",
    415: "The body is not JSON (Content-Type must be application/json)",
    422: "The body could not be used (FastAPI's shape, on the compatible route only)",
    429: "Rate limit of the key, or too many failed authentications from the address (Retry-After)",
    431: "The request line and headers are larger than FRAUD_MAX_HEADER_BYTES or too many",
    503: "No model loaded, or the service is overloaded and shed the request at once (Retry-After)",
    504: "The request was not answered within traffic.timeout",
}
