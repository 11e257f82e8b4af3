"""`architect tasks`: submit, list, show, cancel, logs."""

from __future__ import annotations

import json
import shlex
import sys
import time

import click

from architect.bus.protocol import FINAL, STATES, SUCCEEDED
from architect.cli.common import call, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def tasks():
    """Submit and follow tasks."""


def task_options(command):
    """The options that say what a task runs and how (tasks submit, schedules add)."""
    for option in reversed([
        click.option("--type", "task_type", help="shell, python or a type your workers offer "
                     "[python with --function, else shell]."),
        click.option("--command", help="shell: the command line (run by /bin/sh -c)."),
        click.option("--argv", help="shell: run this argv directly (split like a shell would)."),
        click.option("--function", help='python: "module:function".'),
        click.option("--arg", "args", multiple=True, help="python: a positional argument (JSON, "
                     "or a plain string)."),
        click.option("--payload", help="The whole payload as JSON (instead of "
                     "--command/--function)."),
        click.option("--require", "requirements", multiple=True,
                     help="A capability the node must have."),
        click.option("--node", help="Pin to this node (name or id)."),
        click.option("--timeout", type=float, help="Seconds before the task is killed."),
        click.option("--priority", type=int, help="Higher runs first [0]."),
        click.option("--retries", type=int, help="Re-runs after failure, with exponential "
                     "backoff [0]."),
        click.option("--max-attempts", type=int, help="Runs allowed when workers are lost [3]."),
    ]):
        command = option(command)
    return command


def task_spec(task_type, command, argv, function, args, payload) -> tuple[str, dict]:
    """(task type, payload) from the task options."""
    if payload:
        try:
            body = json.loads(payload)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    elif command or argv:
        body = {"command": command} if command else {"argv": shlex.split(argv)}
    elif function:
        body = {"function": function, "args": [_arg(a) for a in args]}
    else:
        raise click.UsageError("give --command, --argv, --function or --payload")
    return task_type or ("python" if function else "shell"), body


@tasks.command()
@task_options
@click.option("--key", "idempotency_key", help="Idempotency key: the same key returns the same task.")
@click.option("--queue", help="Its queue [default]; workers take from the queues they serve.")
@click.option("--soft-timeout", type=float, help="shell: seconds before the process group "
              "gets SIGTERM to clean up ($ARCHITECT_SOFT_TIMEOUT), below --timeout.")
@click.option("--label", "labels", multiple=True, help="key=value, to filter and search by "
              "(repeatable).")
@click.option("--unique-key", help="With --unique-for: a second submit with this key in the "
              "window gets the first task back (unlike --key, which is forever).")
@click.option("--unique-for", help="The window of --unique-key (30s, 5m, 2h, 1d).")
@click.option("--countdown", help="Start no sooner than this from now (30s, 5m, 2h); it waits "
              "as scheduled until then.")
@click.option("--run-at", type=float, help="Start no sooner than this time (Unix seconds).")
@click.option("--expires-in", help="Never run it if it is still waiting this long from now "
              "(30s, 5m, 2h): it ends expired.")
@click.option("--retry-on", "retry_on", multiple=True, help="Retry (--retries) only failures "
              "that match: an exit code, a python exception class name, or timeout "
              "(repeatable).")
@click.option("--no-retry-on", "no_retry_on", multiple=True, help="Never retry failures that "
              "match (exit code, exception class name or timeout; repeatable).")
@click.option("--wait", "wait", is_flag=True, help="Wait for the end; print the output; exit with "
              "the task's exit code (1 if it did not succeed without one).")
@json_option
@click.pass_context
def submit(ctx, task_type, command, argv, function, args, payload, requirements, node, timeout,
           priority, retries, max_attempts, idempotency_key, queue, soft_timeout, labels,
           unique_key,
           unique_for, countdown, run_at, expires_in, retry_on, no_retry_on, wait, as_json):
    """Submit a task, e.g. architect tasks submit --command "uptime" --require docker --wait"""
    task_type, body = task_spec(task_type, command, argv, function, args, payload)
    params = {"task_type": task_type, "payload": body, "requirements": list(requirements),
              "node": node, "timeout": timeout, "priority": priority, "retries": retries,
              "max_attempts": max_attempts, "idempotency_key": idempotency_key,
              "labels": dict(_label(x) for x in labels) or None,
              "soft_timeout": soft_timeout, "queue": queue,
              "unique_key": unique_key,
              "unique_for": _seconds(unique_for, "--unique-for") if unique_for else None,
              "countdown": _seconds(countdown, "--countdown") if countdown else None,
              "run_at": run_at,
              "expires_in": _seconds(expires_in, "--expires-in") if expires_in else None,
              "retry_on": [_rule(r) for r in retry_on] or None,
              "no_retry_on": [_rule(r) for r in no_retry_on] or None,
              "submitted_by": "cli"}
    created = call(ctx, "task.submit", {k: v for k, v in params.items() if v is not None})
    if not wait:
        if as_json:
            return print_json(created)
        return click.echo(f"task {created['id']} {created['status']}"
                          + ("" if created["created"] else " (the same unique key's, still "
                             "in its window)" if created.get("unique") else
                             " (existing, same key)"))
    task = _wait(ctx, created["id"], progress=not as_json and sys.stderr.isatty())
    if as_json:
        print_json(task)
    else:
        _print_result(task)
    code = (task.get("result") or {}).get("exit_code")
    raise SystemExit(code if isinstance(code, int) and 0 <= code < 256 and task["status"] != SUCCEEDED
                     else (0 if task["status"] == SUCCEEDED else 1))


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r}: use key=value", param_hint="--label")
    return key, value


