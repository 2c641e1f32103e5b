"""The API's documentation: an OpenAPI 3.1 document built from the route table, and a docs page.

The document is generated from routes.py and the schemas of schemas.py, so it describes what the
edge really does: every route, its key scope, its request and answer bodies, and every error
status with its body shape and headers. The page is Swagger UI from the copy BentoML ships,
served from this origin, with no third-party script (BentoML's own page loads a Google Tag
Manager script) and a Content-Security-Policy that allows none.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from .. import schemas
from ..settings import Settings
from .errors import STATUS_TEXT
from .routes import ROUTES, Route

_CSP = (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
        b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Fraud scoring API</title>
<link rel="stylesheet" href="./static_content/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="./static_content/swagger-ui-bundle.js"></script>
<script src="./static_content/swagger-ui-standalone-preset.js"></script>
<script src="./docs.js"></script>
</body>
</html>
"""
PAGE_HEADERS = [(b"content-type", b"text/html; charset=utf-8"), _CSP]
# validatorUrl null: Swagger UI would otherwise load a badge from validator.swagger.io
SCRIPT = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({url: "./docs.json", dom_id: "#swagger-ui", validatorUrl: null,
    deepLinking: true, presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout"});
};
"""
SCRIPT_HEADERS = [(b"content-type", b"text/javascript; charset=utf-8"), _CSP]

_SECURITY = [{"ApiKeyHeader": []}, {"BearerAuth": []}]
_REQUEST_ID = {"description": "The caller's X-Request-ID if valid, else one generated for this request",
               "schema": {"type": "string"}}
_REQUEST_ID_ALWAYS = {**_REQUEST_ID, "required": True}
_RETRY = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}}
# every 429 has them all (ratelimit.py)
_RATE = {name: {"description": text, "schema": {"type": kind}, "required": True} for name, text, kind in (
    ("Retry-After", "Seconds to wait", "integer"),
    ("RateLimit-Limit", "Requests allowed per window", "integer"),
    ("RateLimit-Remaining", "Left in this window", "integer"),
    ("RateLimit-Reset", "Seconds until the window resets", "integer"),
    ("RateLimit-Policy", "limit;w=window seconds", "string"))}
_PLAIN = {"/metrics": "text/plain", "/": "text/html", "/docs.js": "text/javascript"}
# Answered below the edge (protocol.py: 408, 431; BentoML's timeout: 504): the native error body on
# every route, the legacy one included (so is the overload shed's 503); the 504 has no X-Request-ID.
_BELOW_EDGE = frozenset({408, 431, 504})


def _models(settings: Settings) -> dict[str, tuple[Any, str]]:
    return {
        "TransactionIn": (schemas.TransactionIn, "validation"),
        "LegacyTransactionIn": (schemas.LegacyTransactionIn, "validation"),
        "BatchRequestIn": (schemas.batch_request_model(settings.batch_max_items), "validation"),
        "FraudScoreOut": (schemas.FraudScoreOut, "serialization"),
        "LegacyFraudScoreOut": (schemas.LegacyFraudScoreOut, "serialization"),
        "ModelInfoOut": (schemas.ModelInfoOut, "serialization"),
        "ReadinessOut": (schemas.ReadinessOut, "serialization"),
        "ErrorOut": (schemas.ErrorOut, "serialization"),
        "TransactionRecordOut": (schemas.TransactionRecordOut, "serialization"),
        "DecisionsPageOut": (schemas.DecisionsPageOut, "serialization"),
        "LabelsIn": (schemas.LabelsIn, "validation"),
        "LabelsOut": (schemas.LabelsOut, "serialization"),
        "LegacyErrorOut": (schemas.LegacyErrorOut, "serialization"),
    }


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _operation(route: Route, method: str, settings: Settings, refs: dict[str, dict]) -> dict[str, Any]:
    _ref = refs.__getitem__
    op: dict[str, Any] = {"summary": route.summary,
                          "operationId": f"{method.lower()}_{route.handler or route.path.strip('/')}"}
    keyed = not (route.public or (route.access == "docs" and settings.docs_public))
    if keyed:
        op["security"] = _SECURITY
        if route.access in ("score", "read", "label"):
            op["description"] = f"Needs a key with the scope `{route.access}`."
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1,
                                                                          "maxLength": 128}}
              for name in _path_params(route.path)]
    if route.query:
        model = getattr(schemas, route.query)
        for name, prop in model.model_json_schema()["properties"].items():
            params.append({"name": name, "in": "query", "required": False,
                           "description": prop.pop("description", ""), "schema": _no_null(prop)})
    if params:
        op["parameters"] = params
    if route.request_body:
        op["requestBody"] = {"required": True, "content": _json(_ref(route.request_body))}
    ok: dict[str, Any] = {"description": "OK", "headers": {"X-Request-ID": _REQUEST_ID_ALWAYS}}
    if route.response_body == "FraudScoreList":
        ok["content"] = _json({"type": "array", "items": _ref("FraudScoreOut")})
    elif route.response_body:
        ok["content"] = _json(_ref(route.response_body))
    elif route.path in _PLAIN:
        ok["content"] = {_PLAIN[route.path]: {"schema": {"type": "string"}}}
    else:
        ok["content"] = _json({"type": "object"})
    op["responses"] = {"200": ok}
    statuses = set(route.errors) | ({403, 429} if keyed else set())
    for status in sorted(statuses):
        body = _ref("LegacyErrorOut" if route.legacy and status not in _BELOW_EDGE else "ErrorOut")
        if route.legacy and status == 503:  # no model: the legacy body; shed: the native one
            body = {"anyOf": [_ref("LegacyErrorOut"), _ref("ErrorOut")]}
        if route.path == "/readyz" and status == 503:
            body = _ref("ReadinessOut")
        headers = {"X-Request-ID": _REQUEST_ID if status == 504 else _REQUEST_ID_ALWAYS}
        headers |= _RATE if status == 429 else _RETRY if status == 503 and route.hot else {}
        op["responses"][str(status)] = {"description": STATUS_TEXT[status], "headers": headers,
                                        "content": _json(body)}
    return op


def _no_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string: no ``null`` alternative (and no default null)."""
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1:
        schema = {**{k: v for k, v in schema.items() if k not in ("anyOf", "default")}, **options[0]}
    return schema


def _path_params(path: str) -> list[str]:
    return [seg[1:-1] for seg in path.split("/") if seg.startswith("{") and seg.endswith("}")]


def build(settings: Settings) -> dict[str, Any]:
    """The OpenAPI document of the routes in the table (file prefixes excepted)."""
    models = _models(settings)
    by_model, defs = models_json_schema([(m, mode) for m, mode in models.values()],
                                        ref_template="#/components/schemas/{model}")
    refs = {name: by_model[spec] for name, spec in models.items()}
    paths: dict[str, Any] = {}
    for route in ROUTES:
        if route.prefix:
            continue
        paths[route.path] = {m.lower(): _operation(route, m, settings, refs)
                             for m in route.methods if m != "HEAD"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Fraud scoring API", "version": "1",
                 "description": "Real-time credit-card fraud scoring. Keys: X-API-Key or Bearer."},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": {
            "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "BearerAuth": {"type": "http", "scheme": "bearer"}}},
    }


def openapi_json(settings: Settings) -> bytes:
    return json.dumps(build(settings), separators=(",", ":")).encode()
