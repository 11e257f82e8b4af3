"""REST errors: one shape, {"error": {"code": str, "message": str}}, mapped at one place.

    ApiError(status, code, message)
    ├── BadRequest      400 bad_request (bad JSON, wrong types: the message names the field)
    │                   (400 bad_host: a Host header that does not name this server)
    ├── Unauthorized    401 unauthorized
    ├── Forbidden       403 forbidden (cross_origin, forbidden_user: see guard.py)
    ├── NotFound        404 not_found
    ├── Conflict        409 conflict (e.g. keys on a bus that is not secured)
    ├── TooLarge        413 too_large
    ├── UnsupportedMediaType  415 unsupported_media_type (a write whose body is not JSON)
    ├── TooMany         429 too_many_requests
    └── Unavailable     503 broker_unavailable / store_unavailable
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger("architect.api")


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, code: str | None = None, status: int | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class TooLarge(ApiError):
    status, code = 413, "too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class TooMany(ApiError):
    status, code = 429, "too_many_requests"


class Unavailable(ApiError):
    status, code = 503, "broker_unavailable"


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def install(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    from werkzeug.routing import Map, Rule
    from werkzeug.exceptions import MethodNotAllowed, NotFound as WzNotFound
    from architect.api.routes import ROUTES
    from architect.api.app import NodeKeyConverter
    api_map = Map([Rule(r.rule, methods=list(r.methods)) for r in ROUTES],
                  converters={"nodekey": NodeKeyConverter})

    def api_methods(path: str) -> set:  # noqa: E306
        """Methods the real API routes allow for `path` (none: it is no API path)."""
        adapter = api_map.bind("localhost")
        found = {}
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            try:
                rule, _ = adapter.match(path, method=method, return_rule=True)
                found[method] = rule
            except (MethodNotAllowed, WzNotFound):
                pass
        # a static rule (/api/nodes/health) wins over a variable one (/api/nodes/<key>)
        static = {m for m, r in found.items() if not r.arguments}
        return static or set(found)

    app.extensions["api_methods"] = api_methods

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        from flask import request
        if exc.code == 405 and request.path.startswith("/api"):
            allowed = api_methods(request.path)
            if not allowed:
                return error_response(404, "not_found", f"no API route {request.path}; "
                                      "see /api/openapi.json")
            allow = sorted(allowed | {"OPTIONS"})
            return error_response(405, "method_not_allowed",
                                  f"{request.method} is not allowed here; use {', '.join(allow)}",
                                  {"Allow": ", ".join(allow)})
        # keep werkzeug's headers (Allow on 405, WWW-Authenticate …) with our JSON body
        response = exc.get_response()
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                400: "bad_request"}.get(exc.code, (exc.name or "error").lower().replace(" ", "_"))
        body = error_response(exc.code or 500, code, exc.description or exc.name)
        for key, value in response.headers.items():
            if key.lower() not in ("content-type", "content-length"):
                body.headers[key] = value
        return body

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error in a request")
        return error_response(500, "internal", "internal error; see the server log")
