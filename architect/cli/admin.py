"""`architect backup` and `architect restore`."""

from __future__ import annotations

import dataclasses
import time

import click

from architect import backup_pg
from architect.backup import BackupError, backup as do_backup, restore as do_restore
from architect.bus.errors import BusError
from architect.bus.transport import local_bus_dir
from architect.cli.common import cli_key_name, load_config, print_json
from architect.client import ArchitectError, Client


@click.command()
@click.argument("out", required=False)
@click.option("--data-dir", help="Folder of architect.db [ARCHITECT_DATA_DIR, ./data].")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def backup(ctx, out, data_dir, as_json):
    """Copy the database while the cluster runs: SQLite's online backup then an integrity
    check, or on PostgreSQL (ARCHITECT_DATABASE_URL) pg_dump in custom format then
    pg_restore --list. OUT defaults to DATA_DIR/backups/architect-YYYYmmdd-HHMMSS.db (.dump
    on PostgreSQL)."""
    cfg = load_config(ctx, data_dir=data_dir)
    stamp = time.strftime('%Y%m%d-%H%M%S')
    try:
        if cfg.database_url:
            result = backup_pg.backup(cfg.database_url,
                                      out or f"{cfg.data_dir}/backups/architect-{stamp}.dump")
        else:
            result = do_backup(cfg.db_path, out or f"{cfg.data_dir}/backups/architect-{stamp}.db")
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        return print_json(result)
    click.echo(f"backup {result['backup']}: {result['bytes']} bytes, integrity "
               f"{result['integrity']}, {result['seconds']}s")


@click.command()
@click.argument("backup_file")
@click.option("--data-dir", help="Folder of architect.db [ARCHITECT_DATA_DIR, ./data].")
@click.pass_context
def restore(ctx, backup_file, data_dir):
    """Replace the database with BACKUP_FILE. The broker must be stopped; the current
    database is kept as architect.db.before-restore.<time> (on PostgreSQL: a pg_dump of it in
    DATA_DIR/backups/, then pg_restore in one transaction)."""
    cfg = load_config(ctx, data_dir=data_dir)
    from architect.bus import localbus
    running = click.ClickException("a broker is running on this bus: stop it first "
                                   "(./deploy.sh stop, or architect broker --stop)")
    if localbus.in_use(local_bus_dir(cfg.data_dir)):
        raise running
    try:  # this data dir's own bus (on a secured one, with the master's local key)
        with Client.from_config(dataclasses.replace(cfg, dashboard_url=""),
                                key_name=cli_key_name(), timeout=1.0) as client:
            client.call("ping")
        raise running
    except (ArchitectError, BusError):
        pass  # nobody answers: safe to replace the file
    try:
        if cfg.database_url:
            result = backup_pg.restore(backup_file, cfg.database_url, f"{cfg.data_dir}/backups")
        else:
            result = do_restore(backup_file, cfg.db_path)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
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
