"""HTTP routes that BentoML's POST-only ``@bentoml.api`` cannot express, mounted into the service:

- ``GET /model_info``: what model is serving and how it was trained;
- ``POST /v1/fraud-score``: drop-in for clients of the FastAPI service this replaces (same body;
  answer exactly ``{"fraud-score", "is-fraud", "model-version"}``; invalid body -> 422 with a
  FastAPI-style ``detail`` list).
Authentication and the request guard run before these, as for every route.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .schemas import LegacyFraudScoreOut, LegacyTransactionIn
from .scoring import ModelUnavailable, ScoringPipeline

LEGACY_PATH = "/v1/fraud-score"


def build_app(pipeline: Callable[[], ScoringPipeline]) -> Starlette:
    async def model_info(_: Request) -> Response:
        try:
            info = pipeline().scorer.model_info()
        except ModelUnavailable as exc:
            return JSONResponse({"error": "model unavailable", "detail": str(exc)}, status_code=503)
        return Response(info.model_dump_json(), media_type="application/json")

    async def legacy_fraud_score(request: Request) -> Response:
        try:
            tx = LegacyTransactionIn.model_validate_json(await request.body() or b"null")
        except ValidationError as exc:
            detail = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
                      for e in exc.errors(include_url=False, include_input=False)]
            return JSONResponse({"detail": detail}, status_code=422)
        (verdict,) = pipeline().scorer.score([tx])  # the request guard answered 503 if no model
        out = LegacyFraudScoreOut(fraud_score=verdict.fraud_score, is_fraud=verdict.is_fraud,
                                  model_version=verdict.model_version)
        return Response(out.model_dump_json(), media_type="application/json")

    return Starlette(routes=[
        Route("/model_info", model_info, methods=["GET"]),
        Route(LEGACY_PATH, legacy_fraud_score, methods=["POST"]),
    ])
