"""Schedules: every schedule with its next and last run; the selected one's runs; pause,
resume and run now (operators). The broker owns the schedules (schedule.* methods)."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from dash import Input, Output, State, ctx, dash_table, dcc, html, no_update

from architect.ui import data

RUNS = 50
COLUMNS = [("name", "Name"), ("when", "When"), ("paused", "Paused"), ("next", "Next run"),
           ("last", "Last run"), ("outcome", "Outcome"), ("last_status", "Task status"),
           ("task", "Task"), ("created_by", "Created by")]
RUN_COLUMNS = [("due", "Due"), ("at", "At"), ("outcome", "Outcome"), ("task_id", "Task"),
               ("task_status", "Task status"), ("detail", "Detail")]
EMPTY = ["No schedules yet — add one with ",
         html.Code("architect schedules add NAME --every 30s --command ..."), "."]
ACTIONS = {"sched-pause": ("schedule.pause", "paused"),
           "sched-resume": ("schedule.resume", "resumed")}


def table(table_id: str, columns, status_columns, **extra):
    """A plain DataTable, with task states coloured in `status_columns`."""
    return dash_table.DataTable(
        id=table_id, columns=[{"id": c, "name": n} for c, n in columns], data=[],
        style_cell={"fontFamily": "inherit", "fontSize": 13, "padding": "4px 8px",
                    "textAlign": "left", "maxWidth": 320, "overflow": "hidden",
                    "textOverflow": "ellipsis"},
        style_header={"fontWeight": 600, "background": "#f0f2f5"},
        style_data_conditional=state_colours(status_columns), **extra)


def state_colours(columns) -> list:
    return [{"if": {"filter_query": f'{{{c}}} = "{s}"', "column_id": c},
             "color": data.COLORS[s], "fontWeight": 600} for c in columns for s in data.STATES]


def layout():
    return html.Div([
        html.Div(className="form", children=[
            dcc.Dropdown(id="sched-select", placeholder="select a schedule",
                         style={"width": "260px"}),
            html.Button("Pause", id="sched-pause", className="secondary",
                        style=data.shown("operator")),
            html.Button("Resume", id="sched-resume", className="secondary",
                        style=data.shown("operator")),
            html.Button("Run now", id="sched-run", style=data.shown("operator")),
            html.Span(id="sched-msg", className="muted")]),
        html.Div(id="sched-empty", className="card sched-empty", style={"display": "none"},
                 children=EMPTY),
        html.Div(id="sched-list", className="card", style={"marginTop": "12px"}, children=[
            table("sched-table", COLUMNS, ["last_status"], page_action="native", page_size=25,
                  sort_action="native")]),
        html.Div(className="card", style={"marginTop": "12px"}, children=[
            html.H3("Schedule"),
            html.Div(id="sched-details", className="muted", children="Select a schedule."),
            html.H3(f"Last {RUNS} runs", style={"marginTop": "12px"}),
            table("sched-runs", RUN_COLUMNS, ["task_status"], page_action="none"),
            html.Div(id="sched-runs-note", className="muted")]),
        html.Div(id="sched-error", className="error"),
    ])


# --- formatting ----------------------------------------------------------------------------

def utc(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else ""


def relative(ts: float, now: float) -> str:
    """'in 12 s', '3 min ago', 'in 5 h', '2 d ago'."""
    gap = ts - now
    span = abs(gap)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if span >= size * (2 if unit != "min" else 1):
            text = f"{span / size:.0f} {unit}"
            break
    else:
        text = f"{span:.0f} s"
    return f"in {text}" if gap >= 0 else f"{text} ago"


def next_run(s: dict, now: float) -> str:
    if s["paused"]:
        return "paused"
    if not s.get("next_due"):
        return ""
    return f"{utc(s['next_due'])} · {relative(s['next_due'], now)}"


def describe(spec: dict) -> str:
    p = spec.get("payload") or {}
    what = p.get("command") or " ".join(p.get("argv") or []) or p.get("function") or ""
    return f"{spec.get('task_type', '?')}: {what}"


def rows(schedules: list, now: float) -> list:
    return [{"id": s["name"], "name": s["name"], "when": s["when"],
             "paused": "yes" if s["paused"] else "", "next": next_run(s, now),
             "last": utc(s.get("last_due")), "outcome": s.get("last_outcome") or "",
             "last_status": s.get("last_task_status") or "",
             "task": describe(s.get("spec") or {}), "created_by": s.get("created_by") or ""}
            for s in schedules]


def run_rows(runs: list) -> list:
    return [{"id": r["id"], "due": utc(r["due"]), "at": utc(r["at"]), "outcome": r["outcome"],
             "task_id": r.get("task_id") or "", "task_status": r.get("task_status") or "",
             "detail": r.get("detail") or ""} for r in runs]


def details(s: dict, now: float) -> list:
    spec = s.get("spec") or {}
    options = ", ".join(f"{k} {spec[k]}" for k in ("requirements", "node", "timeout",
                                                   "max_attempts", "retries", "priority")
                        if spec.get(k) not in (None, [], ""))
    out = [html.Div([html.B(s["name"] + " "),
                     html.Span("paused" if s["paused"] else "active",
                               className="pill " + ("offline" if s["paused"] else "healthy"))]),
           html.Div(f"{s['when']} · missed: {s['missed']} · overlap: {s['overlap']}"),
           html.Div(describe(spec) + (f" ({options})" if options else "")),
           html.Div(f"next run: {next_run(s, now) or '-'}", id="sched-next")]
    if s.get("next_due") and not s["paused"] and s.get("tz", "UTC") != "UTC":
        local = datetime.fromtimestamp(s["next_due"], ZoneInfo(s["tz"]))
        out.append(html.Div(f"that is {local:%Y-%m-%d %H:%M:%S} {s['tz']}", className="muted"))
    if s.get("last_task"):
        out.append(html.Div(f"last task #{s['last_task']} ({s.get('last_outcome')}): "
                            f"{s.get('last_task_status') or 'gone'}"))
    out.append(html.Div(f"created by {s.get('created_by') or '-'} at {utc(s['created_at'])}",
                        className="muted"))
    return out


def selected_style(name: str | None) -> list:
    base = state_colours(["last_status"])
    if not name:
        return base
    return base + [{"if": {"filter_query": f'{{name}} = "{name}"'},
                    "backgroundColor": "#e8f0fd"}]


# --- callbacks -----------------------------------------------------------------------------

def register(app):
    @app.callback(Output("sched-table", "data"), Output("sched-table", "style_data_conditional"),
                  Output("sched-select", "options"), Output("sched-empty", "style"),
                  Output("sched-list", "style"), Output("sched-error", "children"),
                  Input("tick", "n_intervals"), Input("sched-msg", "children"),
                  Input("sched-select", "value"))
    def refresh(_, __, name):
        schedules, err = data.safe(data.call, "schedule.list")
        if schedules is None:
            return [], selected_style(None), [], {"display": "none"}, no_update, err
        hidden, card = {"display": "none"}, {"marginTop": "12px"}
        empty = not schedules
        return (rows(schedules, time.time()), selected_style(name),
                [s["name"] for s in schedules], card if empty else hidden,
                hidden if empty else card, None)

    @app.callback(Output("sched-select", "value"), Output("sched-table", "active_cell"),
                  Output("sched-table", "selected_cells"),
                  Input("sched-table", "active_cell"), prevent_initial_call=True)
    def pick(cell):
        """A click on any cell of a row selects its schedule (then the cell lets go, so the
        same row can be clicked again after picking another in the dropdown)."""
        if not cell or not cell.get("row_id"):
            return no_update, no_update, no_update
        return cell["row_id"], None, []

    @app.callback(Output("sched-details", "children"), Output("sched-runs", "data"),
                  Output("sched-runs-note", "children"), Output("sched-pause", "disabled"), Output("sched-resume", "disabled"),
                  Output("sched-run", "disabled"),
                  Input("sched-select", "value"), Input("tick", "n_intervals"),
                  Input("sched-msg", "children"))
    def show(name, _, __):
        if not name:
            return "Select a schedule.", [], None, True, True, True
        s, err = data.safe(data.call, "schedule.get", {"name": name, "runs": RUNS})
        if s is None:
            return html.Div(err, className="error"), [], None, False, False, False
        note = None if s["runs"] else "No runs yet."
        return (details(s, time.time()), run_rows(s["runs"]), note, s["paused"], not s["paused"],
                False)

    @app.callback(Output("sched-msg", "children"),
                  Input("sched-pause", "n_clicks"), Input("sched-resume", "n_clicks"),
                  Input("sched-run", "n_clicks"), State("sched-select", "value"),
                  prevent_initial_call=True)
    def act(_, __, ___, name):
        if not name:
            return "select a schedule first"
        if ctx.triggered_id == "sched-run":
            out, err = data.safe(data.call, "schedule.run", {"name": name})
            return html.Span(err, className="error") if err else \
                f"{name}: run now, task {out['task_id']} submitted"
        method, done = ACTIONS[ctx.triggered_id]
        _, err = data.safe(data.call, method, {"name": name})
        return html.Span(err, className="error") if err else f"{name}: {done}"
