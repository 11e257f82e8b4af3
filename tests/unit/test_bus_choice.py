"""Where clients find the bus: a broker named on a later layer beats a dashboard URL from an
earlier one (a flag over ARCHITECT_DASHBOARD_URL, as the seed guide exports it), and the CLI
and the Python client connect the same way (Client.from_config)."""

from __future__ import annotations

import json

import pytest
import zmq.auth
from click.testing import CliRunner

from architect import config, daemon
from architect.cli import main
from architect.client import BrokerUnavailable, Client
from tests.helpers import free_port_block

URL = "http://127.0.0.1:9/"  # nothing answers there: using it would fail


@pytest.fixture
def no_file(tmp_path):
    return tmp_path / "absent.json"


def test_a_broker_flag_beats_the_dashboard_url_from_the_environment(no_file):
    env = {"ARCHITECT_DASHBOARD_URL": URL}
    assert config.load(env=env, config_file=no_file).dashboard_url == URL
    cfg = config.load({"broker_host": "10.0.0.7"}, env=env, config_file=no_file)
    assert (cfg.broker_host, cfg.dashboard_url) == ("10.0.0.7", "")


def test_a_broker_from_the_environment_beats_the_dashboard_url_of_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dashboard_url": URL}))
    cfg = config.load(env={"ARCHITECT_BROKER_HOST": "10.0.0.7"}, config_file=path)
    assert (cfg.broker_host, cfg.dashboard_url) == ("10.0.0.7", "")


def test_on_the_same_layer_the_dashboard_url_stays(no_file, tmp_path):
    env = {"ARCHITECT_DASHBOARD_URL": URL, "ARCHITECT_BROKER_HOST": "10.0.0.7"}
    assert config.load(env=env, config_file=no_file).dashboard_url == URL
    cfg = config.load({"broker_host": "10.0.0.7", "dashboard_url": URL}, env={},
                      config_file=no_file)
    assert cfg.dashboard_url == URL
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dashboard_url": URL}))
    assert config.load({"bus_port": 6000}, env={}, config_file=path).dashboard_url == URL


class FakeRunner:
    """Stands in for NodeAgent / TaskWorker: records the Config, runs nothing."""
    seen: list = []

    def __init__(self, cfg, **_):
        FakeRunner.seen.append(cfg)

    def run(self):
        pass

    def stop(self):
        pass


@pytest.fixture
def fake_runners(monkeypatch, tmp_path):
    import architect.agent.node_agent as node_agent
    import architect.agent.worker as worker
    FakeRunner.seen = []
    monkeypatch.setattr(node_agent, "NodeAgent", FakeRunner)
    monkeypatch.setattr(worker, "TaskWorker", FakeRunner)
    monkeypatch.setattr(daemon, "handle_signals", lambda stop: None)  # not pytest's signals
    return {"ARCHITECT_DASHBOARD_URL": URL, "ARCHITECT_CONFIG": str(tmp_path / "absent.json"),
            "ARCHITECT_BROKER_HOST": ""}


@pytest.mark.parametrize("command", ["agent", "worker"])
def test_agent_broker_flag_beats_exported_dashboard_url(fake_runners, command):
    """Seed guide step 3 exports ARCHITECT_DASHBOARD_URL; `architect agent --broker HOST`
    must then reach HOST, not wait on the dashboard."""
    out = CliRunner().invoke(main, [command, "--broker", "10.0.0.7"], env=fake_runners)
    assert out.exit_code == 0, out.output
    cfg = FakeRunner.seen[-1]
    assert (cfg.broker_host, cfg.dashboard_url) == ("10.0.0.7", "")


def test_command_broker_beats_group_dashboard_and_group_broker_beats_env(fake_runners):
    runner = CliRunner()
    out = runner.invoke(main, ["--dashboard", URL, "agent", "--broker", "10.0.0.7"],
                        env=fake_runners)
    assert out.exit_code == 0, out.output
    assert FakeRunner.seen[-1].dashboard_url == ""
    out = runner.invoke(main, ["--broker", "10.0.0.8", "agent"], env=fake_runners)
    assert out.exit_code == 0, out.output
    assert (FakeRunner.seen[-1].broker_host, FakeRunner.seen[-1].dashboard_url) == ("10.0.0.8", "")
    out = runner.invoke(main, ["agent"], env=fake_runners)  # nothing named: the dashboard
    assert out.exit_code == 0, out.output
    assert FakeRunner.seen[-1].dashboard_url == URL
    out = runner.invoke(main, ["--broker", "10.0.0.8", "agent", "--dashboard", URL],
                        env=fake_runners)
    assert out.exit_code == 0, out.output
    assert FakeRunner.seen[-1].dashboard_url == URL


