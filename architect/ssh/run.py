"""Run one command over a pooled connection: capped output, a hard timeout."""

from __future__ import annotations

import time

import paramiko

from architect.ssh.pool import SSHError, SSHPool, Target

CHUNK = 32768


def execute(pool: SSHPool, target: Target, command: str, timeout: float,
            max_output: int = 1 << 20) -> dict:
    """→ {exit_code, stdout, stderr, truncated, duration, error, error_kind}. Never raises."""
    started = time.monotonic()
    deadline = started + timeout
    for attempt in (1, 2):  # a reused connection may have died: one fresh retry
        try:
            conn = pool.acquire(target, timeout=max(0.1, deadline - time.monotonic()))
        except SSHError as exc:
            return _result(started, error=str(exc), kind=exc.kind)
        reused = conn.uses > 1
        try:
            # a live connection opens a channel at once; one that takes longer than a connect
            # would is dead (a cut link keeps TCP "up"): drop it and try a fresh connection
            channel = conn.client.get_transport().open_session(
                timeout=max(0.1, min(pool.connect_timeout, deadline - time.monotonic())))
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError, AttributeError) as exc:
            pool.release(conn, broken=True)
            if reused and attempt == 1:
                continue
            return _result(started, error=f"SSH channel to {target.label} failed: {exc}",
                           kind="connect")
        try:
            return _read(channel, started, deadline, timeout, max_output)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            pool.release(conn, broken=True)
            conn = None
            return _result(started, error=f"connection to {target.label} lost: {exc}",
                           kind="connect")
        finally:
            if conn is not None:
                try:
                    channel.close()
                except Exception:
                    pass
                pool.release(conn)
    return _result(started, error="unreachable", kind="connect")


def _read(channel, started, deadline, timeout, max_output) -> dict:
    out, err = bytearray(), bytearray()
    truncated = False
    channel.settimeout(0.0)
    while True:
        busy = False
        for ready, recv, buf in ((channel.recv_ready, channel.recv, out),
                                 (channel.recv_stderr_ready, channel.recv_stderr, err)):
            while ready():
                data = recv(CHUNK)
                if not data:
                    break
                busy = True
                room = max_output - len(buf)
                if room > 0:
                    buf += data[:room]
                if len(data) > room:
                    truncated = True
        if channel.exit_status_ready() and not channel.recv_ready() \
                and not channel.recv_stderr_ready():
            break
        if time.monotonic() >= deadline:
            channel.close()
            return _result(started, out, err, truncated, error=f"command timed out after "
                                                                f"{timeout:g}s", kind="timeout")
        if not busy:
            time.sleep(0.005)
    return _result(started, out, err, truncated, exit_code=channel.recv_exit_status())


def _result(started, out=b"", err=b"", truncated=False, exit_code=None, error=None, kind=None):
    return {"exit_code": exit_code, "stdout": bytes(out).decode("utf-8", "replace"),
            "stderr": bytes(err).decode("utf-8", "replace"), "truncated": truncated,
            "duration": round(time.monotonic() - started, 3), "error": error, "error_kind": kind}
