"""Tier 3: long waits show progress on a terminal only (`tasks submit --wait`), and
`architect backup` draws its progress bar there; piped or --json, nothing extra."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest


def on_a_tty(cluster, *args, timeout=30.0) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; (exit code, what it drew)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "architect", *args], env=cluster.env,
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:      # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(10), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(leader)


def test_submit_wait_shows_a_spinner_on_a_tty_only(cluster):
    cluster.start_broker()
    cluster.start_worker("p1")
    cluster.wait_workers(1)
    code, drawn = on_a_tty(cluster, "tasks", "submit", "--command", "sleep 1.5; echo done",
                           "--wait")
    assert code == 0 and "done" in drawn
    assert "\r" in drawn and "s" in drawn.split("task", 1)[1] and "\x1b[K" in drawn
    piped = cluster.cli("tasks", "submit", "--command", "sleep 1.2; echo piped", "--wait")
    assert piped.stdout == "piped\n" and piped.stderr == ""
    as_json = cluster.cli("tasks", "submit", "--command", "sleep 1.2", "--wait", "--json")
    assert json.loads(as_json.stdout)["status"] == "succeeded" and as_json.stderr == ""
    # backup: a progress bar on the terminal, none when piped
    code, drawn = on_a_tty(cluster, "backup")
    assert code == 0 and "backup  [####" in drawn and "integrity ok" in drawn, drawn
    piped = cluster.cli("backup")
    assert piped.stderr == "" and piped.stdout.startswith("backup ")


@pytest.mark.slow
def test_ssh_broadcast_counts_nodes_done_on_a_tty(cluster, tmp_path):
    from tests.sshd import Sshd
    sshd = Sshd(tmp_path / "sshd").start()
    try:
        cluster.env.update({"ARCHITECT_SSH_CONNECT_TIMEOUT": "2",
                            "ARCHITECT_SSH_KEY_FILE": str(sshd.client_key)})
        cluster.start_broker()
        cluster.rpc("node.register", {"name": "a-ok", "ip_address": "127.0.0.1",
                                      "ssh": {"port": sshd.port, "user": sshd.user}})
        cluster.rpc("node.register", {"name": "c-down", "ip_address": "127.0.0.1",
                                      "ssh": {"port": 1, "user": sshd.user}})
        (cluster.tmp / "data" / "known_hosts").write_text(sshd.known_hosts_line())
        code, drawn = on_a_tty(cluster, "ssh", "broadcast", "--", "sleep 2; echo ok")
        assert code == 1 and "1 ok, 1 failed" in drawn          # c-down fails
        assert "-- 1/2 nodes done" in drawn, drawn              # while a-ok still runs
        piped = cluster.cli("ssh", "broadcast", "--node", "a-ok", "--", "echo hi")
        assert "nodes done" not in piped.stdout + piped.stderr
    finally:
        sshd.stop()
