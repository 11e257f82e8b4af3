"""Task flow: a Sankey of submitted → node → outcome, and a task stream per node."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from architect.ui import data

WINDOWS = {"15 min": 900, "1 hour": 3600, "24 hours": 86400}


def layout():
    return html.Div([
        html.Div(className="form", children=[
            html.Span("Window", className="muted"),
            dcc.RadioItems(id="flow-window", options=list(WINDOWS), value="1 hour", inline=True)]),
        html.Div(className="row", children=[
            html.Div(className="card", children=[
                html.H3("Where tasks went"),
                dcc.Graph(id="flow-sankey", config={"displayModeBar": False},
                          style={"height": "380px"})])]),
        html.Div(className="row", children=[
            html.Div(className="card", children=[
                html.H3("Task stream per node (recent)"),
                dcc.Graph(id="flow-stream", config={"displayModeBar": False},
                          style={"height": "340px"})])]),
        html.Div(id="flow-error", className="error"),
    ])


def sankey(flow: dict) -> go.Figure:
    labels = []
    index = {}
    for link in flow["links"]:
        for name in (link["source"], link["target"]):
            if name not in index:
                index[name] = len(labels)
                labels.append(name)
    colors = [data.COLORS.get(name, "#6f8fd8") for name in labels]
    fig = go.Figure(go.Sankey(
        node=dict(label=labels, color=colors, pad=18, thickness=16),
        link=dict(source=[index[l["source"]] for l in flow["links"]],
                  target=[index[l["target"]] for l in flow["links"]],
                  value=[l["value"] for l in flow["links"]],
                  color=["rgba(47,111,223,0.25)"] * len(flow["links"]))))
    if not flow["links"]:
        fig.add_annotation(text="no tasks in this window", showarrow=False)
    fig.update_layout(margin=dict(l=10, r=10, t=10, b=10))
    return fig


def stream(spans: list, window: float = 900, now: float | None = None) -> go.Figure:
    """Task spans per node. The x-axis is the window (now - window .. now), whatever the
    spans cover, and a span is at least 1/300 of it wide (a 5 ms task stays visible)."""
    import time
    fig = go.Figure()
    now_ts = time.time() if now is None else now
    now = dt.datetime.fromtimestamp(now_ts)
    least_ms = window * 1000 / 300
    by_state: dict[str, list] = {}
    for s in spans:
        by_state.setdefault(s["status"], []).append(s)
    for state, items in by_state.items():
        starts = [dt.datetime.fromtimestamp(s["started_at"]) for s in items]
        ends = [dt.datetime.fromtimestamp(s["finished_at"]) if s["finished_at"] else now
                for s in items]
        fig.add_trace(go.Bar(
            y=[s["assigned_node"] or "?" for s in items], base=starts,
            x=[max((e - b).total_seconds() * 1000, least_ms) for b, e in zip(starts, ends)],
            orientation="h", name=state, width=0.5, marker_color=data.COLORS.get(state, "#999"),
            hovertext=[f"task {s['id']} ({s['task_type']}) {state}" for s in items]))
    fig.update_layout(barmode="overlay", margin=dict(l=10, r=10, t=10, b=30),
                      xaxis=dict(type="date", range=[dt.datetime.fromtimestamp(now_ts - window), now]),
                      plot_bgcolor="#fff", legend=dict(orientation="h"))
    if not spans:
        fig.add_annotation(text="no recent tasks", showarrow=False, xref="paper", yref="paper",
                           x=0.5, y=0.5, font=dict(size=16, color="#8a8f98"))
    return fig


def register(app):
    @app.callback(Output("flow-sankey", "figure"), Output("flow-stream", "figure"),
                  Output("flow-error", "children"),
                  Input("tick", "n_intervals"), Input("flow-window", "value"))
    def refresh(_, window):
        seconds = WINDOWS.get(window, 3600)
        flow, err = data.safe(data.flow, seconds)
        spans, err2 = data.safe(data.timeline, min(seconds, 3600), 400, default=[])
        return ((sankey(flow) if flow else go.Figure()), stream(spans, min(seconds, 3600)),
                err or err2)
