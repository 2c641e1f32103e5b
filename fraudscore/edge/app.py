"""The scoring edge: a scoring request from the wire to its answer, in one pure ASGI step.

After authentication (auth.py), for ``POST /fraud_score``, ``/fraud_score/batch`` and
``/v1/fraud-score``: receive (the model must be loaded, else 503 with the reason; the body must be
JSON, else 415, or 422 on the FastAPI-compatible route as FastAPI answered; and no larger than
``FRAUD_MAX_BODY_BYTES``, else 413, checked on Content-Length and while reading) -> validate (the
pydantic schemas of schemas.py: 400 naming each bad field, 422 with FastAPI's shape on ``/v1``)
-> score and decide (scoring.py) -> respond.

These routes are declared in service.py with ``@bentoml.api`` (schema, OpenAPI, BentoML clients)
and answered here, before BentoML's router: its per-request endpoint machinery (request object,
IO descriptors, response object, context) cost ~1 ms of CPU per request, several times the scoring
itself. Everything outside this step still runs for every request: BentoML's request metrics,
timeout and concurrency limit, its access log and tracing where configuration.yaml turns them on
for these routes, and our authentication.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from ..ops import metrics
from ..schemas import LegacyFraudScoreOut, LegacyTransactionIn, TransactionIn
from ..scoring.batching import Overloaded
from ..scoring.pipeline import ScoringPipeline
from ..settings import get_settings
from .asgi import header, send_json
from .auth import LEGACY_PREFIX

SCORE_PATH = "/fraud_score"
BATCH_PATH = "/fraud_score/batch"
LEGACY_PATH = "/v1/fraud-score"
MAX_ERRORS_SHOWN = 20  # a 3 kB body of 1,000 empty objects has 30,000 errors: answer with the first

log = logging.getLogger("bentoml.fraudscore")


def _is_json(content_type: bytes | None) -> bool:
    if not content_type:
        return True  # BentoML and FastAPI both read a body without a type as JSON
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


class ScoringEdge:
    def __init__(self, app, pipeline: Callable[[], ScoringPipeline], batch_model: type[BaseModel],
                 max_body_bytes: int | None = None) -> None:
        self.app = app
        self.pipeline = pipeline
        self.batch_model = batch_model  # {"transactions": [...]} with the configured size limits
        self.max_body_bytes = max_body_bytes or get_settings().max_body_bytes
        self.routes = {SCORE_PATH: self._score, BATCH_PATH: self._score_batch, LEGACY_PATH: self._legacy}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.routes:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_json(send, 405, {"detail": "Method Not Allowed"}, [(b"allow", b"POST")])
            return
        path = scope["path"]
        legacy = path.startswith(LEGACY_PREFIX)
        # receive
        pipeline = self.pipeline()
        if pipeline.unavailable_reason is not None:
            await send_json(send, 503, {"error": "model unavailable", "detail": pipeline.unavailable_reason})
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
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        # validate, score, decide, respond
        try:
            status, answer = await self.routes[path](pipeline, body)
        except ValidationError as exc:
            metrics.REJECTED.labels(reason="invalid_body").inc()
            log.info("rejected invalid request body on %s: %d validation error(s)", path, exc.error_count())
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            if legacy:  # FastAPI's 422 shape
                status, answer = 422, {"detail": [
                    {"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
                    for e in errors[:MAX_ERRORS_SHOWN]]}
            else:
                status, answer = 400, {
                    "error": f"{exc.error_count()} validation error(s) for {exc.title}",
                    "detail": errors[:MAX_ERRORS_SHOWN]}
        except Overloaded as exc:
            metrics.REJECTED.labels(reason="overloaded").inc()
            status, answer = 503, {"error": "overloaded", "detail": str(exc)}
        except Exception:  # the model or our code failed: a server error, logged with its cause
            log.exception("scoring failed on %s", path)
            status, answer = 500, {"error": "internal error: scoring failed (see the server log)"}
        await send_json(send, status, answer)

    async def _score(self, pipeline: ScoringPipeline, body: bytes) -> tuple[int, Any]:
        tx = TransactionIn.model_validate_json(body)
        (verdict,) = await pipeline.score_transactions([tx])
        return 200, verdict

    async def _score_batch(self, pipeline: ScoringPipeline, body: bytes) -> tuple[int, Any]:
        return 200, await pipeline.score_transactions(self.batch_model.model_validate_json(body).transactions)

    async def _legacy(self, pipeline: ScoringPipeline, body: bytes) -> tuple[int, Any]:
        tx = LegacyTransactionIn.model_validate_json(body or b"null")  # FastAPI: 'body missing'
        (verdict,) = await pipeline.score_transactions([tx])
        return 200, LegacyFraudScoreOut(fraud_score=verdict["fraud_score"], is_fraud=verdict["is_fraud"],
                                        model_version=verdict["model_version"]).model_dump(by_alias=True)

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
