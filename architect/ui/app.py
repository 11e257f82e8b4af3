"""The Dash app: a shell (top bar, live tick, page container) and one module per page.
Mounted on the API's Flask server, so the same auth covers it."""

from __future__ import annotations

from pathlib import Path

import dash
from dash import Input, Output, dcc, html

from architect.ui import data
from architect.ui.pages import (alerts, audit, flow, health, nodes, overview, queues,
                                schedules, ssh, tasks, topology, workflow)
from architect.ui.pages import notifications

# (path, title, module, least role that sees the page in the menu)
PAGES = (("/", "Overview", overview, "viewer"), ("/topology", "Topology", topology, "viewer"),
         ("/flow", "Task flow", flow, "viewer"), ("/health", "Health", health, "viewer"),
         ("/nodes", "Nodes", nodes, "viewer"), ("/alerts", "Alerts", alerts, "viewer"),
         ("/tasks", "Tasks", tasks, "viewer"),
         ("/schedules", "Schedules", schedules, "viewer"),
         ("/workflow", "Workflow", workflow, "viewer"),
         ("/queues", "Queues", queues, "viewer"),
         ("/notifications", "Notifications", notifications, "viewer"),
         ("/ssh", "SSH", ssh, "admin"), ("/audit", "Audit", audit, "admin"))
TICK_MS = 2000


def shell():
    return html.Div([
        dcc.Location(id="url"),
        dcc.Interval(id="tick", interval=TICK_MS),
        html.Header(className="topbar", children=[
            html.H1("Architect"),
            html.Nav(id="nav"),
            html.Span(id="live", className="live"),
            html.Span(id="whoami", className="whoami")]),
        html.Main(id="page", className="page"),
    ])


def build(server):
    app = dash.Dash("architect_ui", server=server, url_base_pathname="/", title="Architect",
                    update_title=None, suppress_callback_exceptions=True,
                    assets_folder=str(Path(__file__).parent / "assets"))
    app.layout = shell
    for _, _, module, _ in PAGES:
        module.register(app)

    @app.callback(Output("page", "children"), Output("nav", "children"),
                  Input("url", "pathname"))
    def route(pathname):
        pathname = (pathname or "/").rstrip("/") or "/"
        links = [dcc.Link(title, href=path, className="active" if path == pathname else "")
                 for path, title, _, wanted in PAGES if data.can(wanted)]
        for path, _, module, _ in PAGES:
            if path == pathname:
                return module.layout(), links
        return html.Div([html.H2("Not found"), dcc.Link("Overview", href="/")]), links

    @app.callback(Output("whoami", "children"), Input("url", "pathname"))
    def whoami(_):
        from flask import g
        ident = g.get("identity")
        if ident is None or ident.how == "local":
            return "local · admin"
        return f"{ident.user} · {ident.role}" + (" (read-only)" if ident.role == "viewer" else "")

    @app.callback(Output("live", "children"), Input("tick", "n_intervals"))
    def live(n):
        import time
        return f"live · updated {time.strftime('%H:%M:%S')}"

    return app
