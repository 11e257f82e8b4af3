"""Shared CLI pieces: config from flags, logging, the control client, output helpers."""

from __future__ import annotations

import json
import logging
import sys

import click

from architect import config as config_mod
from architect.bus.errors import BusError, RemoteError, RequestTimeout
from architect.bus.rpc import RpcClient


def load_config(ctx: click.Context, **overrides) -> config_mod.Config:
    """The Config from defaults, config file, environment, the group's and these flags."""
    obj = ctx.find_root().obj or {}
    merged = dict(obj.get("overrides", {}))
    merged.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    try:
        return config_mod.load(merged, config_file=obj.get("config_file"))
    except config_mod.ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def control_endpoint(cfg: config_mod.Config) -> tuple[str, dict | None]:
    """The control endpoint and CURVE options (on the master: its local key; through a
    dashboard: this user's own key, joined with the web credentials)."""
    import getpass
    import socket
    from architect.agent.discovery import DiscoveryError, connect_info
    if not cfg.dashboard_url or cfg.broker_host != "127.0.0.1":
        cfg = config_mod.Config(**{**cfg.__dict__, "dashboard_url": ""})
    name = f"cli-{getpass.getuser()}-{socket.gethostname().split('.')[0]}"
    try:
        endpoints, curve, status = connect_info(cfg, name)
    except DiscoveryError as exc:
        raise click.ClickException(str(exc)) from None
    if status == "pending":
        raise click.ClickException(f"the bus is secured and this CLI's key ({name}) is pending: "
                                   f"run `architect keys accept {name}` on the master, or set "
                                   "ARCHITECT_USER/ARCHITECT_PASSWORD")
    return endpoints["control"], curve


def call(ctx: click.Context, method: str, params: dict | None = None,
         timeout: float | None = None):
    """One control request; broker errors become click errors."""
    cfg = load_config(ctx)
    endpoint, curve = control_endpoint(cfg)
    try:
        with RpcClient(endpoint, timeout=timeout or cfg.request_timeout, curve=curve) as rpc:
            return rpc.call(method, params or {})
    except RequestTimeout as exc:
        raise click.ClickException(f"{exc} ({_why_silent(cfg, endpoint)})") from None
    except RemoteError as exc:
        raise click.ClickException(exc.message) from None
    except BusError as exc:
        raise click.ClickException(str(exc)) from None


def _why_silent(cfg: config_mod.Config, endpoint: str) -> str:
    """A hint for a control request nobody answered."""
    from architect.bus.localbus import why_unreachable
    from architect.bus.transport import LOOPBACK_HOSTS, local_bus_dir
    local = endpoint.startswith("tcp://") and cfg.broker_host in LOOPBACK_HOSTS and \
        cfg.bus_local == "ipc" and not cfg.dashboard_url
    problem = why_unreachable({"control": endpoint}, local_bus_dir(cfg.data_dir) if local
                              else None, (cfg.broker_host, cfg.bus_port + 2) if local else None)
    if problem is not None and problem[0] == "denied":
        return problem[1]
    return "is the broker running? start it with `architect broker` or `./deploy.sh`"


def print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """columns: (header, key). Values are str()-ed; None shows as '-'."""
    cells = [[("-" if r.get(k) is None else str(r.get(k))) for _, k in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _) in enumerate(columns)]
    click.echo("  ".join(h.upper().ljust(w) for (h, _), w in zip(columns, widths)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


def ago(seconds) -> str | None:
    if seconds is None:
        return None
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
