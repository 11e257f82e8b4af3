"""The Dash app: a shell (top bar, live tick, page container) and one module per page.
Mounted on the API's Flask server, so the same auth covers it."""

from __future__ import annotations

from pathlib import Path

import dash
from dash import Input, Output, dcc, html

from architect.ui.pages import flow, health, nodes, overview, ssh, tasks, topology

PAGES = (("/", "Overview", overview), ("/topology", "Topology", topology),
         ("/flow", "Task flow", flow), ("/health", "Health", health),
         ("/nodes", "Nodes", nodes), ("/tasks", "Tasks", tasks), ("/ssh", "SSH", ssh))
TICK_MS = 2000


def shell():
    return html.Div([
        dcc.Location(id="url"),
        dcc.Interval(id="tick", interval=TICK_MS),
        html.Header(className="topbar", children=[
            html.H1("Architect"),
            html.Nav(id="nav"),
            html.Span(id="live", className="live")]),
        html.Main(id="page", className="page"),
    ])


def build(server):
    app = dash.Dash("architect_ui", server=server, url_base_pathname="/", title="Architect",
                    update_title=None, suppress_callback_exceptions=True,
                    assets_folder=str(Path(__file__).parent / "assets"))
    app.layout = shell
    for _, _, module in PAGES:
        module.register(app)

    @app.callback(Output("page", "children"), Output("nav", "children"),
                  Input("url", "pathname"))
    def route(pathname):
        pathname = (pathname or "/").rstrip("/") or "/"
        links = [dcc.Link(title, href=path, className="active" if path == pathname else "")
                 for path, title, _ in PAGES]
        for path, _, module in PAGES:
            if path == pathname:
                return module.layout(), links
        return html.Div([html.H2("Not found"), dcc.Link("Overview", href="/")]), links

    @app.callback(Output("live", "children"), Input("tick", "n_intervals"))
    def live(n):
        import time
        return f"live · updated {time.strftime('%H:%M:%S')}"

    return app
