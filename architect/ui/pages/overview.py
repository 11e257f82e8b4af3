"""Overview: cluster figures; the nodes, problem nodes first, each with its level, reasons
and CPU / memory sparklines; throughput; active alerts with acknowledge buttons."""

from __future__ import annotations

import time
from urllib.parse import quote

import plotly.graph_objects as go
from dash import ALL, Input, Output, ctx, dcc, html

from architect.ui import data


def layout():
    return html.Div([
        html.Div(id="ov-cards", className="grid"),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            html.H3("Nodes, problems first"), html.Div(id="ov-nodes")]),
        html.Div(className="row", children=[
            html.Div(className="card", children=[
                html.H3("Tasks finished per minute (last 15 min)"),
                dcc.Graph(id="ov-throughput", config={"displayModeBar": False},
                          style={"height": "260px"})]),
            html.Div(className="card", children=[
                html.H3("Active alerts"), html.Div(id="ov-ack-msg", className="muted"),
                html.Div(id="ov-alerts")]),
        ]),
        html.Div(id="ov-error", className="error"),
    ])


def card(title, value, extra=None, color=None, cid=None):
    return html.Div(className="card", id=cid or f"card-{title.lower().replace(' ', '-')}",
                    children=[html.H3(title), html.Div(className="figure", style={"color": color},
                                                       children=[str(value), html.Small(extra)
                                                                 if extra else None])])


def cards(s: dict) -> list:
    n, t, w = s["nodes"], s["tasks"], s["workers"]
    out = [card(level.capitalize(), n.get(level, 0), color=data.COLORS[level], cid=f"card-{level}")
           for level in data.LEVELS]
    out += [card("Running", t.get("running", 0) + t.get("assigned", 0), cid="card-running"),
            card("Queued", s["queue_depth"], cid="card-queued"),
            card("Succeeded", t.get("succeeded", 0), color=data.COLORS["succeeded"],
                 cid="card-succeeded"),
            card("Failed", t.get("failed", 0) + t.get("timed_out", 0), color=data.COLORS["failed"],
                 cid="card-failed"),
            card("Workers", w["connected"], f"{w['busy']}/{w['slots']} slots busy",
                 cid="card-workers"),
            card("Alerts", s["alerts"]["active"], color=data.COLORS["critical"]
                 if s["alerts"]["active"] else None, cid="card-alerts")]
    m = data.master()
    if m.get("ha"):   # several masters: which one this page comes from
        leader = m.get("leader") or {}
        out.append(card("This master", m["role"], f"epoch {m['epoch']}" if m["role"] == "active"
                        else f"forwarding to {leader.get('holder') or 'nobody yet'}",
                        color=data.COLORS["healthy"] if m["role"] == "active" else None,
                        cid="card-master"))
    return out


def throughput(series: list) -> go.Figure:
    now = time.time()
    labels = [time.strftime("%H:%M", time.localtime(now - (14 - i) * 60)) for i in range(15)]
    fig = go.Figure(go.Bar(x=labels, y=series, marker_color=data.COLORS["running"]))
    fig.update_layout(margin=dict(l=30, r=10, t=10, b=30), plot_bgcolor="#fff",
                      yaxis=dict(gridcolor="#eef0f3", rangemode="tozero"))
    return fig


def alert_rows(alerts: list) -> list:
    if not alerts:
        return [html.Div("No active alerts.", className="muted")]
    rows = []
    for a in alerts:
        acked = a.get("acknowledged_by")
        rows.append(html.Div(className="alert-row", id=f"alert-{a['id']}", children=[
            html.Span(a["level"], className=f"pill {a['level']}"),
            html.Span(a["message"], className="msg"),
            html.Span(f"ack by {acked}", className="muted") if acked else
            html.Button("Acknowledge", id={"type": "ack", "id": a["id"]}, className="secondary",
                        style=data.shown("operator"))]))
    return rows


SPARK_W, SPARK_H = 120, 26


def sparkline(values: list, color: str, label: str) -> html.Img:
    """An inline SVG polyline of 0-100 % values (gaps skipped), as a data: image (the CSP
    allows img-src data:); its title is the latest value."""
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    n = max(len(values) - 1, 1)
    coords = " ".join(f"{i * SPARK_W / n:.1f},{SPARK_H - 1 - min(max(v, 0), 100) * (SPARK_H - 2) / 100:.1f}"
                      for i, v in pts)
    if len(pts) == 1:   # one sample: a dot
        x, y = coords.split(",")
        shape = f'<circle cx="{x}" cy="{y}" r="2" fill="{color}"/>'
    else:
        shape = (f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                 f'points="{coords}"/>') if pts else ""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{SPARK_W}" height="{SPARK_H}">'
           f'<rect width="100%" height="100%" fill="none" stroke="{data.COLORS["offline"]}" '
           f'stroke-opacity="0.25"/>{shape}</svg>')
    latest = f"{pts[-1][1]:.0f}%" if pts else "no data yet"
    return html.Img(src="data:image/svg+xml;utf8," + quote(svg), title=f"{label}: {latest}",
                    className="spark", alt=f"{label} {latest}")


def node_rows(view: dict | None) -> list:
    if not view or not view["nodes"]:
        return [html.Div("No nodes yet: start an agent with `architect agent` on a worker "
                         "machine.", className="muted", id="ov-nodes-empty")]
    rows = []
    for n in view["nodes"]:
        cpu, mem = n.get("cpu_percent"), n.get("memory_percent")
        reasons = "; ".join(n["reasons"]) if n["reasons"] else "all metrics within thresholds"
        if n["drained"]:
            reasons += " (drained)"
        rows.append(html.Div(className="node-row", id=f"ov-node-{n['name']}", children=[
            html.Span(n["status"], className=f"pill {n['status']}"),
            html.A(n["name"], href=f"/health?node={quote(n['name'])}", className="name"),
            html.Span(reasons, className="reasons muted" if n["status"] == "healthy"
                      else "reasons"),
            html.Span([html.Small("CPU "), f"{cpu:.0f}%" if cpu is not None else "-"],
                      className="metric"),
            sparkline(n["cpu"], data.COLORS["running"], "CPU"),
            html.Span([html.Small("mem "), f"{mem:.0f}%" if mem is not None else "-"],
                      className="metric"),
            sparkline(n["memory"], data.COLORS["master"], "memory")]))
    if view["total"] > view["shown"]:
        rows.append(html.A(f"and {view['total'] - view['shown']} more healthy or listed "
                           "later: all nodes", href="/nodes", className="muted"))
    return rows


def register(app):
    @app.callback(Output("ov-cards", "children"), Output("ov-throughput", "figure"),
                  Output("ov-alerts", "children"), Output("ov-nodes", "children"),
                  Output("ov-error", "children"),
                  Input("tick", "n_intervals"), Input("ov-ack-msg", "children"))
    def refresh(_, __):
        s, err = data.safe(data.summary)
        alerts, err2 = data.safe(data.alerts, default=[])
        view, err3 = data.safe(data.nodes_overview)
        if s is None:
            return [], go.Figure(), alert_rows(alerts), node_rows(view), err
        return (cards(s), throughput(s["throughput_per_minute"]), alert_rows(alerts),
                node_rows(view), err2 or err3)

    @app.callback(Output("ov-ack-msg", "children"),
                  Input({"type": "ack", "id": ALL}, "n_clicks"), prevent_initial_call=True)
    def acknowledge(clicks):
        if not ctx.triggered_id or not any(clicks):
            return ""
        alert_id = ctx.triggered_id["id"]
        _, err = data.safe(data.ack, alert_id)
        return err or f"alert {alert_id} acknowledged"
