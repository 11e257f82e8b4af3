"""Control methods ssh.* and node.set_ssh. Commands run on the SSH service's threads after
their audit rows are committed; the reply comes when they end."""

from __future__ import annotations

from architect.broker.methods import ADMIN, read, write
from architect.broker.params import DEFERRED, NotFound, RequestError, get

MAX_COMMAND = 10_000
SSH_KEYS = {"user": str, "port": int, "key_file": str, "host": str}


def check_ssh(ssh: dict) -> dict:
    out = {}
    for key, value in ssh.items():
        kind = SSH_KEYS.get(key)
        if kind is None:
            raise RequestError(f"ssh: unknown field {key!r} (allowed: {', '.join(SSH_KEYS)})")
        if value is None:
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RequestError(f"ssh.{key} must be {'an integer' if kind is int else 'a string'}")
        if key == "port" and not 1 <= value <= 65535:
            raise RequestError("ssh.port must be 1-65535")
        if kind is str and not 0 < len(value) <= 512:
            raise RequestError(f"ssh.{key} must be 1-512 characters")
        out[key] = value
    return out


def _node(b, key):
    node = b.registry.get(key)
    if node is None:
        raise NotFound(f"no node {key!r}")
    return node


def _command(params) -> tuple[str, float, str]:
    command = get(params, "command", str)
    if not command.strip() or len(command) > MAX_COMMAND:
        raise RequestError(f"command must be 1-{MAX_COMMAND} characters")
    timeout = get(params, "timeout", float, None)
    if timeout is not None and not 0 < timeout <= 3600:
        raise RequestError("timeout must be between 0 and 3600 seconds")
    return command, timeout, get(params, "who", str, "unknown")[:200]


def ssh_execute(b, params, ctx):
    """{node, command, timeout?, who?} → {node, target, exit_code, stdout, stderr, truncated,
    duration, error}. Audited before it runs."""
    command, timeout, who = _command(params)
    node = _node(b, get(params, "node", (str, int)))
    timeout = timeout or b.config.ssh_command_timeout
    try:
        target = b.ssh.target(node)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    row = b.ssh.audit(who, "execute", node, target.label, command, ctx.now)
    b.ssh.submit(ctx.token, ctx.req_id, True,
                 [(row, node.name, target, b.ssh.command_job(target, command, timeout))], [], ctx.now)
    return DEFERRED


def ssh_broadcast(b, params, ctx):
    """{command, nodes?: [name|id], requirements?: [capability], timeout?, who?} → {results:
    [per node], count, ok, failed, duration}. In parallel; each node bounded by its timeout."""
    command, timeout, who = _command(params)
    timeout = timeout or b.config.ssh_command_timeout
    keys = get(params, "nodes", list, None)
    reqs = set(get(params, "requirements", list, []))
    if keys is not None:
        nodes = [_node(b, k) for k in keys]
    else:
        nodes = sorted(b.registry.by_name.values(), key=lambda n: n.name)
    nodes = [n for n in nodes if reqs <= set(n.capabilities)]
    batch = f"broadcast-{b.ssh.next_id}"
    jobs, refused = [], []
    for node in nodes:
        try:
            target = b.ssh.target(node)
        except ValueError as exc:
            b.ssh.audit(who, "broadcast", node, "", command, ctx.now, status="error", error=str(exc),
                        batch=batch)
            refused.append({"node": node.name, "target": None, "exit_code": None, "stdout": "",
                            "stderr": "", "truncated": False, "duration": 0.0, "error": str(exc),
                            "error_kind": "config"})
            continue
        row = b.ssh.audit(who, "broadcast", node, target.label, command, ctx.now, batch=batch)
        jobs.append((row, node.name, target, b.ssh.command_job(target, command, timeout)))
    b.ssh.submit(ctx.token, ctx.req_id, False, jobs, refused, ctx.now)
    return DEFERRED


def ssh_trust(b, params, ctx):
    """{node, who?} → {ok, host, key_type, error}: record the node's current host key as
    trusted (the explicit operator step; unknown keys are refused otherwise)."""
    node = _node(b, get(params, "node", (str, int)))
    who = get(params, "who", str, "unknown")[:200]
    try:
        target = b.ssh.target(node)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    row = b.ssh.audit(who, "trust", node, target.label, "(trust host key)", ctx.now)
    b.ssh.submit(ctx.token, ctx.req_id, True, [(row, node.name, target, b.ssh.trust_job(target))],
                 [], ctx.now)
    return DEFERRED


def ssh_pool_stats(b, params, ctx):
    """{} → {hosts: {user@host:port: {open, in_use, idle, created, reused, failures}}, totals,
    max_connections_per_host, connection_timeout, idle_timeout}."""
    return b.ssh.pool.stats()


def ssh_pool_cleanup(b, params, ctx):
    """{} → {closed: n}: close every idle connection."""
    return {"closed": b.ssh.pool.cleanup(0.0)}


def ssh_audit(b, params, ctx):
    """{limit? (100), node?} → [audit row] newest first."""
    limit = get(params, "limit", int, 100)
    if not 1 <= limit <= 10_000:
        raise RequestError("limit must be 1-10000")
    return b.store.audit(limit, get(params, "node", str, None))


def node_set_ssh(b, params, ctx):
    """{node, ssh: {user?, port?, key_file?, host?}} → node: how the master reaches it."""
    node = _node(b, get(params, "node", (str, int)))
    node.ssh = {**(node.ssh or {}), **check_ssh(get(params, "ssh", dict))}
    b.registry.dirty.add(node)
    return node.public(ctx.now)


SSH_METHODS = {
    "ssh.execute": write(ssh_execute, ADMIN),
    "ssh.broadcast": write(ssh_broadcast, ADMIN),
    "ssh.trust": write(ssh_trust, ADMIN),
    "ssh.pool.stats": read(ssh_pool_stats),
    "ssh.pool.cleanup": write(ssh_pool_cleanup, ADMIN),
    "ssh.audit": read(ssh_audit, ADMIN),
    "node.set_ssh": write(node_set_ssh, ADMIN),
}
