"""S8: the embedded (loopback) bus admits only the data dir's owner and root.

`architect up` binds its four bus sockets as Unix sockets in DATA_DIR/bus (mode 0700). A
second local user gets nothing through: not a zmq reply over ipc (while the same probe, run
by the owner or after the folder is opened on purpose, gets one), not a TCP connection to
the configured bus ports (nothing listens there), not even a listing of the folder. Also:
a broker killed with SIGKILL leaves its socket files behind and a new one binds anyway,
while a second broker on a running one's folder is refused (libzmq would silently take the
endpoints over); the long-path fallback folder; a folder of another user is refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import requests

from architect.bus.codec import encode
from architect.bus.messages import Request
from architect.bus.transport import local_bus_dir
from architect.client import Client
from tests.helpers import Cluster, free_port_block, wait_for

pytestmark = pytest.mark.slow

OTHER = "architect_s8"
SOCKETS = ("heartbeat", "work", "control", "events")

# Run as the second user with whatever python it can run: the bus folder, the socket, the
# TCP ports, and (when that python has pyzmq) a real zmq ping. Prints one JSON line.
PROBE = r'''
import errno, json, os, socket, sys
data, bus, base, request = sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
out = {"uid": os.getuid()}
def err(fn):
    try:
        fn()
        return 0
    except OSError as exc:
        return exc.errno
out["list_data"] = err(lambda: os.listdir(data))
out["list_bus"] = err(lambda: os.listdir(bus))
out["stat_control"] = err(lambda: os.stat(os.path.join(bus, "control")))
def unix(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(os.path.join(bus, name))
    finally:
        s.close()
out["unix"] = {n: err(lambda n=n: unix(n)) for n in ("heartbeat", "work", "control", "events")}
def tcp(port):
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
out["tcp"] = {str(p): err(lambda p=p: tcp(p)) for p in range(base, base + 4)}
try:
    import zmq
except ImportError:
    out["zmq"] = None
else:
    ctx = zmq.Context()
    def zping(endpoint):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send(request)
        got = s.poll(2000)
        s.close()
        return bool(got)
    out["zmq"] = {"ipc": zping("ipc://" + os.path.join(bus, "control")),
                  "tcp": zping("tcp://127.0.0.1:%d" % (base + 2))}
    ctx.term()
print(json.dumps(out))
'''


def other_user() -> pwd.struct_passwd:
    """The second local user (made if missing). Needs root, as CI has."""
    if os.geteuid() != 0:
        pytest.skip("S8 needs root: it creates a second local user (useradd) and runs a probe "
                    "as that user (runuser); run the suite as root, as CI does")
    for tool in ("useradd", "runuser"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.fail(f"S8 needs `{tool}` (Debian package passwd / util-linux)")
    try:
        return pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", OTHER], check=True)
        return pwd.getpwnam(OTHER)


def probe_python(user: str) -> tuple[str, bool]:
    """(interpreter the user can run, whether it has pyzmq): /usr/bin/python3 (Debian
    python3-zmq) if it has zmq, else this venv's python if that user can run it."""
    def works(python, code):
        return subprocess.run(["runuser", "-u", user, "--", python, "-c", code],
                              capture_output=True, timeout=30).returncode == 0
    for python in ("/usr/bin/python3", sys.executable):
        if os.path.exists(python) and works(python, "import zmq"):
            return python, True
    return "/usr/bin/python3", False


