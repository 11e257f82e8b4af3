"""Tasks: a filtered, server-side paged table; a submit form; details with output; cancel;
retry one failed task, or every failed one in a window (after a dry-run count and a confirm)."""

from __future__ import annotations

import json
import time

from dash import Input, Output, State, ctx, dcc, html, no_update

from architect.ui import data

PAGE = 25
COLUMNS = [("id", "ID"), ("task_type", "Type"), ("status", "Status"), ("assigned_node", "Node"),
           ("attempt", "Try"), ("created", "Created"), ("took", "Took"), ("what", "Command")]
RETRYABLE = ("failed", "timed_out", "expired")
WINDOWS = {3600: "last hour", 86400: "last day", 7 * 86400: "last 7 days"}
RETRY_LIMIT = 1000          # task.retry_many's default: the newest this many at a time
RETRY_STYLE = {"marginTop": "8px", "marginLeft": "8px"}


def layout():
    return html.Div([
        html.Div(className="card", style=data.shown("operator"), children=[
            html.H3("Submit a task"),
            html.Div(className="form", children=[
                dcc.Dropdown(id="task-type", options=["shell", "python"], value="shell",
                             clearable=False, style={"width": "110px"}),
                dcc.Input(id="task-command", placeholder='command, or "module:function" for python',
                          style={"width": "360px"}),
                dcc.Input(id="task-reqs", placeholder="requirements, comma-separated",
                          style={"width": "220px"}),
                dcc.Dropdown(id="task-node", placeholder="any node", style={"width": "180px"}),
                dcc.Input(id="task-timeout", type="number", placeholder="timeout s",
                          style={"width": "100px"}),
                html.Button("Submit", id="task-submit"),
                html.Span(id="task-submit-msg", className="muted")])]),
        html.Div(className="form", style={"marginTop": "12px"}, children=[
            dcc.Dropdown(id="task-filter-status", options=list(data.STATES), placeholder="any state",
                         style={"width": "160px"}),
            dcc.Dropdown(id="task-filter-node", placeholder="any node", style={"width": "180px"}),
            dcc.Input(id="task-search", type="search", debounce=True,
                      placeholder="search, or a label key=value", style={"width": "240px"}),
            retry_many_controls()]),
        html.Div(className="row", children=[
            html.Div(className="card", style={"flex": "2 1 600px"}, children=[
                data.paged_table("tasks-table", COLUMNS, data.STATES, PAGE, 360)]),
            html.Div(className="card", style={"flex": "1 1 360px"}, children=[
                html.H3("Task"), html.Div(id="task-details", className="muted",
                                          children="Select a task."),
                html.Button("Cancel task", id="task-cancel", className="danger",
                            style=data.shown("operator", {"marginTop": "8px"})),
                html.Button("Retry", id="task-retry", className="secondary", disabled=True,
                            style=retry_style(True)),
                html.Span(id="task-cancel-msg", className="muted"),
                html.Span(id="task-retry-msg", className="muted", style={"marginLeft": "8px"})])]),
        html.Div(id="tasks-error", className="error"),
    ])


def retry_many_controls():
    """Retry failed…: the window, the button, a confirm after the dry-run count (operators)."""
    windows = [{"label": label, "value": seconds} for seconds, label in WINDOWS.items()]
    return html.Div(className="form", style=data.shown("operator", {"marginLeft": "auto"}),
                    children=[
                        dcc.Dropdown(id="tasks-retry-window", options=windows, value=86400,
                                     clearable=False, style={"width": "140px"}),
                        html.Button("Retry failed…", id="tasks-retry-many", className="secondary"),
                        html.Span(id="tasks-retry-msg", className="muted"),
                        dcc.ConfirmDialog(id="tasks-retry-confirm"),
                        dcc.Store(id="tasks-retry-plan")])


def retry_style(disabled: bool) -> dict:
    """The Retry button: operators only, dimmed while the selected task cannot be retried."""
    return data.shown("operator", dict(RETRY_STYLE, **({"opacity": 0.5, "cursor": "default"}
                                                        if disabled else {})))


