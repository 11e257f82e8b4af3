"""`architect schedules`: add, list, show, pause, resume, remove, run (the schedule.* methods)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import click

from architect.bus.protocol import SUCCEEDED
from architect.cli.common import ago, call, print_json, print_table
from architect.cli.tasks import _print_result, _wait, json_option, task_options, task_spec


@click.group()
def schedules():
    """Tasks that run on a schedule: cron or every N seconds.

    The broker submits the schedule's task each time it is due (times are UTC unless the
    schedule has a --tz). Examples:

    \b
      architect schedules add nightly --cron "0 3 * * *" --tz Europe/Berlin --command "backup.sh"
      architect schedules add ping --every 30s --command "uptime" --require docker
      architect schedules list
      architect schedules show ping --runs 50
      architect schedules run ping --wait
    """


# --- add ----------------------------------------------------------------------------------

@schedules.command()
@click.argument("name")
@click.option("--cron", help='A cron expression: 5 fields, or 6 with seconds last, e.g. '
              '"*/5 * * * *".')
@click.option("--tz", help="Time zone of the cron expression, e.g. Europe/Berlin [UTC].")
@click.option("--every", help="An interval instead of --cron: seconds, or 30s, 5m, 2h, 1d.")
@click.option("--missed", type=click.Choice(["skip", "once"]), help="Due times passed while "
              "the broker was down: skip them, or run once when it is back [skip].")
@click.option("--overlap", type=click.Choice(["allow", "skip"]), help="When the previous run's "
              "task is still going: run anyway, or skip this run [allow].")
@click.option("--paused", is_flag=True, help="Add it paused: nothing runs until resumed.")
@task_options
@json_option
@click.pass_context
def add(ctx, name, cron, tz, every, missed, overlap, paused, task_type, command, argv, function,
        args, payload, requirements, node, timeout, priority, retries, max_attempts, as_json):
    """Add a schedule that submits a task.

    Give --cron or --every; the task options are those of `tasks submit`:

    \b
      architect schedules add ping --every 30s --command "uptime"
      architect schedules add report --cron "0 8 * * 1-5" --tz Europe/Berlin \\
          --function reports:daily --arg '"sales"' --require db --missed once
    """
    if (cron is None) == (every is None):
        raise click.UsageError("give exactly one of --cron and --every")
    if tz and every is not None:
        raise click.UsageError("--tz goes with --cron (an --every interval has no time zone)")
    task_type, body = task_spec(task_type, command, argv, function, args, payload)
    params = {"name": name, "cron": cron, "every": every, "tz": tz, "missed": missed,
              "overlap": overlap, "paused": paused or None, "task_type": task_type,
              "payload": body, "requirements": list(requirements) or None, "node": node,
              "timeout": timeout, "priority": priority, "retries": retries,
              "max_attempts": max_attempts}
    s = call(ctx, "schedule.add", {k: v for k, v in params.items() if v is not None})
    if as_json:
        return print_json(s)
    click.echo(f"schedule {s['name']}: {s['when']}, "
               + ("paused" if s["paused"] else f"next run {_at(s['next_due'])}"))


# --- reading ------------------------------------------------------------------------------

def _at(ts, now: float | None = None) -> str | None:
    """'2025-01-31 12:00:05Z (in 12s)' / '(3m ago)'."""
    if ts is None:
        return None
    delta = ts - (time.time() if now is None else now)
    rel = "now" if abs(delta) < 0.5 else f"in {_span(delta)}" if delta > 0 else \
        f"{_span(-delta)} ago"
    return f"{datetime.fromtimestamp(ts, timezone.utc):%Y-%m-%d %H:%M:%S}Z ({rel})"


def _span(seconds: float) -> str:
    return f"{seconds / 86400:.1f}d" if seconds >= 2 * 86400 else ago(seconds)


def _last_task(s: dict) -> str | None:
    if s.get("last_task") is None:
        return None
    return f"{s['last_task']} {s.get('last_task_status') or '?'}"


@schedules.command("list")
@json_option
@click.pass_context
def list_(ctx, as_json):
    """Every schedule, by name.

    Each with when it runs, its next and last run, the last run's outcome and its task.
    """
    rows = call(ctx, "schedule.list", {})
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no schedules")
    now = time.time()
    print_table([{**s, "paused": "yes" if s["paused"] else "no",
                  "next": None if s["paused"] else _at(s["next_due"], now),
                  "last": _at(s["last_due"], now), "task": _last_task(s)} for s in rows],
                [("name", "name"), ("when", "when"), ("paused", "paused"), ("next run", "next"),
                 ("last run", "last"), ("last outcome", "last_outcome"), ("last task", "task")])


@schedules.command()
@click.argument("name")
@click.option("--runs", type=click.IntRange(0, 500), default=20, show_default=True,
              help="How many of the latest runs to list.")
@json_option
@click.pass_context
def show(ctx, name, runs, as_json):
    """One schedule and its latest runs.

    Its task, when it runs, and its latest runs, newest first:

    \b
      architect schedules show ping --runs 50
    """
    s = call(ctx, "schedule.get", {"name": name, "runs": runs})
    if as_json:
        return print_json(s)
    now = time.time()
    spec = dict(s["spec"])
    lines = [("name", s["name"]), ("when", s["when"]), ("paused", "yes" if s["paused"] else "no"),
             ("missed", s["missed"]), ("overlap", s["overlap"]),
             ("next run", None if s["paused"] else _at(s["next_due"], now)),
             ("last run", _at(s["last_due"], now)), ("last outcome", s["last_outcome"]),
             ("last task", _last_task(s)), ("task_type", spec.pop("task_type", None)),
             ("payload", json.dumps(spec.pop("payload", {})))]
    lines += [(k, ", ".join(v) if isinstance(v, list) else v) for k, v in sorted(spec.items())]
    lines += [("created", f"{_at(s['created_at'], now)} by {s.get('created_by') or '?'}"),
              ("updated", _at(s["updated_at"], now))]
    for key, value in lines:
        click.echo(f"{key:14} {'-' if value is None else value}")
    if not runs:
        return
    if not s["runs"]:
        return click.echo("\nno runs yet")
    click.echo()
    print_table([{**r, "due": _at(r["due"], now), "at": _at(r["at"], now)} for r in s["runs"]],
                [("due", "due"), ("ran", "at"), ("outcome", "outcome"), ("task", "task_id"),
                 ("status", "task_status"), ("detail", "detail")])


# --- changing -----------------------------------------------------------------------------

def _changed(ctx, method: str, name: str, as_json: bool, done: str) -> None:
    s = call(ctx, method, {"name": name})
    if as_json:
        return print_json(s)
    click.echo(f"schedule {s['name']} {done}"
               + ("" if s["paused"] else f": next run {_at(s['next_due'])}"))


@schedules.command()
@click.argument("name")
@json_option
@click.pass_context
def pause(ctx, name, as_json):
    """Pause a schedule.

    Nothing runs until it is resumed (`schedules run` still runs it on demand).
    """
    _changed(ctx, "schedule.pause", name, as_json, "paused")


@schedules.command()
@click.argument("name")
@json_option
@click.pass_context
def resume(ctx, name, as_json):
    """Resume a paused schedule.

    It next runs at its first due time from now: the ones while paused are not made up.
    """
    _changed(ctx, "schedule.resume", name, as_json, "resumed")


@schedules.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def remove(ctx, name, yes, as_json):
    """Remove a schedule and its runs.

    Asks first unless --yes. The tasks it submitted stay.
    """
    if not yes:
        click.confirm(f"remove schedule {name} and its runs?", abort=True)
    out = call(ctx, "schedule.remove", {"name": name})
    if as_json:
        return print_json(out)
    click.echo(f"schedule {out['name']} removed")


@schedules.command()
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait for the task's end; print its output; exit "
              "with its exit code (1 if it did not succeed without one).")
@json_option
@click.pass_context
def run(ctx, name, wait, as_json):
    """Run a schedule's task now.

    Paused or not; its due times stay as they were. Prints the task id:

    \b
      architect schedules run ping --wait
    """
    out = call(ctx, "schedule.run", {"name": name})
    if not wait:
        if as_json:
            return print_json(out)
        return click.echo(f"task {out['task_id']}")
    task = _wait(ctx, out["task_id"])
    if as_json:
        print_json(task)
    else:
        click.echo(f"task {task['id']} {task['status']}", err=True)
        _print_result(task)
    code = (task.get("result") or {}).get("exit_code")
    ok = task["status"] == SUCCEEDED
    raise SystemExit(0 if ok else code if isinstance(code, int) and 0 < code < 256 else 1)