def _rule(text: str):
    """An exit code (an int) or a name (exception class, or timeout)."""
    return int(text) if text.lstrip("-").isdigit() else text


def _arg(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _wait(ctx, task_id: int, progress: bool = False) -> dict:
    """Until the task is final. progress (a terminal, not --json): a spinner with the
    elapsed time and the task's state on stderr, cleared at the end."""
    started, frames, i = time.monotonic(), "|/-\\", 0
    try:
        while True:
            task = call(ctx, "task.wait", {"id": task_id, "timeout": 0.5 if progress else 30})
            if task["final"]:
                return task
            if progress:
                i += 1
                click.echo(f"\r{frames[i % 4]} task {task_id} {task.get('status')}, "
                           f"{time.monotonic() - started:.0f}s", nl=False, err=True)
    finally:
        if progress and i:
            click.echo("\r\033[K", nl=False, err=True)


def _print_result(task: dict) -> None:
    result = task.get("result") or {}
    if result.get("stdout"):
        click.echo(result["stdout"], nl=not result["stdout"].endswith("\n"))
    if result.get("stderr"):
        click.echo(result["stderr"], err=True, nl=not result["stderr"].endswith("\n"))
    if result.get("result") is not None:
        click.echo(json.dumps(result["result"]))
    if task["status"] != SUCCEEDED:
        click.echo(f"task {task['id']} {task['status']}: {task.get('error')}", err=True)


@tasks.command("list")
@click.option("--status", type=click.Choice(list(STATES)))
@click.option("--node", help="Tasks placed on this node.")
@click.option("--type", "task_type", help="Only this task type.")
@click.option("--label", help="Only tasks with this label (key=value).")
@click.option("--search", "-s", help="Only tasks whose command or function, node, labels or "
              "error contain this.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@click.pass_context
def list_(ctx, status, node, task_type, label, search, limit, as_json):
    """Recent tasks, newest first."""
    params = {"status": status, "node": node, "task_type": task_type, "label": label,
              "search": search, "limit": limit}
    rows = call(ctx, "task.list", {k: v for k, v in params.items() if v is not None})
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no tasks")
    print_table([{**r, "what": _describe(r), "age": time.strftime(
        "%H:%M:%S", time.localtime(r["created_at"])),
        "took": f"{r['finished_at'] - r['started_at']:.2f}s"
        if r.get("finished_at") and r.get("started_at") else None} for r in rows],
        [("id", "id"), ("type", "task_type"), ("status", "status"), ("node", "assigned_node"),
         ("try", "attempt"), ("created", "age"), ("took", "took"), ("what", "what")])


def _describe(task: dict) -> str:
    p = task.get("payload") or {}
    text = p.get("command") or " ".join(p.get("argv") or []) or p.get("function") or ""
    return text if len(text) <= 50 else text[:47] + "..."


@tasks.command()
@click.argument("task_id", type=int)
@json_option
@click.pass_context
def show(ctx, task_id, as_json):
    """One task: state, placement breakdown, result, history."""
    task = call(ctx, "task.get", {"id": task_id, "events": True})
    if as_json:
        return print_json(task)
    for key in ("id", "task_type", "status", "attempt", "max_attempts", "assigned_node",
                "worker_id", "priority", "timeout", "error"):
        click.echo(f"{key:14} {task.get(key)}")
    click.echo(f"{'payload':14} {json.dumps(task['payload'])}")
    if task.get("requirements"):
        click.echo(f"{'requirements':14} {', '.join(task['requirements'])}")
    if task.get("placement"):
        p = task["placement"]
        click.echo(f"{'score':14} {p['total']} (cpu {p['cpu']}, memory {p['memory']}, "
                   f"tasks {p['tasks']}, health {p['health']})")
    for node, why in (task.get("waiting_reasons") or {}).items():
        click.echo(f"  waiting: {node}: {why}")
    result = task.get("result") or {}
    if result:
        click.echo(f"{'exit_code':14} {result.get('exit_code')}   duration {result.get('duration', 0):.3f}s"
                   + ("   (output truncated)" if result.get("truncated") else ""))
    for ev in task.get("events", []):
        when = time.strftime("%H:%M:%S", time.localtime(ev["ts"]))
        click.echo(f"  {when} {ev['event']:<16} attempt {ev['attempt']} {ev['node'] or ''} "
                   f"{json.dumps(ev['detail']) if ev['detail'] else ''}")


@tasks.command()
@click.argument("task_id", type=int)
@json_option
@click.pass_context
def cancel(ctx, task_id, as_json):
    """Cancel a queued or running task."""
    task = call(ctx, "task.cancel", {"id": task_id})
    if as_json:
        return print_json(task)
    state = task["status"] if task["status"] in FINAL else "cancel requested"
    click.echo(f"task {task_id}: {state}")


WINDOW = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str, hint: str = "--since") -> float:
    text = text.strip()
    try:
        if text[-1:] in WINDOW:
            return float(text[:-1]) * WINDOW[text[-1]]
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use 30s, 5m, 1h, 7d or seconds",
                                 param_hint=hint) from None


