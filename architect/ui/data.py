"""The UI's service layer: what pages read and change, through the web process's broker
gateway (never a socket of its own). Errors come back as ApiError with a message to show."""

from __future__ import annotations

from flask import current_app

from architect.api.errors import ApiError
from architect.bus.protocol import LEVELS, STATES  # noqa: F401  (pages read data.LEVELS/STATES)

COLORS = {"healthy": "#2e9d5b", "warning": "#e0a100", "critical": "#d64545",
          "offline": "#8a8f98", "master": "#2f6fdf", "waiting": "#c9b27c", "scheduled": "#b7a4d8", "queued": "#9aa5b8", "assigned": "#6f8fd8",
          "running": "#2f6fdf", "succeeded": "#2e9d5b", "failed": "#d64545",
          "timed_out": "#e07b00", "cancelled": "#8a8f98", "expired": "#a0785a", "submitted": "#151a24"}


def call(method: str, params: dict | None = None, timeout: float | None = None):
    return current_app.extensions["architect"].broker.call(method, params or {}, timeout=timeout)


def who() -> str:
    from flask import g
    ident = g.get("identity")
    return f"ui:{ident.user}" if ident else "ui"


# what the UI shows each web role (the broker decides what each may do: methods.py)
RANK = {"viewer": 1, "operator": 2, "admin": 3}


def role() -> str:
    """The signed-in user's role (auth.py sets g.identity on every request)."""
    from flask import g, has_request_context
    ident = g.get("identity") if has_request_context() else None
    return ident.role if ident else "viewer"


def can(wanted: str) -> bool:
    return RANK.get(role(), 0) >= RANK[wanted]


def shown(wanted: str, style: dict | None = None) -> dict:
    """A style that hides a control from users whose role may not use it."""
    return dict(style or {}, **({} if can(wanted) else {"display": "none"}))


def safe(fn, *args, default=None, **kwargs):
    """(value, error message or None): pages show the message instead of failing."""
    try:
        return fn(*args, **kwargs), None
    except ApiError as exc:
        return default, exc.message


def master() -> dict:
    """This master's role (several masters: active or standby, the epoch, the leader)."""
    return current_app.extensions["architect"].master_info()


def summary() -> dict:
    return call("cluster.summary")


def alerts() -> list[dict]:
    return call("alert.list", {"limit": 50})


def ack(alert_id: int) -> dict:
    return call("alert.ack", {"id": alert_id, "by": who()})


def nodes_overview(limit: int = 12) -> dict:
    """The landing page's nodes: problems first, with CPU / memory of the last 15 min."""
    return call("cluster.nodes_overview", {"limit": limit})


def topology() -> dict:
    return call("cluster.topology")


def flow(window: int = 3600) -> dict:
    return call("cluster.flow", {"window": window})


def timeline(window: int = 900, limit: int = 400) -> list[dict]:
    return call("task.timeline", {"window": window, "limit": limit})


def nodes() -> list[dict]:
    return call("node.list")


def node_action(action: str, node: str) -> dict:
    return call({"drain": "node.drain", "undrain": "node.undrain", "remove": "node.remove"}[action],
                {"node": node})


def metrics(node: str, span: str, points: int = 240) -> dict:
    return call("node.metrics", {"node": node, "range": span, "points": points})


def task_page(status=None, node=None, limit=25, offset=0, search=None) -> dict:
    """One page of tasks. search: "key=value" keeps a label; other text searches the
    command or function, node, labels and error."""
    params = {"limit": limit, "offset": offset}
    if status:
        params["status"] = status
    if node:
        params["node"] = node
    search = (search or "").strip()
    if search:
        key, sep, _ = search.partition("=")
        if sep and key and " " not in key:
            params["label"] = search
        else:
            params["search"] = search[:200]
    return call("task.page", params)


def task(task_id: int) -> dict:
    return call("task.get", {"id": task_id, "events": True})


def submit(spec: dict) -> dict:
    return call("task.submit", {**spec, "submitted_by": who()})


def cancel(task_id: int) -> dict:
    return call("task.cancel", {"id": task_id})


def ssh_run(command: str, nodes: list, timeout: float) -> dict:
    if len(nodes) == 1:
        result = call("ssh.execute", {"node": nodes[0], "command": command, "timeout": timeout,
                                      "who": who()}, timeout=timeout + 45)
        return {"results": [result], "count": 1}
    params = {"command": command, "timeout": timeout, "who": who()}
    if nodes:
        params["nodes"] = nodes
    return call("ssh.broadcast", params, timeout=timeout + 75)


def paged_table(table_id: str, columns, states, page_size: int, max_width: int, **extra):
    """A DataTable paged on the server (page_action custom), single-row select, with the
    `status` column coloured by state."""
    from dash import dash_table
    options = dict({"page_action": "custom", "row_selectable": "single"}, **extra)
    conditional = options.pop("style_data_conditional", [])
    return dash_table.DataTable(
        id=table_id, columns=[{"id": c, "name": n} for c, n in columns], page_current=0,
        page_size=page_size, selected_rows=[], selected_row_ids=[],
        style_cell={"fontFamily": "inherit", "fontSize": 13, "padding": "4px 8px",
                    "textAlign": "left", "maxWidth": max_width, "overflow": "hidden",
                    "textOverflow": "ellipsis"},
        style_header={"fontWeight": 600, "background": "#f0f2f5"},
        style_data_conditional=[{"if": {"filter_query": f'{{status}} = "{s}"',
                                        "column_id": "status"},
                                 "color": COLORS[s], "fontWeight": 600} for s in states]
        + conditional,
        **options)
