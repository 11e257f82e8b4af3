"""Nodes: a searchable, sortable, paged table with health reasons and capabilities;
drain, undrain and remove for the selected node."""

from __future__ import annotations

from dash import Input, Output, State, ctx, dcc, html

from architect.ui import data

COLUMNS = [("name", "Name"), ("status", "Health"), ("ip_address", "IP"), ("cpu", "CPU %"),
           ("mem", "Mem %"), ("disk", "Disk %"), ("load", "Load"), ("seen", "Heartbeat"),
           ("capabilities", "Capabilities"), ("drained", "Drained"), ("reasons", "Reasons")]
PAGE = 25


def layout():
    return html.Div([
        html.Div(className="form", children=[
            dcc.Input(id="nodes-search", placeholder="search name, IP, capability, status…",
                      debounce=True, style={"width": "320px"}),
            html.Button("Drain", id="nodes-drain", className="secondary",
                        style=data.shown("operator")),
            html.Button("Undrain", id="nodes-undrain", className="secondary",
                        style=data.shown("operator")),
            html.Button("Remove", id="nodes-remove", className="danger", style=data.shown("admin")),
            html.Span(id="nodes-msg", className="muted")]),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            data.paged_table("nodes-table", COLUMNS, data.LEVELS, PAGE, 320,
                             sort_action="custom", sort_mode="single", sort_by=[])]),
        html.Div(id="nodes-error", className="error"),
    ])


def rows(nodes: list) -> list:
    out = []
    for n in nodes:
        m = n.get("metrics") or {}
        out.append({"id": n["name"], "name": n["name"], "status": n["status"], "ip_address": n["ip_address"],
                    "cpu": round(m.get("cpu_percent", 0), 1), "mem": round(m.get("memory_percent", 0), 1),
                    "disk": round(m.get("disk_percent", 0), 1), "load": round(m.get("load_1", 0), 2),
                    "seen": f"{n['heartbeat_age']:.0f}s ago" if n.get("heartbeat_age") is not None
                    else "never", "capabilities": ", ".join(n["capabilities"]),
                    "drained": "yes" if n["drained"] else "", "reasons": "; ".join(n["reasons"])})
    return out


def select(all_rows: list, search: str | None, sort_by: list) -> list:
    if search:
        needle = search.lower()
        all_rows = [r for r in all_rows if any(needle in str(v).lower() for v in r.values())]
    if sort_by:
        key, desc = sort_by[0]["column_id"], sort_by[0]["direction"] == "desc"
        all_rows = sorted(all_rows, key=lambda r: (r[key] is None, r[key]), reverse=desc)
    return all_rows


def register(app):
    @app.callback(Output("nodes-table", "data"), Output("nodes-table", "page_count"),
                  Output("nodes-error", "children"),
                  Input("tick", "n_intervals"), Input("nodes-table", "page_current"),
                  Input("nodes-table", "sort_by"), Input("nodes-search", "value"),
                  Input("nodes-msg", "children"))
    def refresh(_, page, sort_by, search, __):
        nodes, err = data.safe(data.nodes, default=[])
        selected = select(rows(nodes), search, sort_by or [])
        page = page or 0
        pages = max(1, -(-len(selected) // PAGE))
        return selected[page * PAGE:(page + 1) * PAGE], pages, err

    @app.callback(Output("nodes-msg", "children"),
                  Input("nodes-drain", "n_clicks"), Input("nodes-undrain", "n_clicks"),
                  Input("nodes-remove", "n_clicks"),
                  State("nodes-table", "selected_row_ids"), prevent_initial_call=True)
    def act(_, __, ___, selected):
        if not selected:
            return "select a node first"
        name = selected[0]
        action = {"nodes-drain": "drain", "nodes-undrain": "undrain",
                  "nodes-remove": "remove"}[ctx.triggered_id]
        _, err = data.safe(data.node_action, action, name)
        return err or f"{name}: {'removed' if action == 'remove' else action + 'ed'}"
