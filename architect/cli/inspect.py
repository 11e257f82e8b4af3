"""Commands that read and change cluster state through the broker: nodes, alerts, cluster."""

from __future__ import annotations

import time

import click

from architect.bus.protocol import LEVELS
from architect.cli.common import ago, call, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _fmt(value, suffix=""):
    return None if value is None else f"{value:.1f}{suffix}"


@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(list(LEVELS)),
              help="Only nodes at this level.")
@json_option
@click.pass_context
def nodes(ctx, status, as_json):
    """List nodes with their health (subcommands: show, metrics, health, drain, undrain,
    remove, thresholds)."""
    if ctx.invoked_subcommand:
        return
    rows = call(ctx, "node.list", {"status": status} if status else {})
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no nodes registered")
    table = [{**r, "cpu": _fmt(r["metrics"].get("cpu_percent"), "%"),
              "mem": _fmt(r["metrics"].get("memory_percent"), "%"),
              "disk": _fmt(r["metrics"].get("disk_percent"), "%"),
              "load": _fmt(r["metrics"].get("load_1")),
              "seen": ago(r["heartbeat_age"]),
              "caps": ",".join(r["capabilities"]) or None,
              "flags": "drained" if r["drained"] else ""} for r in rows]
    print_table(table, [("id", "id"), ("name", "name"), ("status", "status"), ("ip", "ip_address"),
                        ("cpu", "cpu"), ("mem", "mem"), ("disk", "disk"), ("load", "load"),
                        ("seen", "seen"), ("capabilities", "caps"), ("", "flags")])


@nodes.command()
@click.argument("node")
@json_option
@click.pass_context
def show(ctx, node, as_json):
    """Show one node (by name or id) with its metrics and health reasons."""
    data = call(ctx, "node.get", {"node": node})
    if as_json:
        return print_json(data)
    for key in ("id", "name", "status", "hostname", "ip_address", "drained", "registered_at",
                "last_seen", "heartbeat_age"):
        value = data.get(key)
        if key in ("registered_at", "last_seen") and value:
            value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        click.echo(f"{key:14} {value}")
    click.echo(f"{'capabilities':14} {', '.join(data['capabilities']) or '-'}")
    click.echo(f"{'reasons':14} {'; '.join(data['reasons']) or '-'}")
    for key, value in sorted(data["metrics"].items()):
        click.echo(f"  {key:16} {value}")


@nodes.command("metrics")
@click.argument("node")
@click.option("--range", "span", default="1h", show_default=True,
              type=click.Choice(["15m", "1h", "6h", "24h", "2d", "7d", "30d", "90d", "1y"]),
              help="Window back from now.")
@click.option("--points", default=30, show_default=True, type=click.IntRange(2, 5000),
              help="At most this many rows (time buckets).")
@click.option("--resolution", default="auto", show_default=True,
              type=click.Choice(["auto", "raw", "1m", "1h"]),
              help="auto: raw samples up to 6 h, 1-minute roll-ups up to 2 days, 1-hour beyond.")
@json_option
@click.pass_context
def nodes_metrics(ctx, node, span, points, resolution, as_json):
    """NODE's CPU, memory, disk and load history: average (min-max) per time bucket."""
    data = call(ctx, "node.metrics", {"node": node, "range": span, "points": points,
                                      "resolution": resolution})
    if as_json:
        return print_json(data)
    click.echo(f"{data['node']}: {span} from {data['resolution']} "
               f"({data['bucket']:g} s per row)")
    if not data["series"]:
        return click.echo("no data yet")

    def cell(p, key, suffix=""):
        avg, low, high = p.get(key), p.get(f"{key}_min"), p.get(f"{key}_max")
        if avg is None:
            return None
        return (f"{avg:.1f}{suffix}" if low is None or high is None or low == high
                else f"{avg:.1f}{suffix} ({low:.1f}-{high:.1f})")
    print_table([{"at": time.strftime("%m-%d %H:%M:%S", time.localtime(p["ts"])),
                  "n": p["samples"], "cpu": cell(p, "cpu_percent", "%"),
                  "mem": cell(p, "memory_percent", "%"), "disk": cell(p, "disk_percent", "%"),
                  "load": cell(p, "load_1")} for p in data["series"]],
                [("at", "at"), ("samples", "n"), ("cpu", "cpu"), ("mem", "mem"),
                 ("disk", "disk"), ("load", "load")])


@nodes.command("health")
@json_option
@click.pass_context
def nodes_health(ctx, as_json):
    """Counts per health level and each node's level and reasons."""
    data = call(ctx, "health.summary")
    if as_json:
        return print_json(data)
    click.echo("  ".join(f"{k}: {v}" for k, v in data["counts"].items()))
    print_table([{**n, "age": ago(n["heartbeat_age"]), "why": "; ".join(n["reasons"]) or None}
                 for n in data["nodes"]],
                [("name", "name"), ("status", "status"), ("seen", "age"), ("reasons", "why")])


def _node_action(method: str, verb: str):
    @click.argument("node")
    @json_option
    @click.pass_context
    def command(ctx, node, as_json):
        data = call(ctx, method, {"node": node})
        if as_json:
            return print_json(data)
        click.echo(f"{data.get('name') or data.get('removed')}: {verb}")
    return command


nodes.command("drain", help="Stop placing new tasks on NODE.")(_node_action("node.drain", "drained"))
nodes.command("undrain", help="Place tasks on NODE again.")(_node_action("node.undrain", "undrained"))
nodes.command("remove", help="Forget NODE (its alert history stays). A running agent registers "
              "it again: stop the agent first.")(_node_action("node.remove", "removed"))


