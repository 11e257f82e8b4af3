"""`architect users`, `architect tokens`, `architect audit`, and `keys role` / `keys token`.

All speak to the broker over the bus with the master's own (admin) access: run them on the
master as the data dir's owner, or with an admin bus key.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import click

from architect.cli.admin import keys
from architect.cli.common import call, print_json, print_table
from architect.cli.inspect import json_option
WEB_ROLES = ("viewer", "operator", "admin")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '1h', '7d', '2w' → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 15m, 1h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _when(ts) -> str | None:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else None


# --- users ------------------------------------------------------------------------------
@click.group()
def users():
    """Web users and their roles: viewer (reads), operator (tasks, drain), admin (all)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(WEB_ROLES), default="viewer", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="At least 8 characters (asked for when not given) [ARCHITECT_NEW_PASSWORD].",
              envvar="ARCHITECT_NEW_PASSWORD")
@json_option
@click.pass_context
def users_add(ctx, name, role, password, as_json):
    """Add web user NAME. The password is stored as an argon2id hash."""
    data = call(ctx, "users.add", {"name": name, "role": role, "password": password})
    if as_json:
        return print_json(data)
    click.echo(f"{data['name']}: added as {data['role']}")


@users.command("passwd")
@click.argument("name")
@click.option("--password", help="The new password (asked for unless --role alone is given) "
              "[ARCHITECT_NEW_PASSWORD].", envvar="ARCHITECT_NEW_PASSWORD")
@click.option("--role", type=click.Choice(WEB_ROLES), help="A new role.")
@json_option
@click.pass_context
def users_passwd(ctx, name, password, role, as_json):
    """Set NAME's password and/or role."""
    if password is None and role is None:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    params = {"name": name}
    if password is not None:
        params["password"] = password
    if role is not None:
        params["role"] = role
    data = call(ctx, "users.passwd", params)
    if as_json:
        return print_json(data)
    click.echo(f"{data['name']}: updated ({data['role']})")


@users.command("remove")
@click.argument("name")
@click.pass_context
def users_remove(ctx, name):
    """Remove web user NAME."""
    call(ctx, "users.remove", {"name": name})
    click.echo(f"{name}: removed")


@users.command("list")
@json_option
@click.pass_context
def users_list(ctx, as_json):
    """Every web user with its role (ARCHITECT_USER, the bootstrap admin, is not listed)."""
    rows = call(ctx, "users.list")
    if as_json:
        return print_json(rows)
    print_table([{**r, "created": _when(r["created_at"])} for r in rows],
                [("name", "name"), ("role", "role"), ("created", "created"),
                 ("by", "created_by")])


# --- tokens -----------------------------------------------------------------------------
@click.group()
def tokens():
    """API tokens for scripts (sent as `Authorization: Bearer TOKEN`): create, list, revoke."""


@tokens.command("create")
@click.option("--role", type=click.Choice(WEB_ROLES), default="operator", show_default=True)
@click.option("--name", default="", help="A label, e.g. the script that uses it.")
@click.option("--ttl", help="Expire after this long (30m, 12h, 90d); default never.")
@json_option
@click.pass_context
def tokens_create(ctx, role, name, ttl, as_json):
    """Create an API token. It is printed once: store it now."""
    params = {"role": role, "name": name}
    if ttl:
        params["ttl"] = parse_duration(ttl)
    data = call(ctx, "tokens.create", params)
    if as_json:
        return print_json(data)
    click.echo(data["token"])
    click.echo(f"(token {data['id']}, role {data['role']}"
               + (f", expires {_when(data['expires_at'])}" if data["expires_at"] else "")
               + "; shown only this once)", err=True)


@tokens.command("list")
@click.option("--kind", type=click.Choice(["api", "join"]))
@json_option
@click.pass_context
def tokens_list(ctx, kind, as_json):
    """API and join tokens (never their secrets)."""
    rows = call(ctx, "tokens.list", {"kind": kind} if kind else {})
    if as_json:
        return print_json(rows)
    now = time.time()

    def state(r):
        if r["revoked_at"]:
            return "revoked"
        if r["expires_at"] and r["expires_at"] <= now:
            return "expired"
        if r["uses_left"] is not None and r["uses_left"] <= 0:
            return "used up"
        return "live"
    print_table([{**r, "state": state(r), "expires": _when(r["expires_at"]),
                  "uses": "-" if r["uses_left"] is None else r["uses_left"]} for r in rows],
                [("id", "id"), ("kind", "kind"), ("role", "role"), ("name", "name"),
                 ("state", "state"), ("expires", "expires"), ("uses left", "uses"),
                 ("used", "used_count")])


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.pass_context
def tokens_revoke(ctx, token_id):
    """Revoke token TOKEN_ID (see `tokens list`): it stops working at once."""
    call(ctx, "tokens.revoke", {"id": token_id})
    click.echo(f"token {token_id}: revoked")


# --- keys role / keys token ----------------------------------------------------------------
@keys.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["node", "viewer", "operator", "admin"]))
@click.pass_context
def keys_role(ctx, name, role):
    """Give bus key NAME the role ROLE (node keys speak only for their own node)."""
    data = call(ctx, "keys.role", {"name": name, "role": role})
    click.echo(f"{data['name']}: {data['role']}")


@keys.command("token")
@click.option("--ttl", default="1h", show_default=True, help="Valid for this long (15m, 1h, 7d).")
@click.option("--uses", type=click.IntRange(1, 100_000), default=1, show_default=True,
              help="How many nodes may join with it.")
@json_option
@click.pass_context
def keys_token(ctx, ttl, uses, as_json):
    """Mint a join token: `architect agent --dashboard URL` with ARCHITECT_JOIN_TOKEN=TOKEN
    joins the secured bus at once, as role node. Printed once."""
    data = call(ctx, "keys.token", {"ttl": parse_duration(ttl), "uses": uses})
    if as_json:
        return print_json(data)
    click.echo(data["token"])
    click.echo(f"(join token {data['id']}: {uses} use(s), expires {_when(data['expires_at'])})",
               err=True)


# --- audit ----------------------------------------------------------------------------------
@click.command()
@click.option("--since", help="Only the last … (15m, 24h, 7d) or since a date (2026-12-01).")
@click.option("--who", help="Only this caller (a key name, or web:USER).")
@click.option("--method", help="Only this method, e.g. task.submit.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
def audit(ctx, since, who, method, limit, as_json):
    """Who changed what, from where, and the outcome (newest first)."""
    params = {"limit": limit}
    if since:
        try:
            params["since"] = dt.datetime.fromisoformat(since).timestamp()
        except ValueError:
            params["since"] = time.time() - parse_duration(since)
    if who:
        params["who"] = who
    if method:
        params["method"] = method
    rows = call(ctx, "audit.list", params)
    if as_json:
        return print_json(rows)
    print_table([{**r, "when": _when(r["ts"])} for r in rows],
                [("when", "when"), ("who", "who"), ("role", "role"), ("from", "addr"),
                 ("method", "method"), ("target", "target"), ("outcome", "outcome")])
