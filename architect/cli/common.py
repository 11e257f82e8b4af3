"""Shared CLI pieces: config from flags, logging, the control client, output helpers."""

from __future__ import annotations

import json
import logging
import sys

import click

from architect import config as config_mod
from architect.bus.errors import BusError
from architect.client import BrokerUnavailable, Client, KeyPending, RequestRejected


class CliState:
    """ctx.obj of the `architect` group: its --config file and flags; the control Client,
    made on first use (one per command run) and closed when the command ends."""

    def __init__(self, config_file: str | None = None, overrides: dict | None = None):
        self.config_file = config_file
        self.overrides = overrides or {}
        self._client: Client | None = None
        self._config: config_mod.Config | None = None

    def client(self, ctx: click.Context) -> tuple[Client, config_mod.Config]:
        """(the control client, the Config it was made from)."""
        if self._client is None:
            cfg = load_config(ctx)
            self._client = connect(cfg)
            self._config = cfg
            ctx.find_root().call_on_close(self.close)
        return self._client, self._config

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _state(ctx: click.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):  # a command run without the group (tests)
        root.obj = CliState()
    return root.obj


def load_config(ctx: click.Context, **overrides) -> config_mod.Config:
    """The Config from defaults, config file, environment, the group's and these flags.
    A --broker on the command beats the group's --dashboard, as either beats the
    environment and the file (config.load)."""
    state = _state(ctx)
    merged = dict(state.overrides)
    given = {k: v for k, v in overrides.items() if v is not None and v != ()}
    if "broker_host" in given and "dashboard_url" not in given:
        merged.pop("dashboard_url", None)
    merged.update(given)
    try:
        return config_mod.load(merged, config_file=state.config_file)
    except config_mod.ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def cli_key_name() -> str:
    """The CLI's bus key name: cli-<user>-<short hostname>."""
    import getpass
    import socket
    return f"cli-{getpass.getuser()}-{socket.gethostname().split('.')[0]}"


def connect(cfg: config_mod.Config) -> Client:
    """The control client, as Client.from_config makes it, with the CLI's key name; a bus
    that cannot be found or a pending key becomes a click error."""
    name = cli_key_name()
    try:
        return Client.from_config(cfg, key_name=name)
    except KeyPending:
        raise click.ClickException(f"the bus is secured and this CLI's key ({name}) is pending: "
                                   f"run `architect keys accept {name}` on the master, or set "
                                   "ARCHITECT_USER/ARCHITECT_PASSWORD") from None
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from None


def call(ctx: click.Context, method: str, params: dict | None = None,
         timeout: float | None = None):
    """One control request through the command's client; broker errors become click errors."""
    client, cfg = _state(ctx).client(ctx)
    try:
        return client.call(method, params or {}, timeout=timeout or cfg.request_timeout)
    except BrokerUnavailable as exc:
        raise click.ClickException(f"{exc} ({_why_silent(cfg, client.endpoint)})") from None
    except RequestRejected as exc:
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
