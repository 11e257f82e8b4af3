"""Tier 3: the SSH pool through the broker (control methods, CLI, REST) against real sshd."""

import socket
import threading
import time

import pytest

from tests.helpers import wait_for
from tests.sshd import Sshd

pytestmark = pytest.mark.slow


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd").start()
    yield server
    server.stop()


def ssh_cluster(cluster, sshd, **env):
    cluster.env.update({"ARCHITECT_SSH_CONNECT_TIMEOUT": "2", "ARCHITECT_SSH_KEY_FILE":
                        str(sshd.client_key), **env})
    cluster.start_broker()
    return cluster


def register(cluster, name, sshd, port=None):
    cluster.rpc("node.register", {"name": name, "ip_address": "127.0.0.1",
                                  "ssh": {"port": port or sshd.port, "user": sshd.user}})


def trust(cluster, sshd):
    (cluster.tmp / "data" / "known_hosts").write_text(sshd.known_hosts_line())


def ex(cluster, node, command, timeout=None):
    params = {"node": node, "command": command, "who": "test"}
    if timeout:
        params["timeout"] = timeout
    return cluster.rpc("ssh.execute", params, timeout=60)


def test_unknown_host_key_is_refused_and_audited_then_trusted(cluster, sshd, tmp_path):
    ssh_cluster(cluster, sshd)
    register(cluster, "n1", sshd)
    marker = tmp_path / "ran"
    r = ex(cluster, "n1", f"touch {marker}")
    assert r["exit_code"] is None and "unknown host key" in r["error"]
    assert not marker.exists(), "a command ran on a host with an unknown key"
    audit = cluster.rpc("ssh.audit")
    assert audit[0]["status"] == "refused" and audit[0]["command"] == f"touch {marker}"
    # the operator trusts it explicitly (CLI), then it runs
    out = cluster.cli("ssh", "trust", "n1", "--yes").stdout
    assert "trusted [127.0.0.1]:" in out
    r = ex(cluster, "n1", f"touch {marker}; hostname")
    assert r["exit_code"] == 0 and marker.exists() and r["stdout"].strip() == socket.gethostname()


