"""Run a shell task on an Architect cluster with only zmq and msgpack (no architect import).

    pip install pyzmq msgpack
    ARCHITECT_BROKER_HOST=127.0.0.1 ARCHITECT_BUS_PORT=5555 python raw_zmq_tasks.py

Talks to the control socket (bus port + 2) as docs/PROTOCOL.md describes: task.submit, then
task.wait until the task is final. Prints the task's stdout. Exits 0 if the task succeeded,
else 1 (or the task's exit code when it has one).

Environment: ARCHITECT_BROKER_HOST (127.0.0.1), ARCHITECT_BUS_PORT (5555),
ARCHITECT_DATA_DIR (./data: on the master, the loopback bus is ipc://DATA_DIR/bus/control),
ARCHITECT_CONTROL (the endpoint itself, e.g. "control" of GET /api/bus: overrides the rest),
ARCHITECT_REQUEST_TIMEOUT (5 s per reply), TASK_COMMAND (the shell command to run).
"""

import hashlib
import os
import stat
import sys
import uuid

import msgpack
import zmq

HOST = os.environ.get("ARCHITECT_BROKER_HOST", "127.0.0.1")
PORT = int(os.environ.get("ARCHITECT_BUS_PORT", "5555"))


def control_endpoint():
    """As docs/PROTOCOL.md §1 says: on the master the broker's loopback bus is a Unix socket
    in DATA_DIR/bus (or, for a long DATA_DIR, in /tmp/architect-UID-HASH); else tcp."""
    if os.environ.get("ARCHITECT_CONTROL"):
        return os.environ["ARCHITECT_CONTROL"]
    data = os.path.realpath(os.environ.get("ARCHITECT_DATA_DIR") or "./data")
    folder = os.path.join(data, "bus")
    if len(os.fsencode(os.path.join(folder, "heartbeat"))) > 107:
        owner = os.stat(data).st_uid if os.path.exists(data) else os.getuid()
        folder = f"/tmp/architect-{owner}-{hashlib.sha256(os.fsencode(data)).hexdigest()[:12]}"
    try:
        if HOST in ("127.0.0.1", "localhost", "::1") and \
                stat.S_ISSOCK(os.stat(os.path.join(folder, "control")).st_mode):
            return f"ipc://{folder}/control"
    except OSError:
        pass
    return f"tcp://{HOST}:{PORT + 2}"


CONTROL = control_endpoint()
COMMAND = os.environ.get("TASK_COMMAND", "echo hello from $(hostname); uname -s")
# how long to wait for a reply (task.wait: on top of its own timeout)
REPLY_GRACE_MS = int(float(os.environ.get("ARCHITECT_REQUEST_TIMEOUT", "5")) * 1000)


def call(ctx, method, params, timeout_ms=REPLY_GRACE_MS):
    """One request on a fresh DEALER socket; the result, or RuntimeError / TimeoutError."""
    req_id = uuid.uuid4().hex
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(CONTROL)
    try:
        sock.send(msgpack.packb({"v": 1, "type": "request", "id": req_id,
                                 "method": method, "params": params}, use_bin_type=True))
        while sock.poll(timeout_ms):
            reply = msgpack.unpackb(sock.recv(), raw=False)
            if reply.get("type") != "reply" or reply.get("id") not in (req_id, None):
                continue                                  # not the answer to this request
            if reply["ok"]:
                return reply["result"]
            raise RuntimeError(f"{reply['error']['code']}: {reply['error']['message']}")
    finally:
        sock.close()
    raise TimeoutError(f"no reply from {CONTROL} to {method}")


def main() -> int:
    ctx = zmq.Context.instance()
    # The idempotency key makes a resend safe: if the first request was accepted but its
    # reply was lost, the second one returns the same task (created: false).
    spec = {"task_type": "shell", "payload": {"command": COMMAND}, "timeout": 60,
            "idempotency_key": uuid.uuid4().hex}
    for attempt in range(3):
        try:
            created = call(ctx, "task.submit", spec)
            break
        except TimeoutError:
            if attempt == 2:
                raise
    print(f"task {created['id']} {created['status']}")
    task = {"final": False}
    for _ in range(10):                        # up to 10 x 30 s
        task = call(ctx, "task.wait", {"id": created["id"], "timeout": 30},
                    timeout_ms=30_000 + REPLY_GRACE_MS)
        if task["final"]:
            break
    if not task["final"]:
        print("the task did not finish in time", file=sys.stderr)
        return 1
    result = task["result"] or {}
    sys.stdout.write(result.get("stdout") or "")
    sys.stderr.write(result.get("stderr") or "")
    print(f"task {task['id']} {task['status']} on {task['assigned_node']} "
          f"(exit code {result.get('exit_code')})")
    if task["status"] == "succeeded":
        return 0
    code = result.get("exit_code")
    return code if isinstance(code, int) and 0 < code < 256 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
