"""Long-running commands: broker and agent, each with --daemon / --status / --stop."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from architect import daemon, logsetup
from architect.cli.common import _state, load_config, setup_logging


def _log_override(ctx, param, value):
    """--log-format on a daemon command: a setting like the group's flags (config.load)."""
    if value:
        _state(ctx).overrides["log_format"] = value

daemon_options = [
    click.option("--daemon", "as_daemon", is_flag=True, help="Run in the background (pid and log "
                 "files in ~/.architect or $ARCHITECT_STATE_DIR)."),
    click.option("--status", "show_status", is_flag=True, help="Say whether the daemon runs; exit 1 if not."),
    click.option("--stop", "do_stop", is_flag=True, help="Stop the daemon (SIGTERM, then SIGKILL after 20 s)."),
    click.option("--log-format", type=click.Choice(["text", "json"]), expose_value=False,
                 callback=_log_override, help="Log lines as text or one JSON object per line "
                 "[ARCHITECT_LOG_FORMAT, text]. Foreground: stderr; --daemon: the log file, "
                 "rotated (log_max_bytes, log_backups; `architect logs NAME`)."),
]


def node_options(func):
    """Where the bus is and who this node is: shared by `agent` and `worker`."""
    for option in reversed([
        click.option("--dashboard", "dashboard_url", help="Dashboard URL; the bus is found at "
                     "URL/api/bus [ARCHITECT_DASHBOARD_URL]."),
        click.option("--broker", "broker_host", help="Broker host, to reach the bus directly "
                     "[ARCHITECT_BROKER_HOST, 127.0.0.1: on the master, the Unix sockets in "
                     "DATA_DIR/bus when the broker made them]."),
        click.option("--bus-port", type=int, help="First bus port on the broker host [5555]."),
        click.option("--name", "node_name", help="Node name [ARCHITECT_NODE_NAME, the hostname]."),
        click.option("--capability", "capabilities", multiple=True, help="A capability to offer "
                     "(repeatable); python, docker and git are detected."),
    ]):
        func = option(func)
    return func


def database_option(func):
    return click.option("--database-url", help="PostgreSQL URL (postgresql://user@host:port/db) "
                        "for the broker's state [ARCHITECT_DATABASE_URL; empty: SQLite "
                        "DATA_DIR/architect.db].")(func)


def with_daemon_options(func):
    for option in reversed(daemon_options):
        func = option(func)
    return func


def run_as(ctx: click.Context, name: str, as_daemon: bool, show_status: bool, do_stop: bool,
           start) -> None:
    """Handle --status / --stop, else (optionally detach and) call start(). The pid and log
    files are in the Config's state dir."""
    if show_status or do_stop or as_daemon:
        state_dir = load_config(ctx).state_path
        log_dir = load_config(ctx).log_path
    if show_status:
        running, text = daemon.status(name, state_dir, log_dir)
        click.echo(text)
        raise SystemExit(0 if running else 1)
    if do_stop:
        stopped, text = daemon.stop(name, state_dir)
        click.echo(text)
        raise SystemExit(0 if stopped else 1)
    if as_daemon:
        daemon.daemonize(name, state_dir, log_dir)
    start()


def _run_with_signals(runner) -> None:
    daemon.handle_signals(runner.stop)
    runner.run()


@click.command()
@click.option("--bus-host", help="Address the bus sockets bind to [ARCHITECT_BUS_HOST, 127.0.0.1: "
              "Unix sockets in DATA_DIR/bus, see below].")
@click.option("--bus-port", type=int, help="First of the four bus ports [ARCHITECT_BUS_PORT, 5555].")
@click.option("--data-dir", help="Folder of architect.db [ARCHITECT_DATA_DIR, ./data].")
@click.option("--heartbeat-timeout", type=float, help="Seconds without heartbeat before offline [120].")
@database_option
@with_daemon_options
@click.pass_context
def broker(ctx, bus_host, bus_port, data_dir, heartbeat_timeout, database_url, as_daemon,
           show_status, do_stop):
    """Run the ZeroMQ broker: heartbeats (:5555), work (:5556), control (:5557), events (:5558).

    It keeps state in DATA_DIR/architect.db and grades node health. On loopback (the
    default --bus-host) the four sockets are Unix sockets DATA_DIR/bus/heartbeat, work,
    control and events instead, in a folder of mode 0700: only the data dir's owner and root
    can connect (ARCHITECT_BUS_LOCAL=tcp for the ports; beyond loopback: ports with CURVE)."""
    def start():
        cfg = load_config(ctx, bus_host=bus_host, bus_port=bus_port, data_dir=data_dir,
                          heartbeat_timeout=heartbeat_timeout, database_url=database_url)
        setup_logging(cfg.log_level)
        logsetup.setup(cfg)
        _run_with_signals(_broker_runner(cfg)[0])
    run_as(ctx, "broker", as_daemon, show_status, do_stop, start)


