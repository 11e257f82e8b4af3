"""Notifications: channels, rules, silences and the latest delivery attempts (sent, failed
and why, silenced). Operators add and end silences and put nodes in maintenance; admins add
and remove channels and rules and send test messages. The broker owns all of it (notify.*,
silence.*, node.maintenance) and checks each role; a form here is only hidden from a role
that may not use it."""

from __future__ import annotations

import time

from dash import Input, Output, State, ctx, dash_table, dcc, html, no_update

from architect.ui import data

DELIVERIES = 50
CHANNEL_COLUMNS = [("name", "Name"), ("kind", "Kind"), ("where", "Where"),
                   ("created_by", "Added by")]
RULE_COLUMNS = [("name", "Name"), ("channels", "Channels"), ("min_level", "Least level"),
                ("node", "Nodes"), ("match", "Labels"), ("repeat", "Repeat"),
                ("resolved", "Resolved notice")]
SILENCE_COLUMNS = [("id", "Id"), ("kind", "Kind"), ("what", "Mutes"), ("state", "State"),
                   ("until", "Until"), ("created_by", "By"), ("comment", "Comment")]
DELIVERY_COLUMNS = [("at", "When"), ("channel", "Channel"), ("event", "Event"),
                    ("node", "Node"), ("alert_id", "Alert"), ("attempt", "Try"),
                    ("outcome", "Outcome"), ("why", "Detail"), ("retry", "Retry at")]
OUTCOME_COLOURS = {"sent": "#2e9d5b", "failed": "#d64545", "silenced": "#8a8f98"}


def table(table_id: str, columns, **extra):
    return dash_table.DataTable(
        id=table_id, columns=[{"id": c, "name": n} for c, n in columns], data=[],
        page_action="none", sort_action="native",
        style_cell={"fontFamily": "inherit", "fontSize": 13, "padding": "4px 8px",
                    "textAlign": "left", "maxWidth": 380, "overflow": "hidden",
                    "textOverflow": "ellipsis"},
        style_header={"fontWeight": 600, "background": "#f0f2f5"}, **extra)


def card(title: str, *children, **kw):
    return html.Div(className="card", style={"marginTop": "12px"},
                    children=[html.H3(title), *children], **kw)


def layout():
    return html.Div([
        html.Div(id="notify-status", className="muted"),
        html.Div(id="notify-ops", className="row", style=data.shown("operator"), children=[
            html.Div(className="card", children=[
                html.H3("Add a silence"),
                html.Div(className="form", children=[
                    dcc.Input(id="silence-node", placeholder="node glob, e.g. web-*",
                              style={"width": "170px"}),
                    dcc.Input(id="silence-match", placeholder="labels: alertname=Node*",
                              style={"width": "190px"}),
                    dcc.Input(id="silence-for", value="1h", placeholder="for: 30m, 2h, 1d",
                              style={"width": "90px"}),
                    dcc.Input(id="silence-comment", placeholder="why (required)",
                              style={"width": "220px"}),
                    html.Button("Silence", id="silence-add"),
                    html.Span(id="silence-msg", className="muted")]),
                html.Div(className="form", style={"marginTop": "8px"}, children=[
                    dcc.Input(id="silence-id", type="number", min=1, step=1,
                              placeholder="silence id", style={"width": "150px"}),
                    html.Button("End silence", id="silence-end", className="secondary")])]),
            html.Div(className="card", children=[
                html.H3("Maintenance"),
                html.Div(className="form", children=[
                    dcc.Input(id="maint-node", placeholder="node", style={"width": "170px"}),
                    dcc.Input(id="maint-for", placeholder="for (until off)",
                              style={"width": "120px"}),
                    html.Button("Start", id="maint-on"),
                    html.Button("End", id="maint-off", className="secondary"),
                    html.Span(id="maint-msg", className="muted")]),
                html.Div("Start drains the node and silences its notifications; End undoes "
                         "both.", className="muted", style={"marginTop": "6px",
                                                            "fontSize": "12px"})])]),
        html.Div(id="notify-admin", className="row", style=data.shown("admin", {
            "marginTop": "12px"}), children=[
            html.Div(className="card", children=[
                html.H3("Add a channel"),
                html.Div(className="form", children=[
                    dcc.Input(id="chan-name", placeholder="name", style={"width": "120px"}),
                    dcc.Dropdown(id="chan-kind", options=["webhook", "email", "apprise"],
                                 value="webhook", clearable=False, style={"width": "120px"}),
                    dcc.Input(id="chan-url", placeholder="URL (webhook, apprise)",
                              style={"width": "240px"}),
                    dcc.Input(id="chan-host", placeholder="SMTP host:port",
                              style={"width": "150px"}),
                    dcc.Input(id="chan-from", placeholder="from", style={"width": "140px"}),
                    dcc.Input(id="chan-to", placeholder="to (comma-separated)",
                              style={"width": "180px"}),
                    html.Button("Add", id="chan-add"),
                    html.Button("Test", id="chan-test", className="secondary"),
                    html.Button("Remove", id="chan-remove", className="secondary"),
                    html.Span(id="chan-msg", className="muted")])]),
            html.Div(className="card", children=[
                html.H3("Add a rule"),
                html.Div(className="form", children=[
                    dcc.Input(id="rule-name", placeholder="name", style={"width": "120px"}),
                    dcc.Input(id="rule-channels", placeholder="channels (comma-separated)",
                              style={"width": "190px"}),
                    dcc.Dropdown(id="rule-level", options=["warning", "critical"],
                                 value="warning", clearable=False, style={"width": "120px"}),
                    dcc.Input(id="rule-node", placeholder="node glob (*)",
                              style={"width": "120px"}),
                    dcc.Input(id="rule-repeat", placeholder="repeat: 1h",
                              style={"width": "90px"}),
                    dcc.Checklist(id="rule-resolved", options=["resolved notice"],
                                  value=["resolved notice"]),
                    html.Button("Add", id="rule-add"),
                    html.Button("Remove", id="rule-remove", className="secondary"),
                    html.Span(id="rule-msg", className="muted")])])]),
        card("Silences", table("silences-table", SILENCE_COLUMNS)),
        card(f"Latest {DELIVERIES} deliveries", table(
            "deliveries-table", DELIVERY_COLUMNS, style_data_conditional=[
                {"if": {"filter_query": f'{{outcome}} = "{o}"', "column_id": "outcome"},
                 "color": c, "fontWeight": 600} for o, c in OUTCOME_COLOURS.items()])),
        html.Div(className="row", style={"marginTop": "12px"}, children=[
            html.Div(className="card", children=[html.H3("Channels"),
                                                 table("channels-table", CHANNEL_COLUMNS)]),
            html.Div(className="card", children=[html.H3("Rules"),
                                                 table("rules-table", RULE_COLUMNS)])]),
        html.Div(id="notify-error", className="error"),
    ])


