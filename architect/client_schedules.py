"""Client methods for schedules: add, list, read, pause, resume, remove and run them.

SchedulesMixin is a base of architect.client.Client (use them from there); they need
only its call().
"""

from __future__ import annotations


class SchedulesMixin:
    def add_schedule(self, name: str, task_type: str, payload: dict | None = None, *,
                     cron: str | None = None, every: float | str | None = None,
                     tz: str = "UTC", missed: str = "skip", overlap: str = "allow",
                     paused: bool = False, **task_options) -> dict:
        """Add a schedule that submits this task → the schedule dict (name, spec, when,
        next_due, ...). Exactly one of cron ("*/5 * * * *", in tz) and every (seconds, or
        "30s", "5m", "2h", "1d"). missed: skip | once; overlap: allow | skip. task_options:
        requirements, node, timeout, max_attempts, retries, retry_backoff, priority.
        RequestRejected (code "conflict" when the name exists, "bad_request" otherwise)."""
        return self.call("schedule.add", {
            "name": name, "task_type": task_type, "payload": payload or {},
            **_given({"cron": cron, "every": every}), "tz": tz, "missed": missed,
            "overlap": overlap, "paused": paused, **_given(task_options)})

    def schedules(self) -> list[dict]:
        """Every schedule dict, by name, each with last_task_status."""
        return self.call("schedule.list", {})

    def schedule(self, name: str, runs: int = 20) -> dict:
        """One schedule dict with "runs": its latest `runs` (0-500) runs, newest first (id,
        due, at, outcome, task_id, detail, task_status). NotFound for an unknown name."""
        return self.call("schedule.get", {"name": name, "runs": runs})

    def pause_schedule(self, name: str) -> dict:
        """Pause it (nothing fires until resumed) → the schedule dict."""
        return self.call("schedule.pause", {"name": name})

    def resume_schedule(self, name: str) -> dict:
        """Resume it (next_due: its first due time after now) → the schedule dict."""
        return self.call("schedule.resume", {"name": name})

    def remove_schedule(self, name: str) -> dict:
        """Remove it and its runs (its tasks stay) → {name, removed: True}."""
        return self.call("schedule.remove", {"name": name})

    def run_schedule(self, name: str) -> dict:
        """Submit its task now, paused or not → {name, task_id} (wait(task_id) for it)."""
        return self.call("schedule.run", {"name": name})


def _given(options: dict) -> dict:
    """The options given (not None)."""
    return {k: v for k, v in options.items() if v is not None}