@click.command()
@node_options
@click.option("--interval", "heartbeat_interval", type=float, help="Seconds between heartbeats [5].")
@click.option("--disk-path", help="Filesystem whose usage is reported [/].")
@click.option("--metrics-file", type=click.Path(dir_okay=False),
              help="JSON file of metric values to force (read every beat; for tests and demos).")
@with_daemon_options
@click.pass_context
def agent(ctx, dashboard_url, broker_host, bus_port, node_name, capabilities, heartbeat_interval,
          disk_path, metrics_file, as_daemon, show_status, do_stop):
    """Run the node agent: register this node and send psutil heartbeats."""
    def start():
        cfg = load_config(ctx, dashboard_url=dashboard_url, broker_host=broker_host,
                          bus_port=bus_port, node_name=node_name, capabilities=capabilities,
                          heartbeat_interval=heartbeat_interval, disk_path=disk_path)
        setup_logging(cfg.log_level)
        logsetup.setup(cfg)
        from architect.agent.node_agent import NodeAgent
        _run_with_signals(NodeAgent(cfg, metrics_file=metrics_file))
    run_as(ctx, "agent", as_daemon, show_status, do_stop, start)


class _Together:
    """Runs several runners (objects with run/stop) on threads; stops all when one ends."""

    def __init__(self, runners):
        self.runners = runners
        self.done = threading.Event()

    def run(self) -> None:
        threads = []
        for runner in self.runners:
            def target(r=runner):
                try:
                    r.run()
                finally:
                    self.done.set()
            threads.append(threading.Thread(target=target, name=type(runner).__name__, daemon=True))
            threads[-1].start()
        while not self.done.wait(0.5):
            pass
        self.stop()
        for t in threads:
            t.join(10)

    def stop(self) -> None:
        for runner in reversed(self.runners):
            runner.stop()
        self.done.set()


def web_options(func):
    for option in reversed([
        click.option("--host", help="Address the web server binds to [ARCHITECT_HOST, 127.0.0.1]."),
        click.option("--port", type=int, help="Web port [ARCHITECT_PORT, 8080]."),
        click.option("--ssl", "use_ssl", is_flag=True, help="Serve HTTPS (TLS >= 1.2)."),
        click.option("--cert", "cert_file", help="TLS certificate [cert.pem]."),
        click.option("--key", "key_file", help="TLS private key [key.pem]."),
    ]):
        func = option(func)
    return func


class _LocalBus:
    """Runs the broker loop with its ipc folder locked; removes the sockets when it stops."""

    def __init__(self, loop, directory, lock):
        self.loop, self.directory, self.lock = loop, directory, lock

    def run(self, guard=None) -> None:
        from architect.bus import localbus
        try:
            self.loop.run(guard)
        finally:
            localbus.release(self.directory, self.lock)

    def stop(self) -> None:
        self.loop.stop()


