"""The route table: every path the service answers, in one place.

Read by the edge (dispatch, which key scope a route needs, overload shedding), the request
metrics (a route's path template is its label; anything else is counted as ``other``), tracing
(``untraced_paths``), the OpenAPI document (openapi.py), the deployment test (which paths the
load balancer forwards) and the docs page. A path that is not here is answered 404 (after
authentication), whatever its method or trailing slash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Who may call: no key; any valid key; a key with this scope; the docs (no key when
# FRAUD_DOCS_PUBLIC=true, else any valid key).
Access = Literal["public", "any", "score", "read", "label", "docs"]


@dataclass(frozen=True)
class Route:
    path: str  # a template: "{name}" stands for one path segment
    methods: tuple[str, ...]
    access: Access
    # ours: the name of its handler (handlers.py); None: BentoML's app answers (schema, assets)
    handler: str | None
    # api: callers reach it through the load balancer; internal: only from inside the VPC
    exposure: Literal["api", "internal"]
    summary: str = ""
    hot: bool = False  # the scoring path: shed under overload, never traced
    prefix: bool = False  # also answers every path below it (static files)
    legacy: bool = False  # errors in the FastAPI service's shapes
    request_body: str | None = None  # schema name in schemas.py (OpenAPI)
    query: str | None = None  # schema name of its query parameters
    response_body: str | None = None
    errors: tuple[int, ...] = field(default=())  # statuses it may answer besides 200 (OpenAPI)

    @property
    def public(self) -> bool:
        return self.access == "public"


_SCORING_ERRORS = (400, 403, 408, 413, 415, 429, 431, 503, 504)
_READ_ERRORS = (400, 403, 429, 503, 504)
ROUTES: tuple[Route, ...] = (
    Route("/fraud_score", ("POST",), "score", "score", "api", hot=True,
          summary="Score one transaction", request_body="TransactionIn", response_body="FraudScoreOut",
          query="ExplainQueryIn", errors=_SCORING_ERRORS),
    Route("/fraud_score/batch", ("POST",), "score", "score_batch", "api", hot=True,
          summary="Score up to FRAUD_BATCH_MAX_ITEMS transactions", request_body="BatchRequestIn",
          response_body="FraudScoreList", query="ExplainQueryIn", errors=_SCORING_ERRORS),
    Route("/v1/fraud-score", ("POST",), "score", "score_legacy", "api", hot=True, legacy=True,
          summary="Score one transaction (the FastAPI service's route and answer)",
          request_body="LegacyTransactionIn", response_body="LegacyFraudScoreOut", query="ExplainQueryIn",
          errors=(400, 403, 408, 413, 422, 429, 431, 503, 504)),
    Route("/model_info", ("GET", "HEAD"), "any", "model_info", "api",
          summary="The model in service, its training and thresholds", response_body="ModelInfoOut",
          errors=(403, 429, 503)),
    Route("/decisions/{transaction_id}", ("GET", "HEAD"), "read", "decision", "api",
          summary="What was decided about a transaction, by which model, and its labels",
          response_body="TransactionRecordOut", errors=(*_READ_ERRORS, 404)),
    Route("/decisions", ("GET", "HEAD"), "read", "decisions", "api",
          summary="Decisions, oldest first, filtered (the review queue: ?decision=review), in pages",
          response_body="DecisionsPageOut", query="DecisionsQueryIn", errors=_READ_ERRORS),
    Route("/labels", ("POST",), "label", "labels", "api",
          summary="Outcomes of transactions (chargebacks, reviews, ...): up to 1,000 a call",
          request_body="LabelsIn", response_body="LabelsOut", errors=(*_READ_ERRORS, 408, 413, 415)),
    Route("/livez", ("GET", "HEAD"), "public", "livez", "internal", summary="Liveness probe"),
    Route("/healthz", ("GET", "HEAD"), "public", "livez", "internal", summary="Liveness probe"),
    Route("/readyz", ("GET", "HEAD"), "public", "readyz", "internal",
          summary="Readiness: 200 when a model is loaded, 503 with the reason otherwise",
          response_body="ReadinessOut", errors=(503,)),
    Route("/metrics", ("GET", "HEAD"), "public", "metrics", "internal", summary="Prometheus metrics"),
    Route("/", ("GET", "HEAD"), "docs", "docs_page", "internal", summary="API documentation"),
    Route("/docs.json", ("GET", "HEAD"), "docs", "openapi", "internal", summary="This OpenAPI document"),
    Route("/docs.js", ("GET", "HEAD"), "docs", "docs_script", "internal", summary="Script of the docs page"),
    Route("/schema.json", ("GET", "HEAD"), "docs", None, "internal",
          summary="BentoML's service schema (its Python client reads it)"),
    Route("/static_content/", ("GET", "HEAD"), "docs", None, "internal", prefix=True,
          summary="Files of the docs page"),
)

_EXACT = {r.path: r for r in ROUTES if "{" not in r.path and not r.prefix}
_TEMPLATES = [(r.path.split("{", 1)[0], r) for r in ROUTES if "{" in r.path]
_PREFIXES = [r for r in ROUTES if r.prefix]


def match(path: str) -> tuple[Route | None, dict[str, str]]:
    """The route answering ``path`` and its parameters, or (None, {})."""
    route = _EXACT.get(path)
    if route is not None:
        return route, {}
    for head, route in _TEMPLATES:
        rest = path[len(head):]
        if path.startswith(head) and rest and "/" not in rest:
            name = route.path[len(head) + 1:-1]
            return route, {name: rest}
    for route in _PREFIXES:
        if path.startswith(route.path) and len(path) > len(route.path):
            return route, {}
    return None, {}


def untraced_paths() -> list[str]:
    """URL patterns kept out of tracing: the scoring path (a span costs ~25% of its CPU)."""
    return [r.path for r in ROUTES if r.hot]