def retry_scope(status, node, window) -> dict:
    """task.retry_many's params from the page's filters: a failed / timed-out status filter
    narrows it (any other leaves both), a node filter too, and the window."""
    params = {"since": int(window or 86400), "limit": RETRY_LIMIT}
    if status in RETRYABLE:
        params["status"] = status
    if node:
        params["node"] = node
    return params


def scope_words(params: dict) -> str:
    """'failed/timed_out in the last day on web-1'."""
    since = params["since"]
    text = (f"{params.get('status') or '/'.join(RETRYABLE)} in the "
            f"{WINDOWS.get(since) or f'last {since} s'}")
    return text + (f" on {params['node']}" if params.get("node") else "")


def tasks_word(n: int) -> str:
    return f"{n} task" + ("" if n == 1 else "s")


def error(message: str):
    return html.Span(message, className="error")


def describe(t: dict) -> str:
    p = t.get("payload") or {}
    return p.get("command") or " ".join(p.get("argv") or []) or p.get("function") or ""


def table_rows(tasks: list) -> list:
    return [{"id": t["id"], "task_type": t["task_type"], "status": t["status"],
             "assigned_node": t.get("assigned_node") or "", "attempt": t["attempt"],
             "created": time.strftime("%H:%M:%S", time.localtime(t["created_at"])),
             "took": f"{t['finished_at'] - t['started_at']:.2f}s"
             if t.get("finished_at") and t.get("started_at") else "", "what": describe(t)}
            for t in tasks]


KNOWN_IN_WORKFLOW: dict = {}   # task ids seen in a workflow (a task never leaves one)
KNOWN_MAX = 10_000


def in_workflow(t: dict) -> bool:
    """Whether the task depends on others or others on it (task.graph has an edge)."""
    if t.get("depends_on") or t["id"] in KNOWN_IN_WORKFLOW:
        return True
    graph, _err = data.safe(data.call, "task.graph", {"id": t["id"]})
    if not graph or not graph["edges"]:
        return False
    if len(KNOWN_IN_WORKFLOW) >= KNOWN_MAX:
        KNOWN_IN_WORKFLOW.clear()   # only a cache: the next look-up asks again
    KNOWN_IN_WORKFLOW[t["id"]] = True
    return True


def details(t: dict, workflow: bool = False) -> list:
    r = t.get("result") or {}
    out = [html.Div([html.B(f"#{t['id']} "), html.Span(t["status"], className="pill " + (
        "healthy" if t["status"] == "succeeded" else "critical" if t["status"] in
        ("failed", "timed_out") else "offline"))]),
        html.Div(f"{t['task_type']}: {describe(t)}"),
        html.Div(f"node {t.get('assigned_node') or '-'}, attempt {t['attempt']}, "
                 f"exit {r.get('exit_code')}" + (", truncated" if r.get("truncated") else ""),
                 className="muted")]
    if workflow:
        out.append(dcc.Link("workflow view", href=f"/workflow?id={t['id']}",
                            className="workflow-link"))
    if t.get("error"):
        out.append(html.Div(t["error"], className="error"))
    for reason in (t.get("waiting_reasons") or {}).items():
        out.append(html.Div(f"waiting: {reason[0]}: {reason[1]}", className="muted"))
    text = (r.get("stdout") or "") + (r.get("stderr") or "")
    if r.get("result") is not None:
        text += json.dumps(r["result"])
    if text:
        out.append(html.Pre(text, className="output", id="task-output"))
    return out


