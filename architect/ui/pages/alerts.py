"""Alerts: the history with filters (state, level, kind, node, window); select one to see it
whole, acknowledge it, or silence its node for a while (operators)."""

from __future__ import annotations

import time

from dash import Input, Output, State, ctx, dcc, html

from architect.ui import data

COLUMNS = [("id", "ID"), ("opened", "Opened"), ("node", "Node"), ("level", "Level"),
           ("kind", "Kind"), ("status", "State"), ("resolved", "Resolved"), ("ack", "Ack by"),
           ("message", "Message")]
WINDOWS = [("last hour", 3600), ("last day", 86400), ("last week", 7 * 86400),
           ("last 30 days", 30 * 86400), ("all time", 0)]
SILENCE_FOR = [("1 hour", "1h"), ("4 hours", "4h"), ("1 day", "1d")]
LIMIT = 500
PAGE = 20


def _dropdown(cid, options, value, placeholder, width):
    return dcc.Dropdown(id=cid, options=options, value=value, placeholder=placeholder,
                        clearable=value is None, style={"width": width})


def layout():
    return html.Div([
        html.Div(className="form", children=[
            _dropdown("al-state", [{"label": "active", "value": "active"},
                                   {"label": "active and resolved", "value": "all"}],
                      "all", None, "200px"),
            _dropdown("al-level", [{"label": lv, "value": lv}
                                   for lv in ("warning", "critical", "offline")],
                      None, "any level", "150px"),
            _dropdown("al-kind", [{"label": k, "value": k}
                                  for k in ("level", "flapping", "rule", "security")],
                      None, "any kind", "150px"),
            dcc.Input(id="al-node", placeholder="node", debounce=True,
                      style={"width": "160px"}),
            _dropdown("al-window", [{"label": t, "value": s} for t, s in WINDOWS], 86400,
                      None, "150px"),
            html.Span(id="al-count", className="muted")]),
        html.Div(className="row", children=[
            html.Div(className="card", style={"flex": "3 1 640px"}, children=[
                data.paged_table("al-table", COLUMNS, (), PAGE, 420, page_action="native",
                                 style_data_conditional=[
                                     {"if": {"filter_query": f'{{level}} = "{lv}"',
                                             "column_id": "level"},
                                      "color": data.COLORS[lv], "fontWeight": 600}
                                     for lv in ("warning", "critical", "offline")])]),
            html.Div(className="card", style={"flex": "1 1 320px"}, children=[
                html.H3("Alert"), html.Div(id="al-details", className="muted",
                                           children="Select an alert."),
                html.Div(className="form", style=data.shown("operator", {"marginTop": "10px"}),
                         children=[
                             html.Button("Acknowledge", id="al-ack", className="secondary",
                                         disabled=True),
                             dcc.Dropdown(id="al-silence-for",
                                          options=[{"label": t, "value": v}
                                                   for t, v in SILENCE_FOR],
                                          value="1h", clearable=False,
                                          style={"width": "110px"}),
                             html.Button("Silence node", id="al-silence", className="secondary",
                                         disabled=True)]),
                html.Div(id="al-msg", className="muted", style={"marginTop": "8px"})]),
        ]),
        html.Div(id="al-error", className="error"),
    ])


def _when(ts) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def rows(alerts: list) -> list:
    return [{"id": a["id"], "opened": _when(a["created_at"]), "node": a.get("node_name") or "",
             "level": a["level"], "kind": a.get("kind") or "level", "status": a["status"],
             "resolved": _when(a.get("resolved_at")), "ack": a.get("acknowledged_by") or "",
             "message": a.get("message") or ""} for a in alerts]


def details(alert: dict | None) -> list:
    if alert is None:
        return ["Select an alert."]
    reasons = alert.get("reasons") or []
    return [html.Div([html.B(f"#{alert['id']} "),
                      html.Span(alert["level"], className=f"pill {alert['level']}"),
                      f" {alert.get('kind') or 'level'} · {alert['status']}"]),
            html.Div(alert.get("message") or ""),
            html.Ul([html.Li(r) for r in reasons]) if reasons else None,
            html.Div(f"opened {_when(alert['created_at'])}"
                     + (f", resolved {_when(alert['resolved_at'])}" if alert.get("resolved_at")
                        else "")),
            html.Div(f"acknowledged by {alert['acknowledged_by']}" if alert.get(
                "acknowledged_by") else "not acknowledged")]


def register(app):
    @app.callback(Output("al-table", "data"), Output("al-count", "children"),
                  Output("al-error", "children"),
                  Input("tick", "n_intervals"), Input("al-state", "value"),
                  Input("al-level", "value"), Input("al-kind", "value"),
                  Input("al-node", "value"), Input("al-window", "value"),
                  Input("al-msg", "children"))
    def refresh(_, state, level, kind, node, window, __):
        params = {"all": state != "active", "limit": LIMIT}
        for key, value in (("level", level), ("kind", kind), ("node", (node or "").strip())):
            if value:
                params[key] = value
        if window:
            params["since"] = window
        out, err = data.safe(data.call, "alert.list", params)
        if out is None:
            return [], "", err
        more = f" (the newest {LIMIT})" if len(out) >= LIMIT else ""
        return rows(out), f"{len(out)} alert{'' if len(out) == 1 else 's'}{more}", None

    @app.callback(Output("al-details", "children"), Output("al-ack", "disabled"),
                  Output("al-silence", "disabled"),
                  Input("al-table", "selected_rows"), Input("al-table", "data"))
    def select(selected, table):
        if not selected or not table or selected[0] >= len(table):
            return details(None), True, True
        alert_id = table[selected[0]]["id"]
        out, err = data.safe(data.call, "alert.list", {"all": True, "limit": LIMIT})
        alert = next((a for a in out or [] if a["id"] == alert_id), None)
        if alert is None:
            return err or details(None), True, True
        return (details(alert), bool(alert.get("acknowledged_by")) or alert["status"] != "active",
                not alert.get("node_name"))

    @app.callback(Output("al-msg", "children"),
                  Input("al-ack", "n_clicks"), Input("al-silence", "n_clicks"),
                  State("al-table", "selected_rows"), State("al-table", "data"),
                  State("al-silence-for", "value"), prevent_initial_call=True)
    def act(_ack, _silence, selected, table, duration):
        if not selected or not table or selected[0] >= len(table):
            return "select an alert first"
        row = table[selected[0]]
        if ctx.triggered_id == "al-ack":
            _, err = data.safe(data.ack, row["id"])
            return err or f"alert {row['id']} acknowledged"
        if not row["node"]:
            return "this alert names no node"
        out, err = data.safe(data.call, "silence.add", {
            "node": row["node"], "duration": duration,
            "comment": f"from alert {row['id']} on the Alerts page, by {data.who()}"})
        return err or f"node {row['node']} silenced for {duration} (silence {out['id']})"
