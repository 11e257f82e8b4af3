"""Client methods for workflows: chain, group, chord, and retrying ended tasks.

WorkflowsMixin is a base of architect.client.Client (use them from there); they need
only its call().
"""

from __future__ import annotations

from architect.client_errors import RequestRejected


class WorkflowsMixin:
    def chain(self, *specs: dict, pass_results: bool = True) -> list[int]:
        """Submit tasks that run one after the other: each waits for the one before it to
        succeed (depends_on) and, with pass_results, gets its result as an extra input (a
        python function: one more positional argument; shell: $ARCHITECT_INPUTS, JSON).
        If one fails, the rest end cancelled ("dependency N failed"). specs: task specs
        ({"task_type", "payload", ...}). → the task ids, in order."""
        ids: list[int] = []
        for spec in specs:
            extra = {"depends_on": [ids[-1]], "pass_results": pass_results} if ids else {}
            ids.append(self.call("task.submit", {**spec, **extra})["id"])
        return ids

    def group(self, specs: list[dict]) -> list[int]:
        """Submit tasks that run side by side (one commit) → their ids."""
        out = self.call("task.submit_many", {"tasks": list(specs)})
        bad = [item["error"]["message"] for item in out if "error" in item]
        if bad:
            raise RequestRejected("bad_request", "; ".join(bad))
        return [item["id"] for item in out]

    def chord(self, specs: list[dict], callback: dict, pass_results: bool = True) -> dict:
        """A group and a callback that runs once, after every task of the group succeeded,
        with all their results as inputs (in the group's order) → {"group": [ids],
        "callback": id}."""
        ids = self.group(specs)
        cb = self.call("task.submit", {**callback, "depends_on": ids,
                                       "pass_results": pass_results})["id"]
        return {"group": ids, "callback": cb}

    def retry(self, task_id: int) -> dict:
        """Run a failed or timed-out task again (the same task, its history kept) → the task,
        queued. RequestRejected (conflict) for a task in any other state."""
        return self.call("task.retry", {"id": task_id})

    def retry_many(self, status: str | None = None, since: float = 86400, node: str | None = None,
                   task_type: str | None = None, limit: int = 1000,
                   dry_run: bool = False, queue: str | None = None) -> dict:
        """Retry every task that ended failed or timed_out (or `status`) in the last `since`
        seconds, on `node`, of `task_type`, in `queue` when given → {count, ids, dry_run};
        dry_run only counts them."""
        params = {"status": status, "since": since, "node": node, "task_type": task_type,
                  "queue": queue, "limit": limit, "dry_run": dry_run}
        return self.call("task.retry_many", {k: v for k, v in params.items() if v is not None})