# --- formatting ----------------------------------------------------------------------------

def utc(ts) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else ""


def where(ch: dict) -> str:
    cfg = ch["config"]
    if ch["kind"] == "email":
        return f"{', '.join(cfg.get('to', []))} via {cfg.get('host')}:{cfg.get('port')}"
    return cfg.get("url", "")


def mutes(s: dict) -> str:
    return ", ".join(([f"node {s['node']}"] if s.get("node") else [])
                     + [f"{k}={v}" for k, v in (s.get("match") or {}).items()])


def silence_rows(rows) -> list:
    return [{"id": s["id"], "kind": s["kind"], "what": mutes(s), "state": s["state"],
             "until": utc(s["ends_at"]) or "turned off", "created_by": s["created_by"],
             "comment": s["comment"]} for s in rows]


def delivery_rows(rows) -> list:
    return [{**r, "at": utc(r["at"]), "why": r["error"] or r["detail"] or "",
             "retry": utc(r["retry_at"])} for r in rows]


def rule_rows(rows) -> list:
    return [{"name": r["name"], "channels": ", ".join(r["channels"]),
             "min_level": r["min_level"], "node": r["node"],
             "match": ", ".join(f"{k}={v}" for k, v in r["match"].items()),
             "repeat": span(r["repeat_interval"]) if r["repeat_interval"] else "never",
             "resolved": "yes" if r["send_resolved"] else "no"} for r in rows]


