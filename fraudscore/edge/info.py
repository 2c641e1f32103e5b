"""``GET /model_info``: what model is serving and how it was trained.

BentoML's ``@bentoml.api`` routes are POST-only, so this GET is a small Starlette app mounted into
the service. Authentication runs before it, as for every route.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..scoring.pipeline import ModelUnavailable, ScoringPipeline


def build_app(pipeline: Callable[[], ScoringPipeline]) -> Starlette:
    async def model_info(_: Request) -> Response:
        try:
            info = pipeline().scorer.model_info()
        except ModelUnavailable as exc:
            return JSONResponse({"error": "model unavailable", "detail": str(exc)}, status_code=503)
        return Response(info.model_dump_json(), media_type="application/json")

    return Starlette(routes=[Route("/model_info", model_info, methods=["GET"])])
