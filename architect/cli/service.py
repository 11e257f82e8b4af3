"""`architect install-service dashboard|agent|worker`: systemd units, paths filled in.

The units are the ones of the setup guide and config/systemd/ (same names, Restart and
RestartSec, EnvironmentFile for the credentials), with ExecStart running this
installation's `architect` executable (the venv's), the data dir and the user filled in.
The daemons run in the foreground under systemd and log to stderr: `journalctl -u NAME`.
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from pathlib import Path

import click

from architect.cli.common import load_config

UNITS = ("dashboard", "agent", "worker")
SYSTEM_DIR = Path("/etc/systemd/system")
USER_DIR = Path("~/.config/systemd/user")


def architect_command() -> list[str]:
    """How to run this installation's CLI: the venv's `architect` beside its python."""
    beside = Path(sys.executable).parent / "architect"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("architect")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).resolve()), "-m", "architect"]


def quote(word: str) -> str:
    """One word of an ExecStart= or Environment= line (systemd's own quoting, % doubled)."""
    word = word.replace("%", "%%")
    if word and not any(c in word for c in " \t\"'\\;$"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def unit_text(kind: str, *, command: list[str], data_dir: str, workdir: str,
              run_as: str | None, user_unit: bool, host: str = "0.0.0.0", port: int = 8080,
              dashboard_url: str = "", env_dir: str = "/etc/architect") -> str:
    if kind == "dashboard":
        description = "Architect Dashboard (broker + web)"
        argv = [*command, "server", "--host", host, "--port", str(port), "--bus-host", host]
        env_file, restart_sec, extra = f"{env_dir}/dashboard.env", 10, []
        env = [f"ARCHITECT_DATA_DIR={data_dir}"]
        comment = ("# credentials for the web UI/API (ARCHITECT_USER=, ARCHITECT_PASSWORD=; "
                   "else a password is generated into the data dir)")
    elif kind in ("agent", "worker"):
        description = "Architect Node Agent" if kind == "agent" else "Architect Task Worker"
        argv = [*command, kind]
        env_file = f"{env_dir}/node.env"
        restart_sec = 30 if kind == "agent" else 10
        extra = [] if kind == "agent" else [
            "# let running tasks finish their grace period on stop", "TimeoutStopSec=30"]
        env = [f"ARCHITECT_DATA_DIR={data_dir}"]
        if dashboard_url:
            env.append(f"ARCHITECT_DASHBOARD_URL={dashboard_url}")
        comment = "# ARCHITECT_DASHBOARD_URL=, the credentials or ARCHITECT_JOIN_TOKEN="
    else:
        raise click.BadParameter(f"unknown unit {kind!r}")
    lines = ["[Unit]", f"Description={description}", "After=network.target", "",
             "[Service]", "Type=simple"]
    if run_as and not user_unit:
        lines.append(f"User={run_as}")
    lines.append(f"WorkingDirectory={workdir.replace('%', '%%')}")   # a path: never quoted
    lines += [f"Environment={quote(e)}" for e in env]
    lines += [comment, f"EnvironmentFile=-{env_file.replace('%', '%%')}"]
    lines.append("ExecStart=" + " ".join(quote(a) for a in argv))
    lines += extra
    lines += ["Restart=always", f"RestartSec={restart_sec}", "",
              "[Install]", f"WantedBy={'default.target' if user_unit else 'multi-user.target'}",
              ""]
    return "\n".join(lines)


def unit_name(kind: str) -> str:
    return f"architect-{kind}.service"


@click.command("install-service")
@click.argument("units", nargs=-1, required=True, type=click.Choice(UNITS))
@click.option("--user", "user_unit", is_flag=True,
              help="A systemd user unit in ~/.config/systemd/user (systemctl --user), run as you.")
@click.option("--prefix", type=click.Path(file_okay=False),
              help="Folder to write the units to [/etc/systemd/system; --user: "
                   "~/.config/systemd/user].")
@click.option("--dry-run", is_flag=True, help="Print the units; write nothing.")
@click.option("--force", is_flag=True, help="Overwrite units that exist.")
@click.option("--run-as", help="User= of a system unit [the user running this].")
@click.option("--data-dir", help="The data dir the daemons use [ARCHITECT_DATA_DIR, ./data], "
              "made absolute.")
@click.option("--dashboard", "dashboard_url", help="Dashboard URL for agent and worker "
              "[ARCHITECT_DASHBOARD_URL].")
@click.option("--host", default="0.0.0.0", show_default=True,
              help="dashboard: web and bus address.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True,
              help="dashboard: web port.")
@click.pass_context
def install_service(ctx, units, user_unit, prefix, dry_run, force, run_as, data_dir,
                    dashboard_url, host, port):
    """Write systemd units for UNITS (dashboard: `architect server`, the master; agent and
    worker: on each node), as the setup guide lays them out, with this installation's
    `architect` executable, the data dir and the user filled in. Then:
    `systemctl [--user] daemon-reload && systemctl [--user] enable --now architect-NAME`."""
    cfg = load_config(ctx, data_dir=data_dir)
    if dashboard_url is None:
        dashboard_url = cfg.dashboard_url
    data = str(Path(cfg.data_dir).expanduser().resolve())
    folder = Path(prefix).expanduser() if prefix else \
        (USER_DIR.expanduser() if user_unit else SYSTEM_DIR)
    who = run_as or os.environ.get("SUDO_USER") or getpass.getuser()
    command = architect_command()
    env_dir = str(Path("~/.config/architect").expanduser()) if user_unit else "/etc/architect"
    texts = {}
    for kind in dict.fromkeys(units):
        texts[kind] = unit_text(kind, command=command, data_dir=data,
                                workdir=str(Path(data).parent), run_as=who,
                                user_unit=user_unit, host=host, port=port,
                                dashboard_url=dashboard_url if kind != "dashboard" else "",
                                env_dir=env_dir)
    if dry_run:
        for kind, text in texts.items():
            click.echo(f"# {folder / unit_name(kind)}\n{text}")
        return
    existing = [str(folder / unit_name(k)) for k in texts if (folder / unit_name(k)).exists()]
    if existing and not force:
        raise click.ClickException(f"{', '.join(existing)} exist: --force to overwrite")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for kind, text in texts.items():
            path = folder / unit_name(kind)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            click.echo(f"wrote {path}")
    except OSError as exc:
        raise click.ClickException(f"cannot write the units in {folder}: {exc} (system units "
                                   "need root: sudo, or --user)") from None
    ctl = "systemctl --user" if user_unit else "systemctl"
    names = " ".join(unit_name(k).removesuffix(".service") for k in texts)
    click.echo(f"next: {ctl} daemon-reload && {ctl} enable --now {names}")
