"""Dash app factory (a first page; the full dashboard is built in architect/ui/)."""

from __future__ import annotations

import dash
from dash import dcc, html


def build(server):
    app = dash.Dash("architect_ui", server=server, url_base_pathname="/",
                    title="Architect", update_title=None)
    app.layout = html.Div([html.H1("Architect"), dcc.Location(id="url"),
                           html.Div(id="page")])
    return app