def _broker_loop(cfg, epoch: int | None = None, holder: str = "", guard=None):
    """The broker loop, its bus bound. With several masters (ha.Master calls this when it
    wins the lease) every transaction is fenced by `epoch`, and the CURVE keys come from the
    database first."""
    from architect.broker.core import Broker
    from architect.broker.loop import BrokerLoop
    from architect.broker.store import open_store
    from architect.bus import localbus
    from architect.bus.security import ServerSecurity
    from architect.bus.transport import bus_endpoints, context, local_bus_dir
    endpoints = bus_endpoints(cfg)
    lock = store = security = broker = None
    try:
        if endpoints.ipc_dir is not None:
            lock = localbus.prepare(endpoints.ipc_dir)
        elif cfg.bus_host in ("127.0.0.1", "localhost", "::1"):
            localbus.clear_stale(local_bus_dir(cfg.data_dir))
        store = open_store(cfg, epoch, holder, guard)
        if cfg.database_url and cfg.curve_enabled:
            from architect.broker import keymirror
            keymirror.pull(store.conn, Path(cfg.data_dir) / "keys")
            store.conn.commit()
        security = ServerSecurity(cfg.data_dir, context()) if cfg.curve_enabled else None
        if security is not None and cfg.database_url:
            security.on_change = lambda: keymirror.sync(store, security)
        broker = Broker(cfg, store=store)
        loop = BrokerLoop(broker, endpoints, security)
    except Exception as exc:  # e.g. address in use, unwritable data dir, another's bus dir
        # undo what was made, so a master can try again later in this process
        for undo in (broker and broker.ssh.close, security and security.stop,
                     store and store.close):
            try:
                if undo:
                    undo()
            except Exception:
                pass
        localbus.release(endpoints.ipc_dir, lock, remove=False)
        raise click.ClickException(f"broker cannot start: {exc}") from None
    if security is not None:
        click.echo(f"bus secured with CURVE (server key {security.public.decode()}); nodes join "
                   "through the dashboard: with the web login or ARCHITECT_JOIN_TOKEN at once, "
                   "else as pending (`architect keys accept NAME`)", err=True)
    elif cfg.bus_host not in ("127.0.0.1", "localhost", "::1"):
        click.echo("warning: the bus is bound beyond loopback with CURVE turned off "
                   "(ARCHITECT_BUS_CURVE=off): anyone who reaches it can submit tasks", err=True)
    elif lock is None:
        click.echo(f"warning: the bus is on tcp {endpoints.describe()} without CURVE "
                   "(ARCHITECT_BUS_LOCAL=tcp): every local user can submit tasks", err=True)
    if lock is not None:
        user = _user()
        click.echo(f"bus: {endpoints.describe()} (folder mode 0700: only "
                   f"{user + ' and root' if user != 'root' else 'root'} can connect)", err=True)
        return _LocalBus(loop, endpoints.ipc_dir, lock)
    return loop


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid
        import os
        return f"uid {os.geteuid()}"


def _local_control(cfg) -> str:
    """Where this process's own broker answers control requests."""
    from architect.bus.transport import Endpoints, bus_endpoints
    endpoints = bus_endpoints(cfg)
    if endpoints.ipc_dir is None and cfg.bus_host in ("0.0.0.0", "::", ""):
        endpoints = Endpoints("127.0.0.1", cfg.bus_port)
    return endpoints.control


def _advert(cfg, use_ssl: bool) -> dict:
    """What the leader row tells nodes and the other masters: this master's bus (with an
    address they can reach, not 0.0.0.0) and web URL."""
    import socket
    from architect.bus.security import ensure_keypair
    from architect.bus.transport import bus_endpoints
    host = cfg.advertise_host
    if not host:
        host = cfg.bus_host if cfg.bus_host not in ("0.0.0.0", "::", "") else None
    if not host:
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = socket.gethostname()
    bus = {k: v.replace("tcp://0.0.0.0:", f"tcp://{host}:", 1).replace(
        "tcp://[::]:", f"tcp://{host}:", 1) for k, v in bus_endpoints(cfg).as_dict().items()}
    bus["server_key"] = ensure_keypair(Path(cfg.data_dir) / "keys", "server")[0].decode() \
        if cfg.curve_enabled else None
    web_host = host if cfg.host in ("0.0.0.0", "::", "") else cfg.host
    return {"bus": bus, "web": f"{'https' if use_ssl else 'http'}://{web_host}:{cfg.port}"}