def test_execute_reuse_cap_cleanup_and_recovery(cluster, sshd):
    ssh_cluster(cluster, sshd)
    register(cluster, "n1", sshd)
    trust(cluster, sshd)
    r = ex(cluster, "n1", "echo out; echo err >&2; exit 3")
    assert (r["exit_code"], r["stdout"], r["stderr"], r["error"]) == (3, "out\n", "err\n", None)
    for _ in range(2):
        assert ex(cluster, "n1", "true")["exit_code"] == 0
    host = cluster.rpc("ssh.pool.stats")["hosts"][f"{sshd.user}@127.0.0.1:{sshd.port}"]
    assert host["created"] == 1 and host["reused"] == 2 and host["open"] == 1
    # five at once never open more than three connections
    results, peak = [], [0]

    def one():
        from architect.bus.rpc import RpcClient
        with RpcClient(cluster.endpoints.control, timeout=60) as rpc:
            results.append(rpc.call("ssh.execute", {"node": "n1", "command": "sleep 0.6; echo ok"}))
    threads = [threading.Thread(target=one) for _ in range(5)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak[0] = max(peak[0], cluster.rpc("ssh.pool.stats")["totals"]["open"])
        time.sleep(0.05)
    assert [r["stdout"] for r in results] == ["ok\n"] * 5
    assert peak[0] <= 3 and cluster.rpc("ssh.pool.stats")["totals"]["open"] == 3
    # cleanup closes the idle ones
    assert cluster.rpc("ssh.pool.cleanup")["closed"] == 3
    assert cluster.rpc("ssh.pool.stats")["totals"]["open"] == 0
    # sshd killed: an error within the connect timeout; back: the pool recovers
    assert ex(cluster, "n1", "true")["exit_code"] == 0
    sshd.stop()
    started = time.monotonic()
    r = ex(cluster, "n1", "true")
    assert r["error"] and time.monotonic() - started < 2 + 1.5
    sshd.start()
    assert ex(cluster, "n1", "echo back")["stdout"] == "back\n"
    audit = cluster.rpc("ssh.audit", {"limit": 100})
    assert len(audit) == 11 and {a["who"] for a in audit} == {"test", "unknown"}


def test_timeout_and_huge_output(cluster, sshd):
    ssh_cluster(cluster, sshd)
    register(cluster, "n1", sshd)
    trust(cluster, sshd)
    started = time.monotonic()
    r = ex(cluster, "n1", "sleep 30", timeout=1)
    assert "timed out" in r["error"] and time.monotonic() - started < 4
    started = time.monotonic()
    r = ex(cluster, "n1", "head -c 50000000 /dev/zero | tr '\\0' x", timeout=60)
    assert r["exit_code"] == 0 and r["truncated"] is True and len(r["stdout"]) == 1 << 20
    assert time.monotonic() - started < 30


class Blackhole:
    """Accepts TCP connections and never says a word (a hung host)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_broadcast_one_down_one_hanging(cluster, sshd, tmp_path):
    second = Sshd(tmp_path / "sshd2").start()
    hole = Blackhole()
    try:
        ssh_cluster(cluster, sshd)
        register(cluster, "a-ok", sshd)
        register(cluster, "b-ok", second)
        cluster.rpc("node.register", {"name": "c-down", "ip_address": "127.0.0.1",
                                      "ssh": {"port": 1, "user": sshd.user}})
        cluster.rpc("node.register", {"name": "d-hung", "ip_address": "127.0.0.1",
                                      "ssh": {"port": hole.port, "user": sshd.user}})
        second.client_key.write_bytes(sshd.client_key.read_bytes())  # one key for all
        (second.dir / "authorized_keys").write_text(f"{open(str(sshd.client_key) + '.pub').read()}")
        (cluster.tmp / "data" / "known_hosts").write_text(sshd.known_hosts_line()
                                                           + second.known_hosts_line())
        started = time.monotonic()
        out = cluster.rpc("ssh.broadcast", {"command": "sleep 1; echo ok", "timeout": 5,
                                            "who": "test"}, timeout=60)
        took = time.monotonic() - started
        by = {r["node"]: r for r in out["results"]}
        assert by["a-ok"]["stdout"] == "ok\n" and by["b-ok"]["stdout"] == "ok\n"
        assert by["a-ok"]["duration"] < 2.5 and by["b-ok"]["duration"] < 2.5
        assert by["c-down"]["error"] and by["c-down"]["duration"] < 1
        assert by["d-hung"]["error"] and "timed out" in by["d-hung"]["error"]
        assert out["ok"] == 2 and out["failed"] == 2
        # parallel: about the slowest (connect timeout 2 s), not the sum
        assert took < 4.5, took
        rows = cluster.rpc("ssh.audit", {"limit": 10})
        assert {r["node"] for r in rows} == {"a-ok", "b-ok", "c-down", "d-hung"}
        assert all(r["action"] == "broadcast" and r["batch"] == rows[0]["batch"] for r in rows)
        # the CLI shows the same
        cli = cluster.cli("ssh", "broadcast", "--node", "a-ok", "--node", "b-ok", "--", "echo", "hi")
        assert cli.stdout.count("hi\n") == 2 and "2 ok, 0 failed" in cli.stdout
    finally:
        second.stop()
        hole.close()


def test_cli_exec_and_audit_and_set_ssh(cluster, sshd):
    ssh_cluster(cluster, sshd)
    cluster.rpc("node.register", {"name": "n1", "ip_address": "127.0.0.1"})
    cluster.cli("nodes", "ssh", "n1", "--port", str(sshd.port), "--user", sshd.user)
    trust(cluster, sshd)
    out = cluster.cli("ssh", "exec", "n1", "--", "echo", "hello", "world")
    assert "hello world" in out.stdout
    failed = cluster.cli("ssh", "exec", "n1", "--", "exit", "4", check=False)
    assert failed.returncode == 1 and "exit 4" in failed.stdout
    audit = cluster.cli_json("ssh", "audit")
    assert audit[0]["status"] == "failed" and audit[0]["who"].startswith("cli:")
    assert audit[1]["status"] == "ok" and audit[1]["command"] == "echo hello world"
    assert "total: open 1" in cluster.cli("ssh", "pool").stdout
