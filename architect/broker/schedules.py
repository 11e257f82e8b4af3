"""Schedules: tasks fired by cron expressions or fixed intervals (issue 13), pure state.

A schedule holds a task spec and when to fire it: `cron` (5 fields, or 6 with seconds last,
parsed by croniter, in the schedule's time zone) or `every` seconds. `next_due` is the next
time it fires; firing submits the task and moves `next_due` on in the same commit, so a
broker that dies either fired a due time and recorded it, or did neither: a restart never
fires a due time twice.

When the broker gets to a schedule late (it was down, or the loop stalled), every due time
it passed is accounted for, never silently dropped:
- the latest due time fires if it is at most `grace` seconds old (a minute, or half the
  interval when that is shorter); the older ones are recorded as `missed` runs;
- past that, all are missed; with `missed: once` one run fires now for the latest of them
  (`caught_up`), with `missed: skip` (the default) none does.
`overlap: skip` records a run as `skipped` instead of firing while the schedule's previous
task has not ended; `allow` fires regardless.

The book is pure: time is passed in; the broker submits the tasks it hands back and
persists the dirty schedules and the runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
MIN_EVERY, MAX_EVERY = 1.0, 366 * 86400.0
MAX_MISSED_ROWS = 1000          # missed due times recorded one by one; beyond, one row counts them
MAX_STEPS = 100_000             # cron due times stepped per schedule per tick (the rest: next tick)
MISSED = ("skip", "once")
OVERLAP = ("skip", "allow")
OUTCOMES = ("fired", "caught_up", "manual", "missed", "skipped", "error")


class ScheduleError(ValueError):
    pass


@dataclass(eq=False)
class Schedule:
    name: str
    spec: dict                        # the task: task_type, payload and task options
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    missed: str = "skip"
    overlap: str = "allow"
    paused: bool = False
    next_due: float | None = None
    last_due: float | None = None
    last_task: int | None = None
    last_outcome: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    created_by: str | None = None

    def when(self) -> str:
        return f"cron {self.cron} ({self.tz})" if self.cron else f"every {self.every:g}s"

    def grace(self) -> float:
        return min(60.0, self.every / 2) if self.every else 60.0

    def after(self, ts: float) -> float:
        """The first due time strictly after `ts`."""
        if self.every:
            return ts + self.every
        return croniter(self.cron, datetime.fromtimestamp(ts, ZoneInfo(self.tz))).get_next(float)

    def public(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["when"] = self.when()
        return out


COLUMNS = tuple(f.name for f in fields(Schedule))


def check(name, cron, every, tz, missed, overlap) -> None:
    """Refuse a schedule that cannot work, naming what is wrong."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ScheduleError("name must be 1-100 letters, digits, '_', '.', ':' or '-', "
                            "starting with a letter or digit")
    if (cron is None) == (every is None):
        raise ScheduleError("give exactly one of cron and every")
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) not in (5, 6) or \
                not croniter.is_valid(cron):
            raise ScheduleError(f"cron {cron!r} is not a valid expression (5 fields, or 6 "
                                "with seconds last)")
    else:
        if isinstance(every, bool) or not isinstance(every, (int, float)) or \
                not MIN_EVERY <= every <= MAX_EVERY:
            raise ScheduleError(f"every must be {MIN_EVERY:g} s to {MAX_EVERY / 86400:g} days")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(f"unknown time zone {tz!r}") from None
    if missed not in MISSED:
        raise ScheduleError(f"missed must be one of {', '.join(MISSED)}")
    if overlap not in OVERLAP:
        raise ScheduleError(f"overlap must be one of {', '.join(OVERLAP)}")


