"""Queues: each named queue's waiting and running tasks, its limits and why its tasks are
held; operators set or remove a queue's limits. The broker owns the queues (queue.* methods)."""

from __future__ import annotations

from dash import Input, Output, State, ctx, dash_table, dcc, html, no_update

from architect.ui import data

COLUMNS = [("name", "Queue"), ("queued", "Waiting"), ("running", "Running"),
           ("concurrency", "Concurrency limit"), ("rate", "Rate limit"),
           ("oldest", "Oldest waiting"), ("held", "Held")]
EMPTY = "No queues with waiting tasks or limits yet."
NONE = "—"
HELD = ("rate limited", "queue at its concurrency limit")   # the broker's reasons
HELD_STYLE = [{"if": {"filter_query": f'{{held}} = "{reason}"', "column_id": "held"},
               "backgroundColor": "#fdf1d6", "color": "#8a5a00", "fontWeight": 600}
              for reason in HELD]


def layout():
    return html.Div([
        html.Div(id="queue-form", className="card", style=data.shown("operator"), children=[
            html.H3("Set a queue's limits"),
            html.Div(className="form", children=[
                dcc.Input(id="queue-name", placeholder="queue", list="queue-names",
                          style={"width": "200px"}),
                html.Datalist(id="queue-names", children=[]),
                dcc.Input(id="queue-concurrency", type="number", min=1, step=1,
                          placeholder="concurrency", style={"width": "170px"}),
                dcc.Input(id="queue-rate", placeholder="rate, e.g. 5/s or 100/m",
                          style={"width": "180px"}),
                html.Button("Set", id="queue-set"),
                html.Button("Remove limits", id="queue-clear", className="secondary"),
                html.Span(id="queue-msg", className="muted")]),
            html.Div("An empty field means no limit of that kind; Set replaces both.",
                     className="muted", style={"marginTop": "6px", "fontSize": "12px"})]),
        html.Div(id="queues-empty", className="card", style={"display": "none"},
                 children=EMPTY),
        html.Div(id="queues-list", className="card", style={"marginTop": "12px"}, children=[
            dash_table.DataTable(
                id="queues-table", columns=[{"id": c, "name": n} for c, n in COLUMNS], data=[],
                sort_action="native", page_action="none",
                style_cell={"fontFamily": "inherit", "fontSize": 13, "padding": "4px 8px",
                            "textAlign": "left"},
                style_header={"fontWeight": 600, "background": "#f0f2f5"},
                style_data_conditional=HELD_STYLE)]),
        html.Div(id="queues-error", className="error"),
    ])


# --- formatting ----------------------------------------------------------------------------

def age(seconds: float | None) -> str:
    """12.3 s, 4.5 min, 2.0 h; '' when nothing waits."""
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def rows(queues: list) -> list:
    return [{"id": q["name"], "name": q["name"], "queued": q["queued"], "running": q["running"],
             "concurrency": NONE if q["concurrency"] is None else q["concurrency"],
             "rate": q["rate"] or NONE, "oldest": age(q["oldest_age"]),
             "held": q["held"] or ""} for q in queues]


def limits_text(answer: dict) -> str:
    parts = [f"concurrency {answer['concurrency']}" if answer.get("concurrency") else "",
             f"rate {answer['rate']}" if answer.get("rate") else ""]
    return f"{answer['name']}: " + (", ".join(p for p in parts if p) or "no limits")


def error(message: str):
    return html.Span(message, className="error")


# --- callbacks -----------------------------------------------------------------------------

def register(app):
    @app.callback(Output("queues-table", "data"), Output("queue-names", "children"),
                  Output("queues-empty", "style"), Output("queues-list", "style"),
                  Output("queues-error", "children"),
                  Input("tick", "n_intervals"), Input("queue-msg", "children"))
    def refresh(_, __):
        queues, err = data.safe(data.call, "queue.list")
        if queues is None:
            return [], no_update, {"display": "none"}, no_update, err
        hidden, card = {"display": "none"}, {"marginTop": "12px"}
        empty = not queues
        return (rows(queues), [html.Option(value=q["name"]) for q in queues],
                card if empty else hidden, hidden if empty else card, None)

    @app.callback(Output("queue-concurrency", "value"), Output("queue-rate", "value"),
                  Input("queue-name", "value"), State("queues-table", "data"),
                  prevent_initial_call=True)
    def prefill(name, table):
        """Picking a known queue fills in its current limits, so Set changes only what the
        operator edits (queue.set replaces both)."""
        for r in table or []:
            if r["name"] == name:
                return (None if r["concurrency"] == NONE else r["concurrency"],
                        None if r["rate"] == NONE else r["rate"])
        return no_update, no_update

    @app.callback(Output("queue-msg", "children"),
                  Input("queue-set", "n_clicks"), Input("queue-clear", "n_clicks"),
                  State("queue-name", "value"), State("queue-concurrency", "value"),
                  State("queue-rate", "value"), prevent_initial_call=True)
    def set_limits(_, __, name, concurrency, rate):
        name = (name or "").strip()
        if not name:
            return error("name a queue first")
        params = {"name": name, "concurrency": None, "rate": None}
        if ctx.triggered_id == "queue-set":
            params["concurrency"] = concurrency if concurrency not in ("", None) else None
            params["rate"] = (rate or "").strip() or None
        answer, err = data.safe(data.call, "queue.set", params)
        return error(err) if err else limits_text(answer)