@tasks.command()
@click.argument("task_id", type=int, required=False)
@click.option("--status", type=click.Choice(["failed", "timed_out", "expired"]),
              help="Without TASK_ID: retry the tasks that ended so [failed and timed_out].")
@click.option("--since", default="1d", show_default=True,
              help="Without TASK_ID: that ended within this window (30m, 1h, 7d).")
@click.option("--node", help="Without TASK_ID: only those that ran on this node.")
@click.option("--type", "task_type", help="Without TASK_ID: only tasks of this type.")
@click.option("--queue", help="Without TASK_ID: only tasks of this queue.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Only count them.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before retrying many.")
@json_option
@click.pass_context
def retry(ctx, task_id, status, since, node, task_type, queue, limit, dry_run, yes, as_json):
    """Run a failed or timed-out task again, as the same task with its history kept (a lost
    task ends failed, so it can be retried too). Without TASK_ID, every task that ended so
    within --since, after a count and a confirmation:

    \b
      architect tasks retry 42
      architect tasks retry --status failed --since 1h --node web-1
      architect tasks retry --status failed --since 1h --queue emails
    """
    if task_id is not None:
        task = call(ctx, "task.retry", {"id": task_id})
        if as_json:
            return print_json(task)
        return click.echo(f"task {task_id}: {task['status']} again (attempt {task['attempt']} "
                          "so far)")
    params = {"status": status, "since": _seconds(since), "node": node,
              "task_type": task_type, "queue": queue, "limit": limit}
    params = {k: v for k, v in params.items() if v is not None}
    found = call(ctx, "task.retry_many", {**params, "dry_run": True})
    what = status or "failed or timed_out"
    if dry_run or not found["count"]:
        if as_json:
            return print_json(found)
        return click.echo(f"{found['count']} tasks ended {what} in the last {since}"
                          + ("" if found["count"] else ": nothing to retry"))
    if not yes and not as_json:
        click.confirm(f"Retry {found['count']} tasks that ended {what} in the last {since}?",
                      abort=True)
    done = call(ctx, "task.retry_many", params)
    if as_json:
        return print_json(done)
    click.echo(f"{done['count']} tasks queued again")


@tasks.command()
@click.argument("task_id", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the task ends.")
@click.pass_context
def logs(ctx, task_id, follow):
    """Output of a task: streamed chunks while it runs, the kept stdout/stderr after."""
    last, attempt = 0, None

    def drain() -> None:
        nonlocal last, attempt
        for c in call(ctx, "task.output", {"id": task_id, "after_id": last}):
            if attempt is not None and c["attempt"] != attempt:
                click.echo(f"--- attempt {c['attempt']} ---", err=True)
            attempt = c["attempt"]
            click.echo(c["data"], nl=False, err=c["stream"] == "stderr")
            last = c["id"]
    while True:
        drain()
        task = call(ctx, "task.get", {"id": task_id})
        if task["final"]:
            drain()  # what arrived between the two calls
            if attempt is None:  # nothing streamed (a short task): print what was kept
                _print_result(task)
            return
        if not follow:
            return
        time.sleep(0.5)