def parse_every(text) -> float:
    """'30s', '5m', '2h', '1d' or a number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if not m:
        raise ScheduleError(f"every {text!r}: use a number with s, m, h or d (30s, 5m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


class ScheduleChanges(tuple):
    """(dirty: name -> Schedule or None when removed, runs); falsy when empty."""

    def __new__(cls, dirty, runs):
        return super().__new__(cls, (dirty, runs))

    def __bool__(self) -> bool:
        return bool(self[0] or self[1])


@dataclass
class Fire:
    """What the book decided for one schedule: fire a task for `due` (outcome fired,
    caught_up or manual), with the runs to record."""
    schedule: Schedule
    due: float
    outcome: str


@dataclass
class ScheduleBook:
    by_name: dict = field(default_factory=dict)
    dirty: dict = field(default_factory=dict)       # name -> Schedule (None: removed)
    runs: list = field(default_factory=list)        # rows for schedule_runs, see run_row()

    def load(self, schedule: Schedule) -> None:
        self.by_name[schedule.name] = schedule

    def add(self, s: Schedule, now: float) -> Schedule:
        if s.name in self.by_name:
            raise ScheduleError(f"a schedule named {s.name!r} exists")
        s.created_at = s.updated_at = now
        s.next_due = s.after(now)
        self.by_name[s.name] = s
        self.dirty[s.name] = s
        return s

    def remove(self, name: str) -> Schedule | None:
        s = self.by_name.pop(name, None)
        if s is not None:
            self.dirty[name] = None
        return s

    def set_paused(self, s: Schedule, paused: bool, now: float) -> None:
        """Pause, or resume: a resumed schedule's next due time is the first after now (the
        ones while paused are not runs at all)."""
        if s.paused != paused:
            s.paused = paused
            if not paused:
                s.next_due = s.after(now)
            s.updated_at = now
            self.dirty[s.name] = s

    def run_row(self, s: Schedule, due: float, now: float, outcome: str,
                task_id: int | None = None, detail: str | None = None) -> None:
        self.runs.append((s.name, due, now, outcome, task_id, detail))

    def due(self, now: float, running) -> list[Fire]:
        """Every schedule whose time came: what to fire (the caller submits the tasks and
        calls fired()), with the missed and skipped runs recorded. running(task_id) says
        whether a task has not ended yet (for overlap: skip)."""
        out = []
        for s in self.by_name.values():
            if s.paused or s.next_due is None or s.next_due > now:
                continue
            listed, extra, latest, t = [], 0, None, s.next_due
            if s.every and now - t > s.every * (MAX_MISSED_ROWS + 2):
                # a long way behind: count the oldest due times instead of stepping them
                jump = int((now - t) / s.every) - MAX_MISSED_ROWS - 1
                listed.append(t)                   # the first is listed, the next jump - 1
                extra, t = jump - 1, t + jump * s.every   # only counted

            steps = 0
            while t <= now and steps < MAX_STEPS:
                if latest is not None:
                    if len(listed) < MAX_MISSED_ROWS:
                        listed.append(latest)
                    else:
                        extra += 1
                latest, t = t, s.after(t)
                steps += 1
            dues = listed + [latest]
            on_time = now - latest <= s.grace()
            for d in dues[:-1]:
                self.run_row(s, d, now, "missed", detail="the broker was not running then"
                             if now - d > s.grace() else "late")
            if extra > 0:
                self.run_row(s, dues[-2] if len(dues) > 1 else latest, now, "missed",
                             detail=f"and {extra} more missed due times, not listed one by one")
            outcome = "fired" if on_time else ("caught_up" if s.missed == "once" else None)
            if outcome is None:
                self.run_row(s, latest, now, "missed", detail="the broker was not running then")
            elif s.overlap == "skip" and s.last_task is not None and running(s.last_task):
                self.run_row(s, latest, now, "skipped",
                             detail=f"task {s.last_task} of the previous run is still going")
                s.last_outcome = "skipped"
            else:
                out.append(Fire(s, latest, outcome))
            s.last_due = latest
            s.next_due = t
            s.updated_at = now
            self.dirty[s.name] = s
        return out

    def fired(self, fire: Fire, task_id: int, now: float) -> None:
        s = fire.schedule
        s.last_task, s.last_outcome = task_id, fire.outcome
        s.updated_at = now
        self.dirty[s.name] = s
        self.run_row(s, fire.due, now, fire.outcome, task_id)

    def refused(self, fire: Fire, error: str, now: float) -> None:
        """The run's task was refused at submit (say its pinned node was removed)."""
        s = fire.schedule
        s.last_outcome = "error"
        s.updated_at = now
        self.dirty[s.name] = s
        self.run_row(s, fire.due, now, "error", detail=error)

    # --- unit of work -----------------------------------------------------------------
    def take_dirty(self) -> "ScheduleChanges":
        taken = ScheduleChanges(self.dirty, self.runs)
        self.dirty, self.runs = {}, []
        return taken

    @property
    def pending(self) -> bool:
        return bool(self.dirty or self.runs)

    def put_back(self, taken) -> None:
        dirty, runs = taken
        for name, s in dirty.items():
            self.dirty.setdefault(name, self.by_name.get(name) if s is not None else None)
        self.runs = runs + self.runs


def row(s: Schedule) -> tuple:
    """The schedules row (COLUMNS order; spec JSON, paused 0 / 1)."""
    from architect.fastjson import dumps
    return tuple(dumps(s.spec) if c == "spec" else int(s.paused) if c == "paused"
                 else getattr(s, c) for c in COLUMNS)
