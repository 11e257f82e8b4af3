"""`architect backup` (now, or --every on the master) and `architect restore`."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import click

from architect.broker import backup_pg
from architect.broker import backup as backup_mod
from architect.broker.backup import BackupError, backup as do_backup, restore as do_restore
from architect.bus.errors import BusError
from architect.bus.transport import local_bus_dir
from architect.cli.common import cli_key_name, load_config, print_json
from architect.client import ArchitectError, Client

MASTER_DAEMONS = ("broker", "server", "up")


def _keep_days(ctx, param, value):
    if value is not None and not 0 <= value <= 36500:
        raise click.BadParameter("keep-days must be 0 (keep all) to 36500")
    return value


def _progress(enabled: bool):
    """(pages callback, close): a click progress bar on stderr when it is a terminal."""
    state = {"bar": None}

    def step(copied, total):
        if not enabled:
            return
        if state["bar"] is None:
            state["bar"] = click.progressbar(length=total, label="backup", file=sys.stderr,
                                             show_pos=True)
            state["bar"].__enter__()
        bar = state["bar"]
        bar.update(copied - bar.pos)

    def close():
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
    return step, close


@click.command()
@click.argument("out", required=False)
@click.option("--data-dir", help="Folder of architect.db [ARCHITECT_DATA_DIR, ./data].")
@click.option("--keep-days", type=float, callback=_keep_days,
              help="After the copy, remove this tool's copies (architect-YYYYmmdd-HHMMSS.db / "
                   ".dump) older than this many days in the same folder; the newest always "
                   "stays, other files are never touched. With --every: the schedule's.")
@click.option("--every", help="Have the master take a backup periodically instead (1d, 12h, "
              "30m, at least 60 s; 'off' stops it): stored on the master, run by the broker.")
@click.option("--status", "show_status", is_flag=True,
              help="Show the master's periodic backup: every, keep-days, last and next.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def backup(ctx, out, data_dir, keep_days, every, show_status, as_json):
    """Copy the database while the cluster runs: SQLite's online backup (one consistent
    snapshot) then an integrity check, or on PostgreSQL (ARCHITECT_DATABASE_URL) pg_dump in
    custom format then pg_restore --list. OUT defaults to
    BACKUP_DIR/architect-YYYYmmdd-HHMMSS.db (.dump on PostgreSQL), BACKUP_DIR being
    ARCHITECT_BACKUP_DIR or DATA_DIR/backups. A progress bar shows on a terminal.

    --every asks the master's broker (admin) to do it on its own from now on; see
    docs/BACKUP.md."""
    if every is not None or show_status:
        return _schedule(ctx, every, keep_days, show_status, out, as_json)
    cfg = load_config(ctx, data_dir=data_dir)
    folder = Path(cfg.backup_dir or Path(cfg.data_dir) / "backups")
    tty = sys.stderr.isatty() and not as_json
    step, close = _progress(tty)
    try:
        if cfg.database_url:
            target = out or backup_mod.default_path(folder, "dump")
            say = (lambda text: click.echo(f"backup: {text}", err=True)) if tty else None
            result = backup_pg.backup(cfg.database_url, target, say=say)
        else:
            target = out or backup_mod.default_path(folder, "db")
            result = do_backup(cfg.db_path, target, progress=step)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        close()
    result["pruned"] = backup_mod.prune(Path(result["backup"]).parent, keep_days,
                                        keep=result["backup"]) if keep_days else []
    if as_json:
        return print_json(result)
    click.echo(f"backup {result['backup']}: {result['bytes']} bytes, integrity "
               f"{result['integrity']}, {result['seconds']}s")
    for path in result["pruned"]:
        click.echo(f"pruned {path}")


def _schedule(ctx, every, keep_days, show_status, out, as_json):
    from architect.cli.common import call
    if out:
        raise click.BadParameter("OUT goes with a backup now; the master's periodic copies "
                                 "go in its backup dir", param_hint="OUT")
    if every is not None:
        params = {"every": every}
        if keep_days is not None:
            params["keep_days"] = keep_days
        data = call(ctx, "backup.schedule", params)
    else:
        data = call(ctx, "backup.status")
    if as_json:
        return print_json(data)
    if not data["every"]:
        click.echo(f"no periodic backup (backup dir {data['directory']})")
    else:
        click.echo(f"every {_span(data['every'])}, keep {data['keep_days']:g} days "
                   f"(0: all), into {data['directory']}; next "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(data['next_due']))}")
    last = data.get("last")
    if last:
        when = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(data["last_at"]))
        click.echo(f"last {when}: " + (f"failed: {last['error']}" if "error" in last else
                                       f"{last['backup']}, {last['bytes']} bytes"))


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def broker_running(cfg) -> str | None:
    """Why a broker may be using this data dir (its bus lock, a master daemon's pid file, or
    an answer on its bus), or None."""
    from architect import daemon
    from architect.bus import localbus
    if localbus.in_use(local_bus_dir(cfg.data_dir)):
        return f"a broker holds the bus lock in {local_bus_dir(cfg.data_dir)}"
    for name in MASTER_DAEMONS:
        pid = daemon.read_pid(name, cfg.state_path)
        if pid is not None:
            return f"`architect {name} --daemon` runs (pid {pid}, pid file in {cfg.state_path})"
    try:  # this data dir's own bus (on a secured one, with the master's local key)
        with Client.from_config(dataclasses.replace(cfg, dashboard_url=""),
                                key_name=cli_key_name(), timeout=1.0) as client:
            client.call("ping")
        return "a broker answers on this data dir's bus"
    except (ArchitectError, BusError):
        return None


@click.command()
@click.argument("backup_file")
@click.option("--data-dir", help="Folder of architect.db [ARCHITECT_DATA_DIR, ./data].")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def restore(ctx, backup_file, data_dir, as_json):
    """Replace the database with BACKUP_FILE. The broker must be stopped (refused while its
    bus lock, a master daemon's pid file or its bus says it runs). The copy is checked
    first (integrity_check, an Architect database of a schema this version knows), written
    beside the database, fsynced and swapped in atomically; the current database is kept as
    architect.db.before-restore.<time>. On PostgreSQL: a pg_dump of the current database in
    DATA_DIR/backups/, then pg_restore in one transaction."""
    cfg = load_config(ctx, data_dir=data_dir)
    why = broker_running(cfg)
    if why:
        raise click.ClickException(f"a broker is running on this bus: stop it first "
                                   f"(./deploy.sh stop, or architect broker --stop): {why}")
    try:
        if cfg.database_url:
            result = backup_pg.restore(backup_file, cfg.database_url, f"{cfg.data_dir}/backups")
        else:
            result = do_restore(backup_file, cfg.db_path)
    except BackupError as exc:
        raise click.ClickException(f"{exc}; nothing was changed") from None
    if as_json:
        return print_json(result)
    click.echo(f"restored {result['restored']} from {result['from']}"
               + (f" (previous kept as {result['previous']})" if result["previous"] else ""))


@click.group()
def keys():
    """Who may talk on the secured (CURVE) bus: list, accept pending nodes, revoke."""


@keys.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_list(ctx, as_json):
    """Authorized and pending keys."""
    from architect.cli.common import call
    data = call(ctx, "keys.list")
    if as_json:
        return print_json(data)
    if not data["secured"]:
        return click.echo("the bus is not secured (CURVE off: it binds to loopback)")
    click.echo("authorized: " + (", ".join(data["authorized"]) or "-"))
    click.echo("pending:    " + (", ".join(data["pending"]) or "-"))


@keys.command()
@click.argument("name")
@click.pass_context
def accept(ctx, name):
    """Let the pending node NAME on the bus."""
    from architect.cli.common import call
    call(ctx, "keys.accept", {"name": name})
    click.echo(f"{name}: authorized")


@keys.command()
@click.argument("name")
@click.pass_context
def revoke(ctx, name):
    """Refuse NAME's key from now on."""
    from architect.cli.common import call
    call(ctx, "keys.revoke", {"name": name})
    click.echo(f"{name}: revoked")