@click.group(invoke_without_command=True)
@click.option("--all", "all_", is_flag=True, help="History too, not only active alerts.")
@click.option("--node", help="Only this node's alerts.")
@click.option("--level", type=click.Choice(["warning", "critical", "offline"]),
              help="Only alerts of this level.")
@click.option("--kind", type=click.Choice(["level", "flapping", "rule", "security"]),
              help="Only this kind: level changes, flapping, custom rules, bus key misuse.")
@click.option("--since", help="Only alerts opened within this window (30m, 1h, 7d).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=500, show_default=True)
@json_option
@click.pass_context
def alerts(ctx, all_, node, level, kind, since, limit, as_json):
    """List active alerts, or with --all their history, filtered (subcommands: ack ID;
    rules: custom alert rules).

    \b
      architect alerts --all --level critical --since 1d
      architect alerts --all --node db-1 --kind flapping
    """
    if ctx.invoked_subcommand:
        return
    from architect.cli.tasks import _seconds
    params = {"all": all_, "limit": limit}
    for key, value in (("node", node), ("level", level), ("kind", kind)):
        if value:
            params[key] = value
    if since:
        params["since"] = _seconds(since)
    rows = call(ctx, "alert.list", params)
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no alerts" if all_ else "no active alerts")
    print_table([{**r, "opened": time.strftime("%m-%d %H:%M:%S", time.localtime(r["created_at"])),
                  "ack": r.get("acknowledged_by"), "kind": r.get("kind") or "level"}
                 for r in rows],
                [("id", "id"), ("node", "node_name"), ("level", "level"), ("kind", "kind"),
                 ("status", "status"),
                 ("opened", "opened"), ("ack", "ack"), ("message", "message")])


@alerts.command("ack")
@click.argument("alert_id", type=int)
@click.option("--by", default="cli", show_default=True, help="Who acknowledges.")
@json_option
@click.pass_context
def alerts_ack(ctx, alert_id, by, as_json):
    """Acknowledge alert ALERT_ID."""
    data = call(ctx, "alert.ack", {"id": alert_id, "by": by})
    if as_json:
        return print_json(data)
    click.echo(f"alert {alert_id} acknowledged by {data['acknowledged_by']}")


@click.group()
def cluster():
    """Cluster-wide figures."""


@cluster.command()
@json_option
@click.pass_context
def stats(ctx, as_json):
    """Nodes per level, alerts, counters, uptime of the broker."""
    data = call(ctx, "cluster.stats")
    if as_json:
        return print_json(data)
    n = data["nodes"]
    click.echo(f"nodes      {n['total']} (healthy {n['healthy']}, warning {n['warning']}, "
               f"critical {n['critical']}, offline {n['offline']}, drained {n['drained']})")
    click.echo(f"alerts     {data['alerts']['active']} active")
    db = data["db"]
    size = f" ({db['bytes'] / 2**20:.1f} MiB)" if db.get("bytes") is not None else ""
    click.echo(f"broker     pid {data['pid']}, up {ago(data['uptime'])}, db {db['path']}{size}")
    loop = data.get("loop") or {}
    if loop.get("p99") is not None:
        click.echo(f"loop       p50 {loop['p50'] * 1000:.2f} ms, p99 {loop['p99'] * 1000:.2f} ms, "
                   f"max {loop['max'] * 1000:.2f} ms over the last {loop['recent']} iterations")
    for key, value in sorted(data["counters"].items()):
        click.echo(f"  {key:24} {value}")


def _master_urls(cfg) -> list[str]:
    from architect.discovery import dashboard_urls
    urls = dashboard_urls(cfg)
    if urls:
        return urls
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    return [f"http://{host}:{cfg.port}"]


@cluster.command()
@click.option("--url", "urls", multiple=True, help="A master's web URL (repeatable) "
              "[ARCHITECT_DASHBOARD_URL, comma-separated; else this machine's web port].")
@json_option
@click.pass_context
def status(ctx, urls, as_json):
    """Each master: active or standby, its leader epoch and since when (GET /healthz).

    Exit 0 when exactly one master is active, 1 otherwise (none, or a split brain)."""
    import json
    import urllib.error
    import urllib.request
    from architect.cli.common import load_config
    cfg = load_config(ctx)
    rows = []
    for url in [u for arg in urls for u in arg.split(",") if u.strip()] or _master_urls(cfg):
        url = url.strip().rstrip("/")
        row = {"url": url}
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=3) as resp:  # noqa: S310
                body = json.loads(resp.read(1 << 20))
        except urllib.error.HTTPError as exc:   # 503: degraded, still a body
            try:
                body = json.loads(exc.read(1 << 20))
            except ValueError:
                body = {"status": f"HTTP {exc.code}"}
        except (urllib.error.URLError, OSError, ValueError) as exc:
            body = {"status": "unreachable", "error": str(getattr(exc, "reason", exc))}
        master = body.get("master") or {}
        leader = master.get("leader") or {}
        row.update(role=body.get("role"), status=body.get("status"), epoch=body.get("epoch"),
                   since=body.get("since"), holder=master.get("holder"),
                   leader=leader.get("holder"), leader_epoch=leader.get("epoch"),
                   error=body.get("error"))
        rows.append(row)
    if as_json:
        print_json(rows)
    else:
        now = time.time()
        print_table([{**r, "since": f"{ago(now - r['since'])} ago" if r["since"] else None,
                      "epoch": r["epoch"] if r["epoch"] is not None else r["leader_epoch"]}
                     for r in rows],
                    [("master", "url"), ("role", "role"), ("status", "status"),
                     ("epoch", "epoch"), ("since", "since"), ("holder", "holder"),
                     ("leader", "leader")])
    active = sum(1 for r in rows if r["role"] == "active" and r["status"] == "ok")
    raise SystemExit(0 if active == 1 else 1)
