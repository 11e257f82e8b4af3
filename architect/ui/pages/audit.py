"""Audit: who changed what, from where, with what outcome (admins only; newest first)."""

from __future__ import annotations

import json
import time

from dash import Input, Output, dcc, html

from architect.ui import data

COLUMNS = [("when", "When"), ("who", "Who"), ("role", "Role"), ("addr", "From"),
           ("method", "Method"), ("target", "Target"), ("status", "Outcome"),
           ("detail", "Details")]
OUTCOMES = {"ok": "succeeded", "forbidden": "failed"}
LIMIT = 500
PAGE = 25


def layout():
    if not data.can("admin"):
        return html.Div(className="card", children=[
            html.H3("Audit"), html.Div(f"The audit log needs the admin role; you are "
                                       f"{data.role()}.", className="muted")])
    return html.Div([
        html.Div(className="form", children=[
            dcc.Input(id="audit-who", placeholder="who (key name or web:USER)", debounce=True,
                      style={"width": "240px"}),
            dcc.Input(id="audit-method", placeholder="method, e.g. task.submit", debounce=True,
                      style={"width": "220px"}),
            html.Span(f"the last {LIMIT} records", className="muted")]),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            data.paged_table("audit-table", COLUMNS, (), PAGE, 360, page_action="native",
                             row_selectable=False,
                             style_data_conditional=[
                                 {"if": {"filter_query": '{status} = "forbidden"'},
                                  "color": data.COLORS["failed"], "fontWeight": 600}])]),
        html.Div(id="audit-error", className="error"),
    ])


def rows(records: list) -> list:
    return [{"id": r["id"], "when": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"])),
             "who": r["who"], "role": r["role"], "addr": r.get("addr") or "",
             "method": r["method"], "target": r.get("target") or "",
             "status": r["outcome"], "detail": r.get("error") or json.dumps(r.get("params"))[:200]}
            for r in records]


def register(app):
    @app.callback(Output("audit-table", "data"), Output("audit-error", "children"),
                  Input("tick", "n_intervals"), Input("audit-who", "value"),
                  Input("audit-method", "value"))
    def refresh(_, who, method):
        params = {"limit": LIMIT}
        if who:
            params["who"] = who.strip()
        if method:
            params["method"] = method.strip()
        out, err = data.safe(data.call, "audit.list", params)
        return (rows(out), None) if out is not None else ([], err)
