"""REST views: schedules (tasks on a cron expression or every N seconds) and queues."""

from __future__ import annotations

from flask import jsonify

from architect.api.errors import BadRequest
from architect.api.inputs import json_body, query_int
from architect.api.views_nodes import broker
from architect.api.views_tasks import _spec

SCHEDULE_FIELDS = ("cron", "every", "tz", "missed", "overlap", "paused")


def list_schedules():
    out = broker().call("schedule.list", {})
    return jsonify({"schedules": out, "count": len(out)})


def add_schedule():
    data = json_body()
    name = data.get("name")
    if not isinstance(name, str):
        raise BadRequest("name must be a string")
    params = {"name": name, **_spec(data)}
    params.pop("submitted_by", None)           # a run's task is submitted by schedule:NAME
    params.pop("idempotency_key", None)
    if data.get("idempotency_key") is not None:
        raise BadRequest("a schedule's tasks take no idempotency_key (each run is a new task)")
    for key in SCHEDULE_FIELDS:
        if data.get(key) is not None:
            params[key] = data[key]
    return jsonify(broker().call("schedule.add", params)), 201


def get_schedule(name):
    return jsonify(broker().call("schedule.get", {"name": name,
                                                  "runs": query_int("runs", 20, 0, 500)}))


def remove_schedule(name):
    return jsonify(broker().call("schedule.remove", {"name": name}))


def pause_schedule(name):
    return jsonify(broker().call("schedule.pause", {"name": name}))


def resume_schedule(name):
    return jsonify(broker().call("schedule.resume", {"name": name}))


def run_schedule(name):
    return jsonify(broker().call("schedule.run", {"name": name})), 201



def list_queues():
    out = broker().call("queue.list", {})
    return jsonify({"queues": out, "count": len(out)})


def set_queue(name):
    data = json_body()
    return jsonify(broker().call("queue.set", {"name": name,
                                               "concurrency": data.get("concurrency"),
                                               "rate": data.get("rate")}))
