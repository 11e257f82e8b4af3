"""The Dash UI, mounted on the API's Flask server at /."""

from __future__ import annotations

CALLBACK_PATH = "/_dash-update-component"


def mount(server) -> None:
    from architect.ui.app import build
    # kept for architect.api.guard: the Content-Security-Policy carries the hashes of the
    # Dash app's inline scripts (dash.Dash.csp_hashes)
    server.extensions["architect_ui"] = build(server)
    server.before_request(_check_callback)


def _check_callback():
    """A callback request that is not shaped like one is a 400 (Dash itself would fail on
    it with a KeyError: a 500)."""
    from flask import request

    from architect.api.errors import BadRequest
    if request.path != CALLBACK_PATH or request.method != "POST":
        return None
    body = request.get_json(silent=True)

    def items_ok(value) -> bool:
        return isinstance(value, list) and all(
            isinstance(i, dict) and "id" in i and isinstance(i.get("property"), str)
            or isinstance(i, list) for i in value)
    ok = (isinstance(body, dict) and isinstance(body.get("output"), str)
          and isinstance(body.get("outputs"), (dict, list)) and items_ok(body.get("inputs"))
          and items_ok(body.get("state", []))
          and isinstance(body.get("changedPropIds", []), list))
    if not ok:
        raise BadRequest("not a Dash callback request: it needs output, outputs and inputs")
    return None
