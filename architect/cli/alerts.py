"""`architect alerts rules` (custom alert rules) and `architect nodes thresholds NODE` (a
node's own health thresholds). The `alerts` and `nodes` groups live in inspect.py; main.py
attaches these to them. See docs/HEALTH.md."""

from __future__ import annotations

import click

from architect.cli.common import call, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
METRICS = ("cpu", "memory", "disk", "load")


def _pair(metric: str):
    """--disk 90,97 · --disk 90, (warning only) · --disk ,97 · --disk default."""
    def convert(ctx, param, value):
        if value is None:
            return None
        if value.strip().lower() == "default":
            return "default"
        warn, sep, crit = value.partition(",")
        if not sep:
            raise click.BadParameter(f"write WARNING,CRITICAL (e.g. 90,97; '90,' or ',97' for "
                                     f"one of them) or 'default', got {value!r}")
        out = {}
        for level, text in (("warning", warn), ("critical", crit)):
            if text.strip():
                try:
                    out[level] = float(text)
                except ValueError:
                    raise click.BadParameter(f"{metric} {level} {text!r} is not a number") \
                        from None
        if not out:
            raise click.BadParameter("give a warning, a critical or both")
        return out
    return convert


def _threshold_options(fn):
    for metric in reversed(METRICS):
        unit = "load average" if metric == "load" else "percent"
        fn = click.option(f"--{metric}", callback=_pair(metric), metavar="W,C",
                          help=f"{metric} warning,critical ({unit}); 'default' drops this "
                               "override.")(fn)
    return fn


@click.command("thresholds")
@click.argument("node")
@_threshold_options
@click.option("--reset", is_flag=True, help="Drop every override: the defaults again.")
@json_option
@click.pass_context
def thresholds(ctx, node, cpu, memory, disk, load, reset, as_json):
    """Show or set NODE's own health thresholds (admin to set). Options change only the
    metrics given; the others keep their override or the default. They grade the node's
    next samples (through the hysteresis) and are kept in the database.

    \b
      architect nodes thresholds db-1
      architect nodes thresholds db-1 --disk 90,97
      architect nodes thresholds db-1 --disk default --cpu ,99
      architect nodes thresholds db-1 --reset
    """
    given = {"cpu": cpu, "memory": memory, "disk": disk, "load": load}
    if reset and any(v is not None for v in given.values()):
        raise click.UsageError("--reset takes no metric options")
    if reset or any(v is not None for v in given.values()):
        current = {} if reset else dict(call(ctx, "node.thresholds", {"node": node})["overrides"])
        for metric, value in given.items():
            if value == "default":
                current.pop(metric, None)
            elif value is not None:
                current[metric] = {**current.get(metric, {}), **value}
        data = call(ctx, "node.set_thresholds", {"node": node, "thresholds": current})
    else:
        data = call(ctx, "node.thresholds", {"node": node})
    if as_json:
        return print_json(data)
    rows = [{"metric": m, "warning": f"{t['warning']:g}", "critical": f"{t['critical']:g}",
             "source": "override" if m in data["overrides"] else "default"}
            for m, t in data["thresholds"].items()]
    click.echo(f"node {data['node']}")
    print_table(rows, [("metric", "metric"), ("warning", "warning"), ("critical", "critical"),
                       ("from", "source")])


def _print_rules(rows):
    if not rows:
        return click.echo("no alert rules")
    print_table([{**r, "match": " ".join(x for x in (r["node"] and f"node={r['node']}",
                                                     r["capability"] and
                                                     f"capability={r['capability']}") if x)
                  or "all nodes", "now": ", ".join(r["firing"]) or None} for r in rows],
                [("name", "name"), ("rule", "expr"), ("level", "level"), ("match", "match"),
                 ("firing on", "now")])


@click.group("rules", invoke_without_command=True)
@json_option
@click.pass_context
def rules(ctx, as_json):
    """Custom alert rules: METRIC OP NUMBER[UNIT] [for DURATION] on any node metric (or
    heartbeat_age), at a level, for all nodes or those matching. Without a command: the
    list. Adding and removing needs an admin.

    \b
      architect alerts rules add disk-70 'disk_percent > 70 for 10m'
      architect alerts rules add silent 'heartbeat_age > 30s' --level critical --node 'db-*'
      architect alerts rules remove disk-70
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(rules_list, as_json=as_json)


@rules.command("list")
@json_option
@click.pass_context
def rules_list(ctx, as_json):
    """Every rule, with the nodes it fires on now."""
    rows = call(ctx, "alert_rule.list")
    if as_json:
        return print_json(rows)
    _print_rules(rows)


@rules.command("add")
@click.argument("name")
@click.argument("expr")
@click.option("--level", type=click.Choice(["warning", "critical"]), default="warning",
              show_default=True, help="The level of the alerts it opens.")
@click.option("--node", help="Only nodes whose name matches this glob (e.g. 'db-*').")
@click.option("--capability", help="Only nodes with this capability (label).")
@click.option("--replace", is_flag=True, help="Replace a rule of that name.")
@json_option
@click.pass_context
def rules_add(ctx, name, expr, level, node, capability, replace, as_json):
    """Add rule NAME: EXPR is METRIC OP NUMBER[UNIT] [for DURATION], e.g.
    'disk_percent > 70 for 10m', 'heartbeat_age > 30s', 'load_5 >= 6'. Metrics: cpu_percent,
    memory_percent, disk_percent, load_1, load_5, load_15, process_count, net_bytes_sent,
    net_bytes_recv, uptime, heartbeat_age. Operators: > >= < <=."""
    params = {"name": name, "expr": expr, "level": level, "replace": replace}
    if node:
        params["node"] = node
    if capability:
        params["capability"] = capability
    data = call(ctx, "alert_rule.add", params)
    if as_json:
        return print_json(data)
    click.echo(f"rule {data['name']}: {data['expr']} ({data['level']})")


@rules.command("remove")
@click.argument("name")
@json_option
@click.pass_context
def rules_remove(ctx, name, as_json):
    """Remove rule NAME; its open alerts resolve."""
    data = call(ctx, "alert_rule.remove", {"name": name})
    if as_json:
        return print_json(data)
    click.echo(f"rule {name} removed ({data['resolved']} open alerts resolved)")