def span(seconds: float) -> str:
    """14400 → '4 h', 90 → '90 s'."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def status_text(s: dict) -> str:
    return (f"{count(s['channels'], 'channel')} · {count(s['rules'], 'rule')} · "
            f"{count(s['silences'], 'active silence')} · {count(s['firing'], 'alert')} firing"
            f" · delivery queue {s['queued']}, in flight {s['in_flight']}, waiting to retry "
            f"{s['retrying']}")


def labels(text: str) -> dict:
    out = {}
    for part in (text or "").split(","):
        if part.strip():
            key, sep, value = part.strip().partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"{part.strip()!r}: use label=glob")
            out[key.strip()] = value.strip()
    return out


def error(message: str):
    return html.Span(message, className="error")


def answer(method: str, params: dict, ok):
    out, err = data.safe(data.call, method, params)
    return error(err) if err else ok(out)


# --- callbacks -----------------------------------------------------------------------------

def register(app):
    @app.callback(Output("notify-status", "children"), Output("silences-table", "data"),
                  Output("deliveries-table", "data"), Output("channels-table", "data"),
                  Output("rules-table", "data"), Output("notify-error", "children"),
                  Input("tick", "n_intervals"), Input("silence-msg", "children"),
                  Input("maint-msg", "children"), Input("chan-msg", "children"),
                  Input("rule-msg", "children"))
    def refresh(*_):
        try:
            status = data.call("notify.status")
            silences = data.call("silence.list", {"all": True})[:100]
            deliveries = data.call("notify.deliveries", {"limit": DELIVERIES})
            channels = data.call("notify.channels")
            rules = data.call("notify.rules")
        except data.ApiError as exc:
            return (no_update,) * 5 + (exc.message,)
        return (status_text(status), silence_rows(silences), delivery_rows(deliveries),
                [{**c, "where": where(c)} for c in channels], rule_rows(rules), None)

    @app.callback(Output("silence-msg", "children"),
                  Input("silence-add", "n_clicks"), Input("silence-end", "n_clicks"),
                  State("silence-node", "value"), State("silence-match", "value"),
                  State("silence-for", "value"), State("silence-comment", "value"),
                  State("silence-id", "value"), prevent_initial_call=True)
    def silence(_, __, node, match, span, comment, silence_id):
        if ctx.triggered_id == "silence-end":
            if not silence_id:
                return error("give the silence's id")
            return answer("silence.remove", {"id": int(silence_id)},
                          lambda s: f"silence {s['id']} ended")
        try:
            params = {"match": labels(match), "duration": (span or "1h").strip(),
                      "comment": (comment or "").strip()}
        except ValueError as exc:
            return error(str(exc))
        if (node or "").strip():
            params["node"] = node.strip()
        return answer("silence.add", params,
                      lambda s: f"silence {s['id']}: {mutes(s)} until {utc(s['ends_at'])}")

    @app.callback(Output("maint-msg", "children"),
                  Input("maint-on", "n_clicks"), Input("maint-off", "n_clicks"),
                  State("maint-node", "value"), State("maint-for", "value"),
                  prevent_initial_call=True)
    def maintenance(_, __, node, span):
        node = (node or "").strip()
        if not node:
            return error("name a node first")
        on = ctx.triggered_id == "maint-on"
        params = {"node": node, "on": on}
        if on and (span or "").strip():
            params["duration"] = span.strip()
        return answer("node.maintenance", params, lambda m: f"{m['node']}: " + (
            "in maintenance (drained, silenced)" if m["maintenance"]
            else "maintenance over (undrained)"))

    @app.callback(Output("chan-msg", "children"),
                  Input("chan-add", "n_clicks"), Input("chan-test", "n_clicks"),
                  Input("chan-remove", "n_clicks"),
                  State("chan-name", "value"), State("chan-kind", "value"),
                  State("chan-url", "value"), State("chan-host", "value"),
                  State("chan-from", "value"), State("chan-to", "value"),
                  prevent_initial_call=True)
    def channel(_, __, ___, name, kind, url, host, sender, to):
        name = (name or "").strip()
        if not name:
            return error("name the channel first")
        if ctx.triggered_id == "chan-test":
            return answer("notify.channel.test", {"name": name},
                          lambda t: f"test message {t['delivery']} queued: see deliveries")
        if ctx.triggered_id == "chan-remove":
            return answer("notify.channel.remove", {"name": name},
                          lambda r: f"channel {name} removed")
        params = {"name": name, "kind": kind}
        if kind == "email":
            h, _, port = (host or "").strip().partition(":")
            params.update({"host": h, "from": (sender or "").strip(),
                           "to": [t.strip() for t in (to or "").split(",") if t.strip()]})
            if port:
                if not port.isdigit():
                    return error("SMTP host:port: the port must be a number")
                params["port"] = int(port)
        else:
            params["url"] = (url or "").strip()
        return answer("notify.channel.add", params,
                      lambda c: f"channel {c['name']} ({c['kind']}) added")

    @app.callback(Output("rule-msg", "children"),
                  Input("rule-add", "n_clicks"), Input("rule-remove", "n_clicks"),
                  State("rule-name", "value"), State("rule-channels", "value"),
                  State("rule-level", "value"), State("rule-node", "value"),
                  State("rule-repeat", "value"), State("rule-resolved", "value"),
                  prevent_initial_call=True)
    def rule(_, __, name, channels, level, node, repeat, resolved):
        name = (name or "").strip()
        if not name:
            return error("name the rule first")
        if ctx.triggered_id == "rule-remove":
            return answer("notify.rule.remove", {"name": name}, lambda r: f"rule {name} removed")
        params = {"name": name, "min_level": level,
                  "channels": [c.strip() for c in (channels or "").split(",") if c.strip()],
                  "node": (node or "").strip() or "*", "send_resolved": bool(resolved),
                  "repeat_interval": (repeat or "").strip() or 0}
        return answer("notify.rule.add", params, lambda r: f"rule {r['name']} added")
