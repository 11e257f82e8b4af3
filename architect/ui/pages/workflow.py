"""Workflow: the DAG of tasks one task is part of (task.graph), left to right, each task
coloured by its state and refreshed on the live tick; click a task for its details.
Opened as /workflow?id=N (the tasks page links here) or by typing a task id."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs

import dash_cytoscape as cyto
from dash import Input, Output, State, dcc, html, no_update

from architect.ui import data

try:  # dagre comes in dash-cytoscape's extra bundle, served instead of the plain one
    cyto.load_extra_layouts()
    LAYOUT = {"name": "dagre", "rankDir": "LR", "nodeSep": 50, "rankSep": 120,
              "animate": False, "fit": True, "padding": 24}
except AttributeError:  # an older dash-cytoscape: breadthfirst, top to bottom
    LAYOUT = {"name": "breadthfirst", "directed": True, "spacingFactor": 1.2,
              "animate": False, "fit": True, "padding": 24}

STYLE = [
    {"selector": "node", "style": {"label": "data(label)", "color": "#1d2330", "font-size": 11,
                                   "text-valign": "bottom", "text-halign": "center",
                                   "text-margin-y": 5, "text-wrap": "wrap",
                                   "text-max-width": 150, "min-zoomed-font-size": 6,
                                   "shape": "round-rectangle", "width": 34, "height": 22,
                                   "background-color": "data(color)"}},
    {"selector": "node:selected", "style": {"border-width": 3, "border-color": "#1d2330"}},
    {"selector": ".root", "style": {"border-width": 2, "border-style": "dashed",
                                    "border-color": "#1d2330"}},
    {"selector": "edge", "style": {"width": 1.5, "line-color": "#9aa5b8", "curve-style": "bezier",
                                   "target-arrow-shape": "triangle",
                                   "target-arrow-color": "#9aa5b8", "arrow-scale": 0.9}},
]
PROMPT = "Enter a task id to see the workflow it is part of."
CLICK = "Click a task for its details."
RESULT_CHARS = 400


def task_id_from(search: str | None) -> int | None:
    """?id=N → N (None when missing or not a number)."""
    value = (parse_qs((search or "").lstrip("?")).get("id") or [""])[0]
    return int(value) if value.isdigit() else None


def short(label: str) -> str:
    """'#5 architect.agent.builtin_tasks:add' → '#5 builtin_tasks:add'."""
    head, _, what = label.partition(" ")
    module, colon, name = what.partition(":")
    if colon and "." in module and " " not in module:
        what = f"{module.rsplit('.', 1)[1]}:{name}"
    return f"{head} {what}".strip()


def elements(graph: dict, root: int) -> list:
    """task.graph → cytoscape elements (string ids: cytoscape wants them)."""
    out = [{"data": {"id": str(n["id"]), "label": f"{short(n['label'])}\n{n['status'] or '?'}",
                     "status": n["status"], "color": data.COLORS.get(n["status"], "#8a8f98")},
            "classes": "root" if n["id"] == root else ""} for n in graph["nodes"]]
    out += [{"data": {"id": f"{e['source']}-{e['target']}", "source": str(e["source"]),
                      "target": str(e["target"])}} for e in graph["edges"]]
    return out


def summary(graph: dict, root: int) -> list:
    """'task 7's workflow: 4 tasks, 3 dependencies · 4 succeeded' (+ truncated)."""
    counts: dict = {}
    for n in graph["nodes"]:
        counts[n["status"]] = counts.get(n["status"], 0) + 1
    states = [html.Span(f"{k} {v}", className="pill", style={
        "background": data.COLORS.get(k, "#8a8f98"), "marginLeft": "6px"})
        for k, v in sorted(counts.items(), key=lambda kv: str(kv[0]))]
    edges = len(graph["edges"])
    out = [html.Span(f"task {root}'s workflow: {len(graph['nodes'])} tasks, {edges} "
                     f"dependenc{'y' if edges == 1 else 'ies'}"), *states]
    if graph.get("truncated"):
        out.append(html.Div(f"truncated: only the first {len(graph['nodes'])} tasks are shown",
                            className="error", id="wf-truncated"))
    return out


