"""`architect ssh`: run commands on nodes over the master's SSH pool, and its upkeep."""

from __future__ import annotations

import getpass
import json

import click

from architect.cli.common import call, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _who() -> str:
    return f"cli:{getpass.getuser()}"


def _print_result(r: dict) -> None:
    head = f"== {r.get('node')} ({r.get('target')}) "
    head += f"exit {r['exit_code']}" if r.get("exit_code") is not None else "no exit code"
    head += f", {r.get('duration', 0):.2f}s" + (", output truncated" if r.get("truncated") else "")
    click.echo(head)
    if r.get("stdout"):
        click.echo(r["stdout"], nl=not r["stdout"].endswith("\n"))
    if r.get("stderr"):
        click.echo(r["stderr"], nl=not r["stderr"].endswith("\n"), err=True)
    if r.get("error"):
        click.echo(f"error: {r['error']}", err=True)


@click.group()
def ssh():
    """Run commands on nodes over SSH from the master (no agent needed on the node)."""


@ssh.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", type=float, help="Seconds before the command is cut [60].")
@json_option
@click.pass_context
def exec_(ctx, node, command, timeout, as_json):
    """Run COMMAND on NODE: architect ssh exec web-1 -- df -h"""
    params = {"node": node, "command": " ".join(command), "who": _who()}
    if timeout:
        params["timeout"] = timeout
    r = call(ctx, "ssh.execute", params, timeout=(timeout or 60) + 60)
    if as_json:
        return print_json(r)
    _print_result(r)
    raise SystemExit(0 if r.get("exit_code") == 0 and not r.get("error") else 1)


@ssh.command(context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--node", "nodes", multiple=True, help="Only these nodes (repeatable) [all].")
@click.option("--require", "requirements", multiple=True, help="Only nodes with this capability.")
@click.option("--timeout", type=float, help="Seconds per node before its command is cut [60].")
@json_option
@click.pass_context
def broadcast(ctx, command, nodes, requirements, timeout, as_json):
    """Run COMMAND on every node at once: architect ssh broadcast -- uptime"""
    params = {"command": " ".join(command), "who": _who(), "requirements": list(requirements)}
    if nodes:
        params["nodes"] = list(nodes)
    if timeout:
        params["timeout"] = timeout
    progress = _BroadcastProgress(ctx, params["command"], params["who"]) \
        if not as_json and _tty() else None
    try:
        out = call(ctx, "ssh.broadcast", params, timeout=(timeout or 60) + 90)
    finally:
        if progress is not None:
            progress.stop()
    if as_json:
        return print_json(out)
    for r in out["results"]:
        _print_result(r)
    click.echo(f"-- {out['ok']} ok, {out['failed']} failed, {out['duration']:.2f}s")
    raise SystemExit(0 if out["failed"] == 0 else 1)


def _tty() -> bool:
    import sys
    return sys.stderr.isatty()


class _BroadcastProgress:
    """On a terminal: "-- 3/10 nodes done, 2.1s" on stderr while a broadcast runs, counted
    from the SSH audit rows (written before each command runs, updated as each ends),
    polled on a thread with its own bus connection (a zmq socket is never shared)."""

    def __init__(self, ctx, command: str, who: str):
        import threading
        import time
        from architect.cli.common import connect, load_config
        self.cfg, self.connect = load_config(ctx), connect
        self.command, self.who, self.t0 = command, who, time.time()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import time
        try:
            client = self.connect(self.cfg)
        except Exception:
            return
        shown = False
        try:
            while not self.done.wait(0.5):
                try:
                    rows = client.call("ssh.audit", {"limit": 10_000}, timeout=2.0)
                except Exception:
                    continue
                mine = [r for r in rows if r.get("who") == self.who and
                        r.get("command") == self.command and (r.get("ts") or 0) >= self.t0 - 1]
                if not mine:
                    continue
                ended = sum(1 for r in mine if r.get("status") != "started")
                click.echo(f"\r-- {ended}/{len(mine)} nodes done, {time.time() - self.t0:.1f}s",
                           nl=False, err=True)
                shown = True
        finally:
            if shown:
                click.echo("\r\033[K", nl=False, err=True)
            client.close()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(3)


@ssh.command()
@json_option
@click.pass_context
def pool(ctx, as_json):
    """Connection pool figures per host."""
    data = call(ctx, "ssh.pool.stats")
    if as_json:
        return print_json(data)
    rows = [{"host": h, **v} for h, v in data["hosts"].items()]
    if rows:
        print_table(rows, [(k, k) for k in ("host", "open", "in_use", "idle", "created",
                                            "reused", "failures")])
    click.echo("total: " + ", ".join(f"{k} {v}" for k, v in data["totals"].items()))


@ssh.command()
@click.pass_context
def cleanup(ctx):
    """Close idle pooled connections."""
    click.echo(f"closed {call(ctx, 'ssh.pool.cleanup')['closed']} idle connections")


@ssh.command()
@click.argument("node")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def trust(ctx, node, yes):
    """Record NODE's current SSH host key as trusted (needed once per node; an unknown or
    changed key is refused otherwise)."""
    if not yes:
        click.confirm(f"Trust the host key that {node} presents now?", abort=True)
    r = call(ctx, "ssh.trust", {"node": node, "who": _who()}, timeout=60)
    if not r.get("ok"):
        raise click.ClickException(r.get("error") or "trust failed")
    click.echo(f"trusted {r['host']} ({r['key_type']})")


@ssh.command()
@click.option("--node", help="Only this node.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
def audit(ctx, node, limit, as_json):
    """Who ran what, where and how it ended (every SSH attempt is recorded first)."""
    rows = call(ctx, "ssh.audit", {"limit": limit, **({"node": node} if node else {})})
    if as_json:
        return print_json(rows)
    print_table(rows, [("id", "id"), ("who", "who"), ("action", "action"), ("node", "node"),
                       ("status", "status"), ("exit", "exit_code"), ("command", "command")])


def set_ssh_command():
    @click.command("ssh")
    @click.argument("node")
    @click.option("--user", help="SSH user.")
    @click.option("--port", type=click.IntRange(1, 65535), help="SSH port.")
    @click.option("--key-file", help="Private key on the master [~/.ssh/architect_key].")
    @click.option("--host", help="Address to connect to [the node's IP].")
    @json_option
    @click.pass_context
    def set_ssh(ctx, node, user, port, key_file, host, as_json):
        """Set how the master reaches NODE over SSH."""
        details = {k: v for k, v in {"user": user, "port": port, "key_file": key_file,
                                     "host": host}.items() if v is not None}
        data = call(ctx, "node.set_ssh", {"node": node, "ssh": details})
        if as_json:
            return print_json(data)
        click.echo(f"{data['name']}: ssh {json.dumps(data['ssh'])}")
    return set_ssh
