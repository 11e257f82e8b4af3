"""Topology: the master and every node as a graph (dash-cytoscape), coloured by health,
labelled with active tasks; edges carry live task traffic; click a node for details."""

from __future__ import annotations

import dash_cytoscape as cyto
from dash import Input, Output, html

from architect.ui import data

STYLE = [
    {"selector": "node", "style": {"label": "data(label)", "color": "#1d2330", "font-size": 11,
                                   "text-valign": "bottom", "text-margin-y": 6,
                                   "text-wrap": "wrap", "text-halign": "center",
                                   "width": "data(size)", "height": "data(size)",
                                   "background-color": "data(color)"}},
    {"selector": ".master", "style": {"shape": "round-rectangle"}},
    {"selector": ".drained", "style": {"border-width": 3, "border-style": "dashed",
                                       "border-color": "#1d2330"}},
    {"selector": "edge", "style": {"width": "data(width)", "line-color": "data(color)",
                                   "curve-style": "bezier", "opacity": 0.8}},
    {"selector": ".busy", "style": {"line-style": "dashed", "line-dash-pattern": [6, 3]}},
]


def elements(topo: dict) -> list:
    out = []
    for n in topo["nodes"]:
        active = n.get("active_tasks") or 0
        is_master = n["kind"] == "master"
        label = f"{n['label']}\n{active} running" + (f", {n['queued']} queued" if is_master else "")
        out.append({"data": {"id": n["id"], "label": label,
                             "color": data.COLORS["master" if is_master else n["status"]],
                             "size": 46 if is_master else 26 + min(active, 20) * 2,
                             "status": n["status"]},
                    "classes": " ".join(c for c in ("master" if is_master else n["status"],
                                                    "drained" if n.get("drained") else "") if c)})
    for e in topo["edges"]:
        active = e.get("active_tasks") or 0
        out.append({"data": {"source": e["source"], "target": e["target"],
                             "width": 1 + min(active, 12), "color": data.COLORS[
                                 "running" if active else "offline"]},
                    "classes": "busy" if active else ""})
    return out


def layout():
    return html.Div(className="row", children=[
        html.Div(className="card", style={"flex": "3 1 640px"}, children=[
            html.H3("Cluster topology"),
            cyto.Cytoscape(id="topo-graph", layout={"name": "concentric", "minNodeSpacing": 60,
                                                    "animate": False},
                           style={"width": "100%", "height": "560px"}, stylesheet=STYLE,
                           elements=[], userZoomingEnabled=True, minZoom=0.3, maxZoom=1.6,
                           wheelSensitivity=1)]),
        html.Div(className="card", style={"flex": "1 1 280px"}, children=[
            html.H3("Node"), html.Div(id="topo-details", className="muted",
                                      children="Click a node for its details.")]),
        html.Div(id="topo-error", className="error"),
    ])


def details(node: dict) -> list:
    m = node.get("metrics") or {}
    rows = [("status", html.Span(node["status"], className=f"pill {node['status']}")),
            ("ip", node.get("ip_address") or "-"), ("capabilities", ", ".join(node["capabilities"])),
            ("drained", "yes" if node["drained"] else "no"),
            ("cpu", f"{m.get('cpu_percent', 0):.1f}%"), ("memory", f"{m.get('memory_percent', 0):.1f}%"),
            ("disk", f"{m.get('disk_percent', 0):.1f}%"), ("load", f"{m.get('load_1', 0):.2f}"),
            ("heartbeat", f"{node['heartbeat_age']:.0f}s ago" if node.get("heartbeat_age")
             is not None else "never"),
            ("reasons", "; ".join(node["reasons"]) or "-")]
    return [html.H2(node["name"], style={"margin": "0 0 8px"})] + [
        html.Div([html.Span(f"{k}: ", className="muted"), v]) for k, v in rows]


def register(app):
    @app.callback(Output("topo-graph", "elements"), Output("topo-error", "children"),
                  Input("tick", "n_intervals"))
    def refresh(_):
        topo, err = data.safe(data.topology)
        return (elements(topo) if topo else []), err

    @app.callback(Output("topo-details", "children"), Input("topo-graph", "tapNodeData"),
                  prevent_initial_call=True)
    def show(node_data):
        if not node_data or node_data["id"] == "master":
            return "The master: broker and web server."
        node, err = data.safe(data.call, "node.get", {"node": node_data["id"]})
        return err if node is None else details(node)