def layout():
    return html.Div([
        html.Div(className="form", children=[
            dcc.Input(id="wf-id", type="number", min=1, step=1, placeholder="task id",
                      debounce=True, style={"width": "140px"}),
            html.Span(id="wf-msg", className="muted", children=PROMPT)]),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            html.H3("Workflow"),
            cyto.Cytoscape(id="wf-graph", layout=LAYOUT, elements=[], stylesheet=STYLE,
                           style={"width": "100%", "height": "460px"}, minZoom=0.1, maxZoom=1.3,
                           userZoomingEnabled=True)]),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            html.H3("Task"), html.Div(id="wf-details", className="muted", children=CLICK)]),
        # what the graph shows: its task ids and a digest (not the elements: the browser
        # would post them all back on every tick)
        dcc.Store(id="wf-shown", data={"digest": None, "ids": []}),
    ])


def shown(new: list) -> dict:
    return {"digest": hashlib.sha1(json.dumps(new, sort_keys=True).encode()).hexdigest(),
            "ids": [e["data"]["id"] for e in new if "source" not in e["data"]]}


def result_text(r: dict) -> str:
    if r.get("result") is not None:
        text = json.dumps(r["result"])
    else:
        text = (r.get("stdout") or "") + (r.get("stderr") or "")
    return text if len(text) <= RESULT_CHARS else text[:RESULT_CHARS] + "…"


def details(t: dict) -> list:
    r = t.get("result") or {}
    p = t.get("payload") or {}
    what = p.get("function") or p.get("command") or " ".join(p.get("argv") or [])
    took = (f", took {t['finished_at'] - t['started_at']:.2f}s"
            if t.get("finished_at") and t.get("started_at") else "")
    out = [html.Div([html.B(f"#{t['id']} "), html.Span(t["status"], className="pill", style={
               "background": data.COLORS.get(t["status"], "#8a8f98")})]),
           html.Div(f"{t['task_type']}: {what}"),
           html.Div(f"node {t.get('assigned_node') or '-'}, attempt {t['attempt']}"
                    + (f", exit {r['exit_code']}" if r.get("exit_code") is not None else "")
                    + took, className="muted")]
    if t.get("depends_on"):
        out.append(html.Div("depends on " + ", ".join(f"#{d}" for d in t["depends_on"])
                            + (" (their results as inputs)" if t.get("pass_results") else ""),
                            className="muted"))
    if t.get("error"):
        out.append(html.Div(t["error"], className="error"))
    text = result_text(r)
    if text:
        out.append(html.Pre(text, className="output"))
    return out


def register(app):
    @app.callback(Output("wf-id", "value"), Input("url", "search"))
    def from_url(search):
        task_id = task_id_from(search)
        return no_update if task_id is None else task_id

    @app.callback(Output("wf-graph", "elements"), Output("wf-shown", "data"),
                  Output("wf-msg", "children"), Output("wf-msg", "className"),
                  Input("wf-id", "value"), Input("tick", "n_intervals"),
                  State("wf-shown", "data"))
    def refresh(task_id, _, before):
        empty = shown([])
        if not task_id:
            return [], empty, PROMPT, "muted"
        root = int(task_id)
        graph, err = data.safe(data.call, "task.graph", {"id": root})
        if graph is None:
            return [], empty, err, "error"
        if not graph["edges"]:
            return [], empty, f"task {root} is not part of a workflow", "muted"
        new = elements(graph, root)
        now = shown(new)
        if before and now["digest"] == before.get("digest"):  # unchanged: leave it drawn
            return no_update, no_update, summary(graph, root), ""
        return new, now, summary(graph, root), ""

    @app.callback(Output("wf-details", "children"), Input("wf-graph", "tapNodeData"),
                  Input("tick", "n_intervals"), State("wf-shown", "data"))
    def show(node, _, drawn):
        if not node or node.get("id") not in set((drawn or {}).get("ids") or ()):
            return CLICK
        t, err = data.safe(data.call, "task.get", {"id": int(node["id"])})
        return html.Span(err, className="error") if t is None else details(t)
