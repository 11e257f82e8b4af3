"""SSH console: run a command on one node, some, or all; results side by side."""

from __future__ import annotations

from dash import Input, Output, State, dcc, html

from architect.ui import data


def layout():
    if not data.can("admin"):
        return html.Div(className="card", children=[
            html.H3("SSH console"),
            html.Div(f"Running commands over SSH needs the admin role; you are "
                     f"{data.role()}.", className="muted", id="ssh-forbidden")])
    return html.Div([
        html.Div(className="card", children=[
            html.H3("Run over SSH"),
            html.Div(className="form", children=[
                dcc.Dropdown(id="ssh-nodes", multi=True, placeholder="all nodes",
                             style={"minWidth": "280px"}),
                dcc.Input(id="ssh-command", placeholder="command, e.g. uptime",
                          style={"width": "360px"}, debounce=False),
                dcc.Input(id="ssh-timeout", type="number", value=30, style={"width": "80px"}),
                html.Span("s timeout", className="muted"),
                html.Button("Run", id="ssh-run")]),
            html.Div("Every run is written to the SSH audit log first.", className="muted")]),
        dcc.Loading(html.Div(id="ssh-results", className="ssh-results",
                             style={"marginTop": "12px"})),
    ])


def result_card(r: dict):
    ok = r.get("exit_code") == 0 and not r.get("error")
    body = []
    if r.get("stdout"):
        body.append(html.Pre(r["stdout"], className="output"))
    if r.get("stderr"):
        body.append(html.Pre(r["stderr"], className="output", style={"color": "#f0b5b5"}))
    if r.get("error"):
        body.append(html.Div(r["error"], className="error"))
    return html.Div(className="card ssh-result", children=[
        html.H3(f"{r.get('node')} · {r.get('target') or ''}"),
        html.Div([html.Span("ok" if ok else "failed", className=f"pill {'healthy' if ok else 'critical'}"),
                  html.Span(f"  exit {r.get('exit_code')}, {r.get('duration', 0):.2f}s"
                            + (", truncated" if r.get("truncated") else ""), className="muted")]),
        *body])


def register(app):
    @app.callback(Output("ssh-nodes", "options"), Input("url", "pathname"))
    def options(_):
        nodes, _err = data.safe(data.nodes, default=[])
        return [n["name"] for n in nodes]

    @app.callback(Output("ssh-results", "children"), Input("ssh-run", "n_clicks"),
                  State("ssh-command", "value"), State("ssh-nodes", "value"),
                  State("ssh-timeout", "value"), prevent_initial_call=True)
    def run(_, command, nodes, timeout):
        if not command:
            return html.Div("enter a command", className="error")
        out, err = data.safe(data.ssh_run, command, nodes or [], float(timeout or 30))
        if out is None:
            return html.Div(err, className="error")
        return [result_card(r) for r in out["results"]] or html.Div("no nodes", className="muted")
