"""A request id for every web request: the caller's `X-Request-Id` when it is a sane token
(1-64 of A-Z a-z 0-9 . _ -), else a new one. It is on every log line written while the
request is handled (logsetup.context: `request_id` in --log-format json, "request ID" in
text) and sent back as the `X-Request-Id` response header, so a user's report, a proxy's log
and this server's log meet on one id."""

from __future__ import annotations

import re
import secrets

from flask import Flask, g, request

from architect.logsetup import context

HEADER = "X-Request-Id"
_SANE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def current() -> str | None:
    return g.get("request_id")


def install(app: Flask) -> None:
    @app.before_request
    def _begin():
        given = request.headers.get(HEADER, "")
        g.request_id = given if _SANE.match(given) else secrets.token_hex(8)
        g._request_log = context(request_id=g.request_id)
        g._request_log.__enter__()

    @app.after_request
    def _header(response):
        if g.get("request_id"):
            response.headers[HEADER] = g.request_id
        return response

    @app.teardown_request
    def _end(_exc):
        log_context = g.pop("_request_log", None)
        if log_context is not None:
            try:
                log_context.__exit__(None, None, None)
            except ValueError:   # reset from another context (a streamed response): harmless
                pass