def _broker_runner(cfg, use_ssl: bool = False):
    """(runner, ha): the broker loop on SQLite; on PostgreSQL a Master (several masters:
    standby until it holds the lease, ha.py), also given to the web server."""
    if not cfg.database_url:
        return _broker_loop(cfg), None
    from architect.broker.ha import Master
    from architect.bus.security import local_client
    if cfg.curve_enabled:   # the masters' shared keys, before anything advertises one
        from architect.broker import keymirror
        from architect.broker.store.postgres import connect
        try:
            with connect(cfg.database_url, readonly=False) as conn:
                from architect.broker.store import postgres_migrations
                postgres_migrations.apply(conn)
                conn.commit()
                conn.autocommit = True
                keymirror.pull(conn, Path(cfg.data_dir) / "keys")
        except Exception as exc:
            raise click.ClickException(f"master cannot start: {exc}") from None
    local = (_local_control(cfg), local_client(cfg.data_dir) if cfg.curve_enabled else None)
    master = Master(cfg, lambda epoch, holder, guard: _broker_loop(cfg, epoch, holder, guard),
                    _advert(cfg, use_ssl), local)
    click.echo(f"master {master.holder}: several masters may share {cfg.database_url.split('@')[-1]}"
               "; this one is standby until it holds the lease", err=True)
    return master, master


def _web_server(cfg, use_ssl: bool, local_broker: bool = False, ha=None):
    from architect.api import auth, create_app
    from architect.api.server import WebServer
    control = _local_control(cfg) if local_broker else None
    app = create_app(cfg, credentials=auth.resolve_credentials(
        cfg, announce=lambda text, file=None: click.echo(text, err=True)),
        control_endpoint=control, ha=ha)
    try:
        server = WebServer(app, cfg.host, cfg.port, cfg.web_threads,
                           (cfg.cert_file, cfg.key_file) if use_ssl else None)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"web server cannot start: {exc}") from None
    click.echo(f"dashboard: {server.scheme}://{cfg.host}:{cfg.port}/", err=True)
    return server


@click.command()
@click.option("--data-dir", help="Folder of architect.db [ARCHITECT_DATA_DIR, ./data].")
@click.option("--bus-port", type=int, help="First of the four bus ports [5555]; only with "
              "ARCHITECT_BUS_LOCAL=tcp or ARCHITECT_BUS_CURVE=on (else the bus is Unix sockets).")
@click.option("--name", "node_name", help="Name of the local node [the hostname].")
@database_option
@web_options
@with_daemon_options
@click.pass_context
def up(ctx, data_dir, bus_port, node_name, database_url, host, port, use_ssl, cert_file,
       key_file, as_daemon, show_status, do_stop):
    """Run everything on this machine: broker, web (dashboard + REST), a local node agent
    and a task worker. The web server binds to --host (127.0.0.1). The bus stays on this
    machine: Unix sockets in DATA_DIR/bus (mode 0700), so only the data dir's owner and
    root can use it (ARCHITECT_BUS_LOCAL=tcp: plain 127.0.0.1 ports, open to every local
    user; ARCHITECT_BUS_CURVE=on: CURVE on those ports).

    The embedded default (what ./deploy.sh runs); data in ./data."""
    def start():
        cfg = load_config(ctx, data_dir=data_dir, bus_port=bus_port, node_name=node_name,
                          bus_host="127.0.0.1", broker_host="127.0.0.1", dashboard_url="",
                          host=host, port=port, cert_file=cert_file, key_file=key_file,
                          database_url=database_url)
        setup_logging(cfg.log_level)
        logsetup.setup(cfg)
        from architect.agent.node_agent import NodeAgent
        from architect.agent.worker import TaskWorker
        from architect.bus.transport import bus_endpoints
        loop, ha = _broker_runner(cfg, use_ssl)
        web = _web_server(cfg, use_ssl, local_broker=True, ha=ha)
        click.echo(f"architect up: bus on {bus_endpoints(cfg).describe()}, data in "
                   f"{cfg.data_dir}, local node '{cfg.node_name}'", err=True)
        _run_with_signals(_Together([loop, web, NodeAgent(cfg), TaskWorker(cfg)]))
    run_as(ctx, "up", as_daemon, show_status, do_stop, start)


@click.command()
@click.option("--data-dir", help="Folder of architect.db [ARCHITECT_DATA_DIR, ./data].")
@click.option("--bus-host", help="Address the bus binds to [ARCHITECT_BUS_HOST, 127.0.0.1: Unix "
              "sockets in DATA_DIR/bus, mode 0700; beyond loopback: ports with CURVE].")
