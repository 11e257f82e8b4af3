"""The schedule.* control methods (issue 13) and the broker's duty: fire what is due.

Reads are for viewers; adding, pausing, resuming, removing and running a schedule now are
for operators (ARCHITECTURE.md §10). A schedule's task spec is checked as a submit is, when
the schedule is added; the task a run submits is an ordinary task, submitted by
`schedule:<name>`.
"""

from __future__ import annotations

import logging

from architect.broker import schedules as S
from architect.broker.methods import read, write
from architect.broker.params import NotFound, RequestError, get
from architect.broker.persist import Stream
from architect.broker.task_handlers import parse_spec

log = logging.getLogger("architect.broker")
SPEC_KEYS = ("task_type", "payload", "requirements", "node", "timeout", "max_attempts",
             "retries", "retry_backoff", "priority", "expires_in", "retry_on", "no_retry_on",
             "soft_timeout", "labels")
MAX_SCHEDULES = 10_000


def init_schedules(b) -> None:
    b.schedules = S.ScheduleBook()
    for row in b.store.load_schedules():
        b.schedules.load(S.Schedule(**row))


def schedule_stream(b) -> Stream:
    def write_changes(store, taken):
        dirty, runs = taken
        for name, s in dirty.items():
            if s is None:
                store.delete_schedule(name)
        rows = [S.row(s) for s in dirty.values() if s is not None]
        if rows:
            store.save_schedules(rows)
        if runs:
            store.insert_schedule_runs(runs)
    return Stream("schedules", b.schedules, write_changes, urgent=True)


def _running(b, task_id: int) -> bool:
    return task_id in b.tasks.active


def _submit(b, s: S.Schedule, now: float):
    """The run's task, or the reason it could not be submitted."""
    try:
        task = parse_spec(b, dict(s.spec), f"schedule:{s.name}", now)
    except RequestError as exc:
        return None, str(exc)
    task = b.tasks.submit(task, now, {})
    b.counters["tasks_submitted"] = b.counters.get("tasks_submitted", 0) + 1
    return task, None


def tick_schedules(b, now: float) -> None:
    """Fire what is due (only the active broker runs a loop, so only it fires)."""
    for fire in b.schedules.due(now, lambda task_id: _running(b, task_id)):
        _fire(b, fire, now)


def _fire(b, fire: S.Fire, now: float) -> tuple[int | None, str | None]:
    """(the run's task id, None), or (None, why its task was refused)."""
    task, error = _submit(b, fire.schedule, now)
    if task is None:
        b.schedules.refused(fire, error, now)
        log.warning("schedule %s: its task was refused: %s", fire.schedule.name, error)
        return None, error
    b.schedules.fired(fire, task.id, now)
    b.counters["schedule_runs"] = b.counters.get("schedule_runs", 0) + 1
    return task.id, None


# --- methods ----------------------------------------------------------------------------

def _schedule(b, params) -> S.Schedule:
    name = get(params, "name", str)
    s = b.schedules.by_name.get(name)
    if s is None:
        raise NotFound(f"no schedule {name!r}")
    return s


def _public(b, s: S.Schedule) -> dict:
    out = s.public()
    task = b.tasks.get(s.last_task) if s.last_task else None
    out["last_task_status"] = task.status if task is not None else (
        (b.store.task(s.last_task) or {}).get("status") if s.last_task else None)
    return out


def schedule_add(b, params, ctx):
    """{name, cron | every, tz? (UTC), missed? (skip|once), overlap? (allow|skip), paused?,
    task_type, payload, requirements?, node?, timeout?, max_attempts?, retries?,
    retry_backoff?, priority?} → the schedule, with next_due."""
    name = params.get("name")
    every = params.get("every")
    try:
        if every is not None:
            every = S.parse_every(every)
        S.check(name, params.get("cron"), every, params.get("tz", "UTC"),
                params.get("missed", "skip"), params.get("overlap", "allow"))
    except S.ScheduleError as exc:
        raise RequestError(str(exc)) from None
    paused = get(params, "paused", bool, False)
    spec = {k: params[k] for k in SPEC_KEYS if params.get(k) is not None}
    parse_spec(b, spec, ctx.caller.name)          # the task must be one a submit accepts
    if name in b.schedules.by_name:
        raise RequestError(f"a schedule named {name!r} exists", code="conflict")
    if len(b.schedules.by_name) >= MAX_SCHEDULES:
        raise RequestError(f"at most {MAX_SCHEDULES} schedules")
    s = S.Schedule(name=name, spec=spec, cron=params.get("cron"), every=every,
                   tz=params.get("tz", "UTC"), missed=params.get("missed", "skip"),
                   overlap=params.get("overlap", "allow"), created_by=ctx.caller.name)
    b.schedules.add(s, ctx.now)
    if paused:
        b.schedules.set_paused(s, True, ctx.now)
    return _public(b, s)


def schedule_list(b, params, ctx):
    """{} → [schedule] by name, each with next_due, last_due, last_task and its status."""
    return [_public(b, s) for _, s in sorted(b.schedules.by_name.items())]


def schedule_get(b, params, ctx):
    """{name, runs? (20, max 500)} → the schedule with its latest runs (newest first)."""
    s = _schedule(b, params)
    limit = get(params, "runs", int, 20)
    if not 0 <= limit <= 500:
        raise RequestError("runs must be 0-500")
    out = _public(b, s)
    out["runs"] = b.store.schedule_runs(s.name, limit) if limit else []
    return out


def schedule_pause(b, params, ctx):
    """{name} → the schedule, paused: nothing fires until resumed."""
    s = _schedule(b, params)
    b.schedules.set_paused(s, True, ctx.now)
    return _public(b, s)


def schedule_resume(b, params, ctx):
    """{name} → the schedule; its next run is the first due time after now."""
    s = _schedule(b, params)
    b.schedules.set_paused(s, False, ctx.now)
    return _public(b, s)


def schedule_remove(b, params, ctx):
    """{name} → {name, removed: true}; its runs go too (their tasks stay)."""
    s = _schedule(b, params)
    b.schedules.remove(s.name)
    return {"name": s.name, "removed": True}


def schedule_run(b, params, ctx):
    """{name} → {name, task_id}: one run now (outcome manual), paused or not; the due times
    stay as they were."""
    s = _schedule(b, params)
    task_id, error = _fire(b, S.Fire(s, ctx.now, "manual"), ctx.now)
    if task_id is None:
        raise RequestError(f"the schedule's task was refused: {error}")
    return {"name": s.name, "task_id": task_id}


SCHEDULE_METHODS = {
    "schedule.add": write(schedule_add),
    "schedule.list": read(schedule_list),
    "schedule.get": read(schedule_get),
    "schedule.pause": write(schedule_pause),
    "schedule.resume": write(schedule_resume),
    "schedule.remove": write(schedule_remove),
    "schedule.run": write(schedule_run),
}
