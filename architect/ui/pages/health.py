"""Health charts: CPU, memory, disk and load of one node over a chosen range, with the
warning and critical thresholds drawn, and the heartbeat age."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
from dash import Input, Output, dcc, html
from plotly.subplots import make_subplots

from architect.ui import data

PANELS = (("cpu_percent", "CPU %", "cpu"), ("memory_percent", "Memory %", "memory"),
          ("disk_percent", "Disk %", "disk"), ("load_1", "Load (1 min)", "load"))


def layout():
    return html.Div([
        html.Div(className="form", children=[
            html.Span("Node", className="muted"),
            dcc.Dropdown(id="health-node", style={"width": "260px"}, clearable=False),
            html.Span("Range", className="muted"),
            dcc.RadioItems(id="health-range", options=["15m", "1h", "24h", "7d"], value="1h",
                           inline=True),
            html.Span(id="health-age", className="muted")]),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            dcc.Graph(id="health-chart", config={"displayModeBar": False},
                      style={"height": "560px"})]),
        html.Div(id="health-error", className="error"),
    ])


def chart(m: dict) -> go.Figure:
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[1] for p in PANELS],
                        vertical_spacing=0.14)
    xs = [dt.datetime.fromtimestamp(p["ts"]) for p in m["series"]]
    for i, (key, title, th_key) in enumerate(PANELS):
        row, col = i // 2 + 1, i % 2 + 1
        fig.add_trace(go.Scatter(x=xs, y=[p[key] for p in m["series"]], mode="lines",
                                 name=title, line=dict(color="#2f6fdf", width=2),
                                 showlegend=False), row=row, col=col)
        th = m["thresholds"][th_key]
        for level in ("warning", "critical"):
            fig.add_hline(y=th[level], line=dict(color=data.COLORS[level], dash="dash", width=1),
                          annotation_text=f"{level} {th[level]:g}", annotation_font_size=10,
                          row=row, col=col)
        if key != "load_1":
            fig.update_yaxes(range=[0, 100], row=row, col=col)
    fig.update_layout(margin=dict(l=40, r=20, t=40, b=30), plot_bgcolor="#fff")
    fig.update_yaxes(gridcolor="#eef0f3")
    if not m["series"]:
        fig.add_annotation(text="no samples in this range yet", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    return fig


def register(app):
    @app.callback(Output("health-node", "options"), Output("health-node", "value"),
                  Input("tick", "n_intervals"), Input("health-node", "value"))
    def node_options(_, current):
        nodes, _err = data.safe(data.nodes, default=[])
        names = [n["name"] for n in nodes]
        return names, current if current in names else (names[0] if names else None)

    @app.callback(Output("health-chart", "figure"), Output("health-age", "children"),
                  Output("health-error", "children"),
                  Input("health-node", "value"), Input("health-range", "value"),
                  Input("tick", "n_intervals"))
    def refresh(node, span, _):
        if not node:
            return go.Figure(), "", "no nodes yet"
        m, err = data.safe(data.metrics, node, span or "1h")
        if m is None:
            return go.Figure(), "", err
        age = m["heartbeat_age"]
        text = [html.Span(m["status"], className=f"pill {m['status']}"),
                f"  last heartbeat {age:.0f}s ago" if age is not None else "  no heartbeat yet"]
        return chart(m), text, None
