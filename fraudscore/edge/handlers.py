"""The route handlers: a request the edge has authenticated, read and admitted -> an answer.

Each handler takes a :class:`Request` and returns ``(status, body, headers)``: a body that is not
bytes or str is sent as JSON. Problems are raised as :class:`HttpError` (errors.py). Bodies are
validated by the schemas of schemas.py; a JSON object with a duplicate key is refused (400): a
transaction with two ``V14`` is ambiguous, and a gateway that reads the first while we read the
last would see another transaction than the one scored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import jiter
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from ..schemas import LegacyFraudScoreOut, LegacyTransactionIn, TransactionIn
from ..scoring.pipeline import ModelUnavailable, Origin, ScoringPipeline
from ..scoring.thresholds import Thresholds
from ..settings import Settings
from . import docs
from .decisions import RecordHandlers
from .errors import HttpError, bad_request, invalid_body
from .protocol import ADMITTED
from .request import Answer, Request

BULK_BODY_BYTES = 64 * 1024  # about 80 transactions: larger batch bodies use the bulk lane




def check_duplicate_keys(body: bytes, keys_seen: int) -> None:
    """Refuse a JSON body in which an object repeats a key.

    Every key in JSON is followed by a colon, so a body with no more colons than the distinct keys
    the validated objects hold cannot repeat one (the common case: one ``bytes.count``). Only
    otherwise (a colon inside a string, or a repeat) is the body parsed again to find out."""
    if body.count(b":") <= keys_seen:
        return
    try:
        jiter.from_json(body, catch_duplicate_keys=True)
    except ValueError as exc:
        raise bad_request("duplicate_key", "the JSON body repeats a key in one object",
                          [{"type": "duplicate_key", "loc": [], "msg": str(exc)}]) from None


def _calm(req: Request) -> bool:
    """Not overloaded: small requests may be merged (admission.py, batching.py)."""
    admission = req.scope.get(ADMITTED)
    return admission is None or not admission.overloaded


def _validate(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_body(exc) from None


def _explain(req: Request) -> bool:
    """``?explain=true``: reasons on every verdict (review and block verdicts always have them)."""
    values = parse_qs(req.scope.get("query_string", b"").decode("latin-1")).get("explain", ["false"])
    if len(values) != 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise bad_request("invalid_query", "explain must be true or false",
                          [{"type": "bool_parsing", "loc": ["query", "explain"], "msg": "true or false"}])
    return values[0].lower() in ("true", "1")


def _profile(req: Request) -> Thresholds | None:
    """The calling key's own thresholds (key file), if it has them."""
    return req.key.thresholds if req.key is not None else None


def _origin(req: Request) -> Origin:
    return Origin(req.route.path, req.key.name if req.key else None, req.request_id.decode(), req.started)


class Handlers(RecordHandlers):
    def __init__(self, pipeline: Callable[[], ScoringPipeline], batch_model: type[BaseModel],
                 settings: Settings, store: Callable[[], Any] = lambda: None) -> None:
        super().__init__(store)
        self._pipeline = pipeline
        self._batch_model = batch_model  # {"transactions": [...]} with the configured size limits
        self._settings = settings
        self._openapi: bytes | None = None

    def _ready_pipeline(self) -> ScoringPipeline:
        pipeline = self._pipeline()
        if pipeline.unavailable_reason is not None:
            raise HttpError(503, "model_unavailable", "model unavailable", pipeline.unavailable_reason)
        return pipeline

    async def score(self, req: Request) -> Answer:
        pipeline = self._ready_pipeline()
        explain = _explain(req)
        tx = _validate(TransactionIn, req.body)
        check_duplicate_keys(req.body, len(tx.model_fields_set))
        (verdict,) = await pipeline.score_transactions([tx], merge=_calm(req), explain=explain,
                                                      origin=_origin(req), thresholds=_profile(req))
        return 200, verdict, []

    async def score_batch(self, req: Request) -> Answer:
        pipeline = self._ready_pipeline()
        explain, origin = _explain(req), _origin(req)
        if len(req.body) < BULK_BODY_BYTES:
            batch = _validate(self._batch_model, req.body)
            check_duplicate_keys(req.body, 1 + sum(len(tx.model_fields_set) for tx in batch.transactions))
            verdicts = await pipeline.score_transactions(batch.transactions, explain=explain, origin=origin,
                                                         thresholds=_profile(req))
            return 200, verdicts, []
        # A large body's parse (~4 ms for 1,000 transactions) and answer take the bulk lane too.
        lane = pipeline.bulk_lane()
        async with lane.piece():
            batch = _validate(self._batch_model, req.body)
            check_duplicate_keys(req.body, 1 + sum(len(tx.model_fields_set) for tx in batch.transactions))
        verdicts = await pipeline.score_transactions(batch.transactions, explain=explain, origin=origin,
                                                     thresholds=_profile(req))
        async with lane.piece():
            answer = to_json(verdicts)
        return 200, answer, [(b"content-type", b"application/json")]

    async def score_legacy(self, req: Request) -> Answer:
        pipeline = self._ready_pipeline()
        explain = _explain(req)
        tx = _validate(LegacyTransactionIn, req.body or b"null")  # FastAPI: 'body missing'
        # unknown fields are ignored here, as FastAPI did: they are not in model_fields_set
        check_duplicate_keys(req.body, len(tx.model_fields_set))
        (verdict,) = await pipeline.score_transactions([tx], merge=_calm(req), explain=explain,
                                                      origin=_origin(req), thresholds=_profile(req))
        legacy = LegacyFraudScoreOut(fraud_score=verdict["fraud_score"], is_fraud=verdict["is_fraud"],
                                     model_version=verdict["model_version"])
        answer = legacy.model_dump(by_alias=True)
        if explain:  # the exact legacy shape unless asked: then the id and the reasons too
            answer["transaction-id"] = verdict["transaction_id"]
            answer["reasons"] = verdict.get("reasons", [])
        return 200, answer, []

    async def model_info(self, req: Request) -> Answer:
        try:
            info = self._pipeline().scorer.model_info(req.key.name if req.key else None, _profile(req))
        except ModelUnavailable as exc:
            raise HttpError(503, "model_unavailable", "model unavailable", str(exc)) from None
        return 200, info.model_dump(mode="json"), []

    async def livez(self, req: Request) -> Answer:
        return 200, {"status": "alive"}, []

    async def readyz(self, req: Request) -> Answer:
        pipeline = self._pipeline()
        if pipeline.unavailable_reason is not None:
            return 503, {"status": "unavailable", "reason": pipeline.unavailable_reason}, []
        return 200, {"status": "ready", "model_version": pipeline.scorer.version}, []

    async def metrics(self, req: Request) -> Answer:
        from prometheus_client import CONTENT_TYPE_LATEST

        # Reading every worker's files takes milliseconds: not on the event loop.
        payload = await asyncio.to_thread(_collect_metrics)
        return 200, payload, [(b"content-type", CONTENT_TYPE_LATEST.encode())]

    async def docs_page(self, req: Request) -> Answer:
        return 200, docs.PAGE, docs.PAGE_HEADERS

    async def docs_script(self, req: Request) -> Answer:
        return 200, docs.SCRIPT, docs.SCRIPT_HEADERS

    async def openapi(self, req: Request) -> Answer:
        if self._openapi is None:
            self._openapi = docs.openapi_json(self._settings)
        return 200, self._openapi, [(b"content-type", b"application/json")]


def _collect_metrics() -> bytes:
    import os

    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:  # a single process (tests without the directory): this process's own metrics
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry)
