"""The decision log's routes: ``GET /decisions/{transaction_id}``, ``GET /decisions`` (the review
queue, oldest first, cursor pages) and ``POST /labels`` (outcomes: chargebacks, reviews, ...).

The key needs the scope ``read`` or ``label`` (routes.py); the store answers in a thread
(store/runtime.py); a store that is down is 503, an unknown id 404, a bad query or body 400
naming the parameter or field, and unknown ids in labels are reported per item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from ..schemas import DecisionsQueryIn, LabelsIn
from ..store.queries import InvalidCursor
from ..store.runtime import Store, StoreUnavailable
from .errors import HttpError, bad_request, invalid_body
from .request import Answer, Request


def _query(req: Request) -> DecisionsQueryIn:
    raw = parse_qs(req.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    repeated = [k for k, v in raw.items() if len(v) > 1]
    if repeated:
        raise bad_request("invalid_query", f"query parameter(s) given more than once: {', '.join(repeated)}")
    try:
        return DecisionsQueryIn.model_validate({k: v[0] for k, v in raw.items()})
    except ValidationError as exc:
        err = invalid_body(exc)
        err.detail = [{**e, "loc": ["query", *e["loc"]]} for e in err.detail]
        raise err from None


class RecordHandlers:
    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store

    def _ready_store(self) -> Store:
        store = self._store()
        if store is None:
            raise HttpError(503, "store_unavailable", "decision store unavailable")
        return store

    async def _ask(self, call) -> Any:
        try:
            return await call
        except StoreUnavailable as exc:
            raise HttpError(503, "store_unavailable", str(exc)) from None

    async def decision(self, req: Request) -> Answer:
        store = self._ready_store()
        transaction_id = req.params["transaction_id"]
        if len(transaction_id) > 128:
            raise bad_request("invalid_path", "transaction_id is longer than 128 characters")
        found = await self._ask(store.decision(transaction_id))
        if found is None:
            raise HttpError(404, "unknown_transaction", f"no decision for transaction {transaction_id!r}")
        return 200, found, []

    async def decisions(self, req: Request) -> Answer:
        store = self._ready_store()
        q = _query(req)
        try:
            items, cursor = await self._ask(store.decisions(
                decision=q.decision, since=q.since, until=q.until, model_version=q.model_version,
                role=None if q.role == "all" else q.role, limit=q.limit, cursor=q.cursor))
        except InvalidCursor as exc:
            detail = [{"type": "invalid_cursor", "loc": ["query", "cursor"], "msg": str(exc)}]
            raise bad_request("invalid_query", str(exc), detail) from None
        return 200, {"items": items, "next_cursor": cursor}, []

    async def labels(self, req: Request) -> Answer:
        store = self._ready_store()
        try:
            body = LabelsIn.model_validate_json(req.body or b"null")
        except ValidationError as exc:
            raise invalid_body(exc) from None
        results = await self._ask(store.label([item.model_dump() for item in body.labels]))
        return 200, {"results": results}, []
