"""Tier 4: two "hosts" in network namespaces made by this test, each with a node agent, a
task worker and an sshd; the master (broker + web) in the root namespace on the veth address.
Only the namespaces' own addresses are contacted. F4: a host's link cut and restored."""

import os
import secrets
import shutil
import subprocess
import time

import pytest
import requests

from architect.bus.transport import Endpoints
from tests.helpers import PYTHON, free_port_block, wait_for
from tests.sshd import Sshd

pytestmark = pytest.mark.slow
LOGIN = ("admin", "netns-" + secrets.token_hex(4))


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


MASTER_IP = "10.231.0.1"


class Bridge:
    """The test's own network: a bridge in the root namespace holding the master's address."""

    def __init__(self):
        self.name = f"abr{secrets.token_hex(2)}"
        sh("ip", "link", "add", self.name, "type", "bridge")
        sh("ip", "addr", "add", f"{MASTER_IP}/24", "dev", self.name)
        sh("ip", "link", "set", self.name, "up")

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.name], capture_output=True)


class Host:
    """A namespace on the bridge through a veth pair (the root end is its "cable")."""

    def __init__(self, index: int, bridge: Bridge):
        tag = secrets.token_hex(2)
        self.ns = f"arch{index}{tag}"
        self.veth = f"va{index}{tag}"
        self.peer = f"vb{index}{tag}"
        self.master_ip = MASTER_IP
        self.ip = f"10.231.0.{10 + index}"
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.peer)
        sh("ip", "link", "set", self.peer, "netns", self.ns)
        sh("ip", "link", "set", self.veth, "master", bridge.name)
        sh("ip", "link", "set", self.veth, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "addr", "add", f"{self.ip}/24", "dev", self.peer)
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", self.peer, "up")
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")

    def link(self, up: bool) -> None:
        sh("ip", "link", "set", self.veth, "up" if up else "down")

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


@pytest.fixture
def hosts():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.fail("multi-host tests need root and iproute2 (`ip netns`); CI runs as root")
    made, bridge = [], Bridge()
    try:
        made = [Host(1, bridge), Host(2, bridge)]
        yield made
    finally:
        for h in made:
            h.remove()
        bridge.remove()


def test_two_hosts_health_tasks_ssh_and_a_cut_link(cluster, hosts, tmp_path):
    master_ip = MASTER_IP
    port = free_port_block(1)
    cluster.env.update({"ARCHITECT_USER": LOGIN[0], "ARCHITECT_PASSWORD": LOGIN[1],
                        "ARCHITECT_SSH_CONNECT_TIMEOUT": "2", "ARCHITECT_HEARTBEAT_TIMEOUT": "3"})
    # the master listens on the test network (beyond loopback: CURVE and login are on)
    cluster.spawn("server", "server", "--host", master_ip, "--port", str(port),
                  "--bus-host", master_ip)
    web = f"http://{master_ip}:{port}"
    cluster.endpoints = Endpoints(master_ip, cluster.base_port)  # the test talks to it there
    wait_for(lambda: requests.get(f"{web}/healthz", timeout=1).status_code == 200, 30,
             what="master up")
    assert requests.get(f"{web}/api/nodes", timeout=5).status_code == 401
    assert requests.get(f"{web}/api/bus", timeout=5).json()["server_key"]

    sshds = []
    for i, host in enumerate(hosts):
        name = f"host{i + 1}"
        env = {"ARCHITECT_STATE_DIR": str(tmp_path / name), "ARCHITECT_DASHBOARD_URL":
               f"http://{host.master_ip}:{port}"}
        calm = tmp_path / f"{name}.json"
        calm.write_text('{"cpu_percent": 5, "memory_percent": 20, "disk_percent": 30, "load_1": 0.1}')
        for role, args in (("agent", ["--metrics-file", str(calm)]), ("worker", ["-c", "2"])):
            log = open(tmp_path / f"{name}-{role}.log", "ab")
            cluster.procs[f"{role}-{name}"] = subprocess.Popen(
                ["ip", "netns", "exec", host.ns, PYTHON, "-m", "architect", role, "--name", name,
                 *args], env={**cluster.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        sshd = Sshd(tmp_path / f"sshd-{name}", host=host.ip, netns=host.ns)
        sshds.append(sshd.start())
    try:
        wait_for(lambda: {n["name"]: n["status"] for n in cluster.rpc("node.list")} ==
                 {"host1": "healthy", "host2": "healthy"}, 30, what="both hosts healthy")
        nodes = {n["name"]: n for n in cluster.rpc("node.list")}
        assert nodes["host1"]["ip_address"] == hosts[0].ip  # seen from its own namespace
        assert set(cluster.rpc("keys.list")["authorized"]) >= {"host1", "host2", "local"}
        # tasks run in the namespaces
        cluster.wait_workers(2)
        for name in ("host1", "host2"):
            task = cluster.wait_task(cluster.submit(payload={"command": "ip -o -4 addr show"},
                                                    node=name))
            assert task["status"] == "succeeded"
            assert hosts[int(name[-1]) - 1].ip in task["result"]["stdout"]
        # SSH from the master into each namespace
        known = cluster.tmp / "data" / "known_hosts"
        known.write_text("".join(s.known_hosts_line() for s in sshds))
        for i, name in enumerate(("host1", "host2")):
            cluster.rpc("node.set_ssh", {"node": name, "ssh": {"port": sshds[i].port,
                                                                "user": sshds[i].user,
                                                                "key_file": str(sshds[i].client_key)}})
        out = cluster.rpc("ssh.broadcast", {"command": "hostname -I", "who": "test"}, timeout=60)
        assert out["ok"] == 2, out
        # F4: cut host2's link
        hosts[1].link(False)
        cut_at = time.monotonic()
        wait_for(lambda: cluster.node("host2")["status"] == "offline", 15, what="host2 offline")
        assert time.monotonic() - cut_at < 3 + 3
        alert = [a for a in cluster.rpc("alert.list") if a["node_name"] == "host2"]
        assert alert and alert[0]["level"] == "offline"
        assert cluster.node("host1")["status"] == "healthy"
        r = cluster.rpc("ssh.execute", {"node": "host2", "command": "true"}, timeout=30)
        assert r["error"], "SSH to a cut host must fail"
        # restore: back to healthy by itself, alert resolved
        hosts[1].link(True)
        wait_for(lambda: cluster.node("host2")["status"] == "healthy", 30,
                 what="host2 healthy again")
        wait_for(lambda: not [a for a in cluster.rpc("alert.list") if a["node_name"] == "host2"],
                 10, what="host2's alert resolved")
        task = cluster.wait_task(cluster.submit(payload={"command": "echo back"}, node="host2"), 30)
        assert task["status"] == "succeeded"
    finally:
        for s in sshds:
            s.stop()