@click.option("--bus-port", type=int, help="First of the four bus ports [5555].")
@database_option
@web_options
@with_daemon_options
@click.pass_context
def server(ctx, data_dir, bus_host, bus_port, database_url, host, port, use_ssl, cert_file,
           key_file, as_daemon, show_status, do_stop):
    """Run the master: broker and web server (dashboard, REST API, /metrics) in one process.

    On PostgreSQL (--database-url / ARCHITECT_DATABASE_URL) it is one of several masters
    that share the database: active while it holds the leader lease, else standby (its web
    server forwards every call to the active broker, and it takes over when the active one
    goes away). `architect cluster status` and GET /healthz say which; see docs/HA.md."""
    def start():
        cfg = load_config(ctx, data_dir=data_dir, bus_host=bus_host, bus_port=bus_port,
                          host=host, port=port, cert_file=cert_file, key_file=key_file,
                          database_url=database_url)
        setup_logging(cfg.log_level)
        logsetup.setup(cfg)
        runner, ha = _broker_runner(cfg, use_ssl)
        web = _web_server(cfg, use_ssl, local_broker=True, ha=ha)
        # _Together stops the last runner first: a master hands its lease over before the
        # web server takes its time to stop
        _run_with_signals(_Together([web, runner] if ha is not None else [runner, web]))
    run_as(ctx, "server", as_daemon, show_status, do_stop, start)


@click.command()
@web_options
@with_daemon_options
@click.pass_context
def web(ctx, host, port, use_ssl, cert_file, key_file, as_daemon, show_status, do_stop):
    """Run the web server alone, talking to a broker (--broker on the group)."""
    def start():
        cfg = load_config(ctx, host=host, port=port, cert_file=cert_file, key_file=key_file)
        setup_logging(cfg.log_level)
        logsetup.setup(cfg)
        # on a thread: cheroot's stop() cannot run inside its own serve() loop
        _run_with_signals(_Together([_web_server(cfg, use_ssl)]))
    run_as(ctx, "web", as_daemon, show_status, do_stop, start)


@click.command()
@node_options
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024),
              help="Tasks run at once (slots) [the CPU count].")
@click.option("--task-type", "task_types", multiple=True, type=click.Choice(["shell", "python"]),
              help="Task types to run (repeatable) [shell and python].")
@click.option("--max-output", type=click.IntRange(1024, 3 << 20), default=1 << 20, show_default=True,
              help="Bytes of stdout and of stderr kept per task (the rest is cut, truncated=true).")
@click.option("--kill-grace", type=float, default=5.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL when a task is cancelled or times out.")
@click.option("--shutdown-grace", type=float, default=5.0, show_default=True,
              help="On stop, seconds running tasks get to finish; the rest go back to the "
                   "broker and run elsewhere.")
@click.option("--prefetch", type=click.IntRange(0, 1024), envvar="ARCHITECT_WORKER_PREFETCH",
              help="Tasks taken beyond the slots and kept queued here, so a freed slot starts "
                   "its next task at once. The broker prefetches only when no worker has a "
                   "free slot; a prefetched task waits behind this worker's running ones, so "
                   "use 0 for long tasks [one per slot; env ARCHITECT_WORKER_PREFETCH].")
@click.option("--queue", "queues", multiple=True,
              help="A queue to take tasks from (repeatable) [default].")
@with_daemon_options
@click.pass_context
def worker(ctx, dashboard_url, broker_host, bus_port, node_name, capabilities, concurrency,
           task_types, max_output, kill_grace, shutdown_grace, prefetch, queues, as_daemon,
           show_status, do_stop):
    """Run a task worker: take tasks from the broker and run them (shell, python)."""
    def start():
        cfg = load_config(ctx, dashboard_url=dashboard_url, broker_host=broker_host,
                          bus_port=bus_port, node_name=node_name, capabilities=capabilities)
        setup_logging(cfg.log_level)
        logsetup.setup(cfg)
        from architect.agent.worker import TaskWorker
        _run_with_signals(TaskWorker(cfg, slots=concurrency, task_types=task_types or None,
                                     max_output=max_output, kill_grace=kill_grace,
                                     shutdown_grace=shutdown_grace, prefetch=prefetch,
                                     queues=queues))
    run_as(ctx, "worker", as_daemon, show_status, do_stop, start)
