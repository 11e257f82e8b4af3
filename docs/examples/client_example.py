"""Submit tasks with the Python client (architect.client) and print their results.

    ARCHITECT_BROKER_HOST=127.0.0.1 ARCHITECT_BUS_PORT=5555 python docs/examples/client_example.py

Needs a running broker and at least one task worker (`architect up`, or `architect broker`
plus `architect worker`). Exits 0 when every task succeeded, 1 otherwise.
"""

import os
import sys

from architect.client import (ArchitectError, BrokerUnavailable, Client, TaskFailed,
                              WaitTimeout)

HOST = os.environ.get("ARCHITECT_BROKER_HOST", "127.0.0.1")
PORT = int(os.environ.get("ARCHITECT_BUS_PORT", "5555"))
TIMEOUT = float(os.environ.get("ARCHITECT_REQUEST_TIMEOUT", "5"))   # per request, seconds


def main() -> int:
    with Client(broker=HOST, bus_port=PORT, timeout=TIMEOUT) as client:
        # a shell task: the command runs under /bin/sh -c on some worker
        shell = client.submit("shell", {"command": "echo hello from $(hostname)"}, timeout=60)
        # a python task: any importable "module:function", called with args / kwargs
        python = client.submit("python", {"function": "architect.agent.builtin_tasks:add",
                                          "args": [2, 3]}, timeout=60)
        print(f"submitted shell task {shell['id']} and python task {python['id']}")

        done = client.wait(shell["id"], timeout=60)        # the task dict, once final
        print(f"shell task {done['id']}: {done['status']} on {done['assigned_node']}, "
              f"exit code {done['result']['exit_code']}, stdout {done['result']['stdout']!r}")
        if done["status"] != "succeeded":
            return 1

        done = client.wait(python["id"], timeout=60)
        print(f"python task {done['id']}: {done['status']}, result {done['result']['result']!r}")
        if done["status"] != "succeeded" or done["result"]["result"] != 5:
            return 1

        # map(): one python task per item, results in the order of the items
        sums = client.map("architect.agent.builtin_tasks:add", [(1, 1), (2, 2), (3, 3)],
                          timeout=60)
        print(f"map add -> {sums}")
        if sums != [2, 4, 6]:
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokerUnavailable as exc:
        print(f"broker not reachable at {HOST}:{PORT}: {exc}", file=sys.stderr)
    except (TaskFailed, WaitTimeout) as exc:
        print(f"task did not succeed: {exc}", file=sys.stderr)
    except ArchitectError as exc:
        print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
