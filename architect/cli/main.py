"""The `architect` click group."""

from __future__ import annotations

import click

from architect import __version__
from architect.cli.daemons import agent, broker, server, up, web, worker
from architect.cli.inspect import alerts, cluster, nodes
from architect.cli.alerts import rules as alert_rules, thresholds as node_thresholds
from architect.cli.tasks import tasks
from architect.cli.schedules import schedules
from architect.cli.queues import queues
from architect.cli.admin import backup, keys, restore
from architect.cli.common import CliState
from architect.cli.accounts import audit, tokens, users
from architect.cli.ssh import set_ssh_command, ssh
from architect.cli.notify import maintenance, notify, silence


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="architect")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Config file [ARCHITECT_CONFIG, ~/.architect/config.json].")
@click.option("--broker", "broker_host", help="Broker host for commands that query it "
              "[ARCHITECT_BROKER_HOST, 127.0.0.1: on the master, the broker's Unix sockets in "
              "DATA_DIR/bus when they exist, else the ports].")
@click.option("--bus-port", type=int, help="The broker's first bus port [ARCHITECT_BUS_PORT, 5555].")
@click.option("--dashboard", "dashboard_url", help="Find the broker through this dashboard URL.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                                               case_sensitive=False), help="Logging level [INFO].")
@click.pass_context
def main(ctx, config_file, broker_host, bus_port, dashboard_url, log_level):
    """Architect: run and watch a cluster of machines from one place.

    Settings come from defaults, ~/.architect/config.json, ARCHITECT_* variables and flags,
    later ones winning. See docs/CONFIG.md. On the master, commands reach the embedded bus
    through DATA_DIR/bus (ARCHITECT_DATA_DIR): only the data dir's owner and root can.
    """
    ctx.obj = CliState(config_file, {"broker_host": broker_host, "bus_port": bus_port,
                                     "dashboard_url": dashboard_url, "log_level": log_level})


nodes.add_command(set_ssh_command())
alerts.add_command(alert_rules)             # architect alerts rules add/list/remove
nodes.add_command(node_thresholds)         # architect nodes thresholds NODE --disk 90,97
for command in (up, server, broker, web, agent, worker, nodes, tasks, schedules, queues, ssh, alerts,
                cluster, backup, restore, keys, users, tokens, audit):
    main.add_command(command)
nodes.add_command(maintenance)             # `architect nodes maintenance NODE on|off` too
for command in (notify, silence, maintenance):
    main.add_command(command)
from architect.cli.logs import logs  # noqa: E402
from architect.cli.service import install_service  # noqa: E402
for command in (logs, install_service):
    main.add_command(command)