def test_cli_broker_flag_skips_the_exported_dashboard(tmp_path):
    """`architect --broker 127.0.0.1 nodes` asks that broker (here: nobody, so a timeout),
    not the dashboard of ARCHITECT_DASHBOARD_URL."""
    env = {"ARCHITECT_DASHBOARD_URL": URL, "ARCHITECT_CONFIG": str(tmp_path / "absent.json"),
           "ARCHITECT_DATA_DIR": str(tmp_path / "data"), "ARCHITECT_REQUEST_TIMEOUT": "0.2",
           "ARCHITECT_BUS_PORT": str(free_port_block(4)), "ARCHITECT_STATE_DIR": str(tmp_path)}
    out = CliRunner().invoke(main, ["--broker", "127.0.0.1", "nodes"], env=env)
    assert out.exit_code == 1
    assert "no reply from the broker" in out.output and "api/bus" not in out.output
    out = CliRunner().invoke(main, ["nodes"], env=env)  # the dashboard, as before
    assert out.exit_code == 1 and "cannot read http://127.0.0.1:9/api/bus" in out.output


def secured_data_dir(tmp_path):
    keys = tmp_path / "data" / "keys"
    keys.mkdir(parents=True)
    zmq.auth.create_certificates(keys, "server")
    zmq.auth.create_certificates(keys, "local")
    return tmp_path / "data", zmq.auth.load_certificate(keys / "local.key_secret")


def test_client_and_cli_use_the_masters_local_key(tmp_path, monkeypatch):
    """On a secured master (DATA_DIR/keys), every way of making a Client uses its local key,
    as the CLI does; the data dir may come from the Config (environment or file)."""
    data, (public, _) = secured_data_dir(tmp_path)
    monkeypatch.setenv("ARCHITECT_CONFIG", str(tmp_path / "config.json"))
    (tmp_path / "config.json").write_text(json.dumps({"data_dir": str(data)}))
    for var in ("ARCHITECT_DATA_DIR", "ARCHITECT_DASHBOARD_URL", "ARCHITECT_BROKER_HOST"):
        monkeypatch.delenv(var, raising=False)
    port = free_port_block(4)
    made = [Client(broker="127.0.0.1", bus_port=port), Client(bus_port=port),
            Client.from_config(config.load({"bus_port": port}))]
    for c in made:
        with c:
            assert c.endpoint == f"tcp://127.0.0.1:{port + 2}"
            assert c._rpc.curve and c._rpc.curve["public"] == public
    with Client(control_endpoint=f"tcp://127.0.0.1:{port + 2}") as plain:
        assert plain._rpc.curve is None


def test_client_broker_argument_beats_exported_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHITECT_CONFIG", str(tmp_path / "absent.json"))
    monkeypatch.setenv("ARCHITECT_DASHBOARD_URL", URL)
    monkeypatch.setenv("ARCHITECT_DATA_DIR", str(tmp_path / "data"))
    port = free_port_block(4)
    with Client(broker="127.0.0.1", bus_port=port, timeout=0.2) as c:
        assert c.endpoint == f"tcp://127.0.0.1:{port + 2}"
    with pytest.raises(BrokerUnavailable, match="api/bus"):
        Client.from_config(config.load())  # the Config says: through the dashboard
    with pytest.raises(BrokerUnavailable, match="api/bus"):
        Client(dashboard_url=URL)


def test_discovery_sends_the_configs_login(tmp_path):
    """GET /api/bus carries the web login of the Config (user / password), whatever layer
    it came from."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from architect.discovery import connect_info
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({k: f"tcp://127.0.0.1:{i}" for i, k in
                               enumerate(("heartbeat", "work", "control", "events"), 5000)})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"user": "admin", "password": "pw"}))
        cfg = config.load({"dashboard_url": f"http://127.0.0.1:{server.server_port}"}, env={},
                          config_file=path)
        endpoints, curve, status = connect_info(cfg, "n1")
        assert (endpoints["control"], curve, status) == ("tcp://127.0.0.1:5002", None, "open")
        assert seen == ["Basic YWRtaW46cHc="]
    finally:
        server.shutdown()
        server.server_close()
