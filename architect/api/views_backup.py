"""REST views: backups, taken by the master's broker (admin only: the broker checks the role)."""

from __future__ import annotations

from flask import jsonify

from architect.api.errors import ApiError, BadRequest
from architect.api.inputs import field, json_body, query_int
from architect.api.views_nodes import broker

BACKUP_TIMEOUT = 3600.0     # a big database takes a while; the broker never waits for it


def run_backup():
    """POST /api/backup[?keep_days=N] → {backup, bytes, integrity, seconds, pruned} once the
    copy is checked (201)."""
    params = {}
    keep = query_int("keep_days", -1, 0, 36500)
    if keep >= 0:
        params["keep_days"] = keep
    # a broker that is not there answers 503 in the usual request timeout, not after the
    # backup's hour: ask it something quick first
    broker().call("ping", {})
    try:
        out = broker().call("backup.run", params, timeout=BACKUP_TIMEOUT)
    except ApiError as exc:
        if exc.code == "backup_failed":   # the master's disk or database, not this request
            raise ApiError(f"the backup failed: {exc.message}", code="backup_failed",
                           status=500) from None
        raise
    return jsonify(out), 201


def backup_status():
    return jsonify(broker().call("backup.status", {}))


def backup_schedule():
    """PUT /api/backup/schedule {every: seconds | 0 | "off", keep_days?} → the policy."""
    data = json_body()
    every = data.get("every")
    if every != "off" and (isinstance(every, bool) or not isinstance(every, (int, float))):
        raise BadRequest("every must be a number of seconds (0, or 60 to 31622400), or 'off'")
    params = {"every": every}
    keep = field(data, "keep_days", float, None)
    if keep is not None:
        params["keep_days"] = keep
    return jsonify(broker().call("backup.schedule", params))
