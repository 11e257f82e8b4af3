"""Health charts: CPU, memory, disk and load of one node over a chosen range, with the
warning and critical thresholds drawn, and the heartbeat age.

The x-axis is always the chosen window (now - range .. now), whatever the samples: a node
with three samples shows three markers in an hour, not an axis a few milliseconds wide.
Sparse series (< SPARSE points) are drawn with markers; an empty one says "no data yet".
Rolled-up resolutions (1-minute, 1-hour: rollup.py) draw each bucket's min-max as a band
behind its average. `/health?node=NAME&range=24h` opens a node and range directly.
"""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import parse_qs

import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from plotly.subplots import make_subplots

from architect.ui import data

PANELS = (("cpu_percent", "CPU %", "cpu"), ("memory_percent", "Memory %", "memory"),
          ("disk_percent", "Disk %", "disk"), ("load_1", "Load (1 min)", "load"))
RANGES = ("15m", "1h", "24h", "7d", "30d")
SECONDS = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
SPARSE = 30          # fewer points than this: lines and markers
NO_DATA = "no data yet"
RESOLUTION_TEXT = {"raw": "raw samples", "1m": "1-minute roll-up (band: min-max)",
                   "1h": "1-hour roll-up (band: min-max)"}
LINE = "#2f6fdf"
BAND = "rgba(47,111,223,0.16)"


def layout():
    return html.Div([
        html.Div(className="form", children=[
            html.Span("Node", className="muted"),
            dcc.Dropdown(id="health-node", style={"width": "260px"}, clearable=False),
            html.Span("Range", className="muted"),
            dcc.RadioItems(id="health-range", options=list(RANGES), value="1h", inline=True),
            html.Span(id="health-age", className="muted"),
            html.Span(id="health-resolution", className="muted")]),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            dcc.Graph(id="health-chart", config={"displayModeBar": False},
                      style={"height": "560px"})]),
        html.Div(id="health-error", className="error"),
    ])


def _query(search: str | None) -> dict:
    return {k: v[0] for k, v in parse_qs((search or "").lstrip("?")).items() if v}


def _when(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts)


def _with_gaps(series: list, key: str, gap: float) -> tuple[list, list]:
    """x and y with a break (None) where samples are further apart than `gap` seconds (a
    node that was off), so the line does not bridge the hole."""
    xs, ys, last = [], [], None
    for p in series:
        if last is not None and p["ts"] - last > gap:
            xs.append(_when(last + gap / 2))
            ys.append(None)
        xs.append(_when(p["ts"]))
        ys.append(p.get(key))
        last = p["ts"]
    return xs, ys


def chart(m: dict, now: float | None = None) -> go.Figure:
    """The four panels of one node.metrics answer (views.node_metrics)."""
    now = m.get("until") or (time.time() if now is None else now)
    since = m.get("since") or now - SECONDS.get(m.get("range"), 3600)
    series = m["series"]
    resolution = m.get("resolution", "raw")
    bucket = float(m.get("bucket") or 0) or (now - since) / 300
    gap = max(3 * bucket, 3 * 60 if resolution == "raw" else 0, 2 * bucket + 60)
    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[1] for p in PANELS],
                        vertical_spacing=0.14)
    mode = "lines+markers" if len(series) < SPARSE else "lines"
    for i, (key, title, th_key) in enumerate(PANELS):
        row, col = i // 2 + 1, i % 2 + 1
        if resolution != "raw" and series:   # the min-max band under the average
            xs, lows = _with_gaps(series, f"{key}_min", gap)
            _, highs = _with_gaps(series, f"{key}_max", gap)
            fig.add_trace(go.Scatter(x=xs, y=lows, mode="lines", line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, name=f"{title} min"),
                          row=row, col=col)
            fig.add_trace(go.Scatter(x=xs, y=highs, mode="lines", line=dict(width=0),
                                     fill="tonexty", fillcolor=BAND, hoverinfo="skip",
                                     showlegend=False, name=f"{title} max"), row=row, col=col)
        xs, ys = _with_gaps(series, key, gap)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode=mode, name=title,
                                 line=dict(color=LINE, width=2), marker=dict(size=6),
                                 connectgaps=False, showlegend=False), row=row, col=col)
        th = m["thresholds"][th_key]
        for level in ("warning", "critical"):
            fig.add_hline(y=th[level], line=dict(color=data.COLORS[level], dash="dash", width=1),
                          annotation_text=f"{level} {th[level]:g}", annotation_font_size=10,
                          row=row, col=col)
        fig.update_xaxes(range=[_when(since), _when(now)], type="date", row=row, col=col)
        if key != "load_1":
            fig.update_yaxes(range=[0, 100], row=row, col=col)
        else:
            top = max([th["critical"], *[p.get("load_1_max") or p.get("load_1") or 0
                                         for p in series]])
            fig.update_yaxes(range=[0, top * 1.1], row=row, col=col)
        if not series:
            axis = "" if i == 0 else str(i + 1)
            fig.add_annotation(text=NO_DATA, showarrow=False, font=dict(size=16, color="#8a8f98"),
                               xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5, y=0.5)
    fig.update_layout(margin=dict(l=40, r=20, t=40, b=30), plot_bgcolor="#fff")
    fig.update_yaxes(gridcolor="#eef0f3")
    return fig


def register(app):
    @app.callback(Output("health-node", "options"), Output("health-node", "value"),
                  Input("tick", "n_intervals"), Input("health-node", "value"),
                  State("url", "search"))
    def node_options(_, current, search):
        nodes, _err = data.safe(data.nodes, default=[])
        names = [n["name"] for n in nodes]
        if current in names:
            return names, current
        wanted = _query(search).get("node")
        return names, wanted if wanted in names else (names[0] if names else None)

    @app.callback(Output("health-range", "value"), Input("url", "search"))
    def range_from_url(search):
        wanted = _query(search).get("range")
        return wanted if wanted in RANGES else "1h"

    @app.callback(Output("health-chart", "figure"), Output("health-age", "children"),
                  Output("health-resolution", "children"), Output("health-error", "children"),
                  Input("health-node", "value"), Input("health-range", "value"),
                  Input("tick", "n_intervals"))
    def refresh(node, span, _):
        if not node:
            return go.Figure(), "", "", "no nodes yet"
        m, err = data.safe(data.metrics, node, span or "1h")
        if m is None:
            return go.Figure(), "", "", err
        age = m["heartbeat_age"]
        text = [html.Span(m["status"], className=f"pill {m['status']}"),
                f"  last heartbeat {age:.0f}s ago" if age is not None else "  no heartbeat yet"]
        points = len(m["series"])
        shown = (f"  · {RESOLUTION_TEXT.get(m.get('resolution'), 'raw samples')}, "
                 f"{points} point{'s' if points != 1 else ''}")
        return chart(m), text, shown, None