def register(app):
    @app.callback(Output("tasks-table", "data"), Output("tasks-table", "page_count"),
                  Output("task-filter-node", "options"), Output("task-node", "options"),
                  Output("tasks-error", "children"),
                  Input("tick", "n_intervals"), Input("tasks-table", "page_current"),
                  Input("task-filter-status", "value"), Input("task-filter-node", "value"),
                  Input("task-submit-msg", "children"), Input("task-search", "value"))
    def refresh(_, page, status, node, __, search=None):
        page = page or 0
        result, err = data.safe(data.task_page, status, node, PAGE, page * PAGE, search)
        nodes, _err = data.safe(data.nodes, default=[])
        names = [n["name"] for n in nodes]
        if result is None:
            return [], 1, names, names, err
        return (table_rows(result["tasks"]), max(1, -(-result["total"] // PAGE)), names, names,
                None)

    @app.callback(Output("task-submit-msg", "children"), Input("task-submit", "n_clicks"),
                  State("task-type", "value"), State("task-command", "value"),
                  State("task-reqs", "value"), State("task-node", "value"),
                  State("task-timeout", "value"), prevent_initial_call=True)
    def submit(_, task_type, command, reqs, node, timeout):
        if not command:
            return "enter a command"
        payload = {"command": command} if task_type == "shell" else {"function": command}
        spec = {"task_type": task_type, "payload": payload,
                "requirements": [r.strip() for r in (reqs or "").split(",") if r.strip()]}
        if node:
            spec["node"] = node
        if timeout:
            spec["timeout"] = float(timeout)
        out, err = data.safe(data.submit, spec)
        return err or f"task {out['id']} submitted"

    @app.callback(Output("task-details", "children"), Output("task-retry", "disabled"),
                  Output("task-retry", "style"),
                  Input("tasks-table", "selected_row_ids"), Input("tick", "n_intervals"),
                  Input("task-cancel-msg", "children"), Input("task-retry-msg", "children"))
    def show(selected, _, __, ___):
        if not selected:
            return "Select a task.", True, retry_style(True)
        t, err = data.safe(data.task, selected[0])
        if t is None:
            return err, True, retry_style(True)
        stuck = t["status"] not in RETRYABLE
        return details(t, in_workflow(t)), stuck, retry_style(stuck)

    @app.callback(Output("task-cancel-msg", "children"), Input("task-cancel", "n_clicks"),
                  State("tasks-table", "selected_row_ids"), prevent_initial_call=True)
    def cancel(_, selected):
        if not selected:
            return "select a task first"
        task_id = selected[0]
        t, err = data.safe(data.cancel, task_id)
        return err or f"task {task_id}: {t['status'] if t['final'] else 'cancel requested'}"

    @app.callback(Output("task-retry-msg", "children"), Input("task-retry", "n_clicks"),
                  State("tasks-table", "selected_row_ids"), prevent_initial_call=True)
    def retry(_, selected):
        if not selected:
            return "select a task first"
        t, err = data.safe(data.call, "task.retry", {"id": selected[0]})
        return error(err) if err else f"task {t['id']} queued again"

    @app.callback(Output("tasks-retry-confirm", "displayed"),
                  Output("tasks-retry-confirm", "message"), Output("tasks-retry-plan", "data"),
                  Output("tasks-retry-msg", "children"),
                  Input("tasks-retry-many", "n_clicks"),
                  Input("tasks-retry-confirm", "submit_n_clicks"),
                  Input("tasks-retry-confirm", "cancel_n_clicks"),
                  State("task-filter-status", "value"), State("task-filter-node", "value"),
                  State("tasks-retry-window", "value"), State("tasks-retry-plan", "data"),
                  prevent_initial_call=True)
    def retry_many(_, __, ___, status, node, window, plan):
        """First a dry run counts and asks; the confirm retries what matches by then."""
        if ctx.triggered_id == "tasks-retry-confirm":
            if ctx.triggered[0]["prop_id"].endswith("cancel_n_clicks") or not plan:
                return False, no_update, None, "nothing retried"
            out, err = data.safe(data.call, "task.retry_many", plan)
            return False, no_update, None, error(err) if err else \
                f"{tasks_word(out['count'])} queued again"
        params = retry_scope(status, node, window)
        out, err = data.safe(data.call, "task.retry_many", {**params, "dry_run": True})
        if err:
            return False, no_update, None, error(err)
        if not out["count"]:
            return False, no_update, None, f"no tasks ended {scope_words(params)}"
        newest = "the newest " if out["count"] >= RETRY_LIMIT else ""
        return (True, f"Retry {newest}{tasks_word(out['count'])} that ended "
                f"{scope_words(params)}?", params, None)