def run_probe(cluster, user: str | None, python: str, data: Path | None = None) -> dict:
    request = encode(Request(id=7, method="ping", params={})).hex()
    data = data or cluster.tmp / "data"
    cmd = [python, "-c", PROBE, str(data), str(local_bus_dir(data)), str(cluster.base_port),
           request]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def open_tmp():
    """A folder any user may enter (pytest's tmp_path is 0700 under /tmp/pytest-of-root,
    which alone would keep the second user out and prove nothing about the bus folder)."""
    path = Path(tempfile.mkdtemp(prefix="s8-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_up(tmp: Path, env=None) -> Cluster:
    """`architect up` as tests/conftest.py's cluster runs things, data dir mode 0755."""
    cluster = Cluster(tmp, extra_env=env)
    (tmp / "data").mkdir(mode=0o755)
    os.chmod(tmp / "data", 0o755)
    port = free_port_block(1)
    proc = cluster.spawn("up", "up", "--port", str(port), "--name", "s8-local")
    cluster.web = f"http://127.0.0.1:{port}"
    cluster.wait_http(cluster.web + "/healthz", proc, "up")
    cluster.wait_workers(1)
    return cluster


@pytest.fixture
def up(open_tmp):
    cluster = start_up(open_tmp)
    yield cluster
    cluster.stop_all()


def test_s8_second_local_user_gets_nothing_through(up):
    user = other_user()
    python, has_zmq = probe_python(OTHER)
    data, bus = up.tmp / "data", up.tmp / "data" / "bus"
    assert local_bus_dir(data) == Path(os.path.realpath(bus))
    st = os.stat(bus)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert all(stat.S_ISSOCK(os.stat(bus / n).st_mode) for n in SOCKETS)
    assert "bus on ipc://" in up.log("up")
    # the web server tells agents and scripts where the bus is: the ipc paths
    info = requests.get(up.web + "/api/bus", timeout=5).json()
    assert info["control"] == f"ipc://{os.path.realpath(bus)}/control"

    # the owner (root here) gets a pong through architect.client and through the CLI
    with Client(broker="127.0.0.1", bus_port=up.base_port, data_dir=str(data), timeout=5) as c:
        assert c.call("ping")["pong"] is True
    wait_for(lambda: "s8-local" in [n["name"] for n in up.cli_json("nodes")], 15,
             what="the local node listed by the CLI")
    owner = run_probe(up, None, python)
    assert owner["list_bus"] == 0 and owner["unix"]["control"] == 0
    if has_zmq:
        assert owner["zmq"]["ipc"] is True, "the probe cannot even reach the bus as its owner"
    before = up.rpc("cluster.stats")["counters"]

    # the second user. The broker may keep the data dir itself private too; open it, so
    # that what is shown is the bus folder's own protection (as for the /tmp fallback)
    os.chmod(data, 0o755)
    other = run_probe(up, OTHER, python)
    assert other["uid"] == user.pw_uid != 0
    assert other["list_data"] == 0, "the data dir is readable: only bus/ keeps it out"
    assert other["list_bus"] == errno.EACCES
    assert other["stat_control"] == errno.EACCES
    assert set(other["unix"].values()) == {errno.EACCES}, other["unix"]
    assert set(other["tcp"].values()) == {errno.ECONNREFUSED}, \
        f"something listens on the bus ports {up.base_port}-{up.base_port + 3}: {other['tcp']}"
    if has_zmq:
        assert other["zmq"] == {"ipc": False, "tcp": False}, other["zmq"]
    else:
        logging.getLogger(__name__).warning(
            "S8: no python with pyzmq that %s can run (Debian python3-zmq): proved at the "
            "socket level only", OTHER)
    after = up.rpc("cluster.stats")["counters"]
    assert after["requests"] == before["requests"] + 1  # only this test's own stats call
    assert after["protocol_errors"] == before["protocol_errors"]

    # the probe is not blind: open the folder and sockets on purpose, and the same user
    # gets through; close them again, and it does not
    os.chmod(bus, 0o755)
    for n in SOCKETS:
        os.chmod(bus / n, 0o777)
    try:
        opened = run_probe(up, OTHER, python)
        assert opened["list_bus"] == 0 and opened["unix"]["control"] == 0
        if has_zmq:
            assert opened["zmq"]["ipc"] is True
    finally:
        os.chmod(bus, 0o700)
        for n in SOCKETS:
            os.chmod(bus / n, 0o755)
    assert run_probe(up, OTHER, python)["unix"]["control"] == errno.EACCES


def resolve_as(user: pwd.struct_passwd, cfg, seconds: float = 3.5) -> dict:
    """Run node_agent.resolve_endpoints (what agents and workers do first) for `seconds` in
    a forked child that dropped to `user`: architect's own code, as that user, with no
    python of the venv to exec. → {records, calls, outcome}."""
    from architect.agent import node_agent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no zmq here, only HTTP and socket probes
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            records, calls = [], []
            handler = logging.Handler()
            handler.emit = lambda r: records.append((r.levelname, r.getMessage()))
            logging.getLogger("architect.agent").addHandler(handler)
            logging.getLogger("architect.agent").setLevel(logging.DEBUG)
            real = node_agent.connect_info
            node_agent.connect_info = lambda *a: calls.append(1) or real(*a)
            stop = threading.Event()
            threading.Timer(seconds, stop.set).start()
            try:
                node_agent.resolve_endpoints(cfg, stop)
                outcome = "returned"
            except SystemExit:
                outcome = "stopped"
            os.write(write, json.dumps({"records": records, "calls": len(calls),
                                        "outcome": outcome}).encode())
        except BaseException:
            import traceback
            os.write(write, json.dumps({"outcome": traceback.format_exc()}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    return result


def test_s8_agent_of_another_user_logs_why_and_keeps_trying(open_tmp):
    """A second user's agent on the master, given the dashboard URL (whose web login it
    has: GET /api/bus answers it) or nothing (straight to 127.0.0.1 with the master's data
    dir): it cannot use the bus, says why in one error, and keeps retrying (no crash)."""
    user = other_user()
    from architect import config
    up = start_up(open_tmp, {"ARCHITECT_USER": "admin", "ARCHITECT_PASSWORD": "s8-secret"})
    try:
        assert requests.get(up.web + "/api/bus", timeout=5).json()["control"].startswith("ipc://")
        no_file = {"ARCHITECT_CONFIG": "/nonexistent.json"}
        for overrides in ({"dashboard_url": up.web},
                          {"data_dir": str(up.tmp / "data"), "bus_port": up.base_port}):
            cfg = config.load({"node_name": "intruder", **overrides}, env=no_file)
            result = resolve_as(user, cfg)
            assert result["outcome"] == "stopped", result  # still trying when told to stop
            assert result["calls"] >= 2, result
            errors = [m for level, m in result["records"] if level == "ERROR"]
            assert len(errors) == 1, result["records"]
            assert "permission denied" in errors[0], errors
            assert "admits only the owner of the master's data dir, and root" in errors[0]
            assert "beyond loopback" in errors[0] and "run this as " in errors[0]
        assert up.node("intruder") is None
    finally:
        up.stop_all()


def test_broker_killed_leaves_sockets_and_restarts_on_them(cluster):
    cluster.start_broker()
    cluster.start_agent("r1")
    cluster.start_worker("r1", "-c", "2")
    cluster.wait_workers(1)
    bus = local_bus_dir(cluster.tmp / "data")
    assert cluster.endpoints.control == f"ipc://{bus}/control"
    assert cluster.wait_task(cluster.submit(payload={"command": "echo one"}))["status"] == \
        "succeeded"

    # a second broker on the same folder is refused; the first keeps its sockets
    second = cluster.spawn("broker2", "broker")
    assert second.wait(30) != 0
    assert "another broker" in cluster.log("broker2") and "is using the bus" in cluster.log("broker2")
    assert cluster.rpc("ping")["pong"] is True

    old_pid = cluster.rpc("cluster.stats")["pid"]
    cluster.kill("broker", signal.SIGKILL)
    for name in SOCKETS:  # what a killed broker leaves: socket files nobody listens on
        assert stat.S_ISSOCK(os.lstat(bus / name).st_mode)
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(ConnectionRefusedError):
        s.connect(str(bus / "control"))
    cluster._rpc.close()  # a fresh control socket for the new broker
    cluster._rpc = None
    cluster.start_broker()  # binds the same paths again
    assert cluster.rpc("cluster.stats")["pid"] != old_pid
    assert stat.S_IMODE(os.stat(bus).st_mode) == 0o700
    # the worker and the agent reconnect by themselves
    cluster.wait_workers(1, timeout=30)
    beats = cluster.rpc("cluster.stats")["counters"]["heartbeats"]
    wait_for(lambda: cluster.rpc("cluster.stats")["counters"]["heartbeats"] > beats, 15,
             what="heartbeats from the agent after the restart")
    assert cluster.wait_task(cluster.submit(payload={"command": "echo two"}))["status"] == \
        "succeeded"
    assert "another broker" not in cluster.log("broker")

    # a clean stop removes the sockets: clients then see no bus there
    cluster.kill("broker", signal.SIGTERM)
    assert not any((bus / n).exists() for n in SOCKETS)


def test_long_data_dir_uses_the_tmp_fallback(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 40)
    cluster = Cluster(tmp_path)
    cluster.env["ARCHITECT_DATA_DIR"] = str(deep)
    try:
        cluster.spawn("broker", "broker")
        bus = local_bus_dir(deep)
        digest = hashlib.sha256(os.path.realpath(deep).encode()).hexdigest()[:12]
        assert bus == Path(f"/tmp/architect-{os.geteuid()}-{digest}")
        wait_for(lambda: (bus / "control").exists(), 15, what="the fallback folder's sockets")
        st = os.stat(bus)
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
        # broker, CLI and client compute the same folder from the data dir
        assert json.loads(cluster.cli("cluster", "stats", "--json").stdout)["pid"]
        with Client(broker="127.0.0.1", bus_port=cluster.base_port, data_dir=str(deep)) as c:
            assert c.call("ping")["pong"] is True
        # and the second user is kept out of it as out of DATA_DIR/bus
        if os.geteuid() == 0:
            other_user()
            python, has_zmq = probe_python(OTHER)
            other = run_probe(cluster, OTHER, python, data=deep)
            assert other["list_bus"] == errno.EACCES and other["unix"]["control"] == errno.EACCES
            if has_zmq:
                assert other["zmq"]["ipc"] is False
    finally:
        cluster.stop_all()
        shutil.rmtree(local_bus_dir(deep), ignore_errors=True)


def test_bus_folder_of_another_user_is_refused_and_a_loose_one_tightened(tmp_path):
    user = other_user()
    cluster = Cluster(tmp_path)
    bus = tmp_path / "data" / "bus"
    bus.mkdir(parents=True)
    os.chown(bus, user.pw_uid, user.pw_gid)
    try:
        proc = cluster.spawn("broker", "broker")
        assert proc.wait(30) != 0
        log = cluster.log("broker")
        assert "broker cannot start" in log and f"belongs to {OTHER}" in log, log
        assert not (bus / "control").exists()

        os.chown(bus, 0, 0)
        os.chmod(bus, 0o777)
        cluster.start_broker()
        assert stat.S_IMODE(os.stat(bus).st_mode) == 0o700
    finally:
        cluster.stop_all()  # (a Cluster made here, not by the fixture: stop what it started)
