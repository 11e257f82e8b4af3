"""The backup.* control methods (admin only) and the broker's own periodic backup.

The master takes every backup itself, because the database is there: never a worker.

    backup.run       {keep_days?}             → {backup, bytes, integrity, seconds, pruned}
    backup.schedule  {every, keep_days?}      → the policy ("every": "1d", seconds, 0 = off)
    backup.status    {}                       → the policy, the last result, whether one runs

The policy is stored beside the database in DATA_DIR/backup-policy.json (config
`backup_every` / `backup_keep_days` give it when that file is absent: the same setting on
every master of a PostgreSQL cluster). The broker's tick starts a backup when one is due
(`every` after the last one, or after the policy was set); a broker that was down past a
due time takes one backup at start, not one per missed time. A backup runs on a thread
(SQLite's online backup of one snapshot, or pg_dump): the loop never waits for it; its
result is answered and recorded on the loop's next tick. One at a time.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from architect.broker.methods import ADMIN, read, write
from architect.broker.params import DEFERRED, RequestError
from architect.bus.messages import Reply

log = logging.getLogger("architect.broker")
POLICY_FILE = "backup-policy.json"
MIN_EVERY = 60.0
MAX_EVERY = 366 * 86400.0
MAX_KEEP_DAYS = 36500.0


@dataclass
class Policy:
    every: float = 0.0          # seconds between periodic backups; 0: none
    keep_days: float = 0.0      # prune this tool's copies older than this; 0: keep all
    set_at: float = 0.0
    last_at: float | None = None
    last: dict | None = None    # the last result, or {"error": ...}
    set_by: str | None = None

    def next_due(self) -> float | None:
        if not self.every:
            return None
        return (self.last_at if self.last_at is not None else self.set_at) + self.every

    def public(self) -> dict:
        return {**asdict(self), "next_due": self.next_due()}


def parse_every(value) -> float:
    """'1d', '12h', '30m', seconds, or 0 / 'off' for none."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none", "0"):
        return 0.0
    from architect.broker.schedules import ScheduleError, parse_every as parse
    try:
        every = parse(value)
    except ScheduleError as exc:
        raise RequestError(str(exc)) from None
    if every == 0:
        return 0.0
    if not MIN_EVERY <= every <= MAX_EVERY:
        raise RequestError(f"every must be 0 (off) or {MIN_EVERY:g} s to "
                           f"{MAX_EVERY / 86400:g} days")
    return every


def check_keep_days(value) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0 <= value <= MAX_KEEP_DAYS:
        raise RequestError(f"keep_days must be a number of days 0-{MAX_KEEP_DAYS:g} (0: keep all)")
    return float(value)


@dataclass
class Backups:
    """The broker's backup state: the policy, the running backup and who waits for it."""
    config: object
    policy: Policy = field(default_factory=Policy)
    running: dict | None = None               # {started_at, reason}
    waiters: list = field(default_factory=list)   # (token, req_id) of backup.run requests
    done: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    wake: object = None                       # wake(): the loop answers now, not next poll

    @property
    def directory(self) -> Path:
        return Path(self.config.backup_dir or Path(self.config.data_dir) / "backups")

    @property
    def policy_path(self) -> Path:
        return Path(self.config.data_dir) / POLICY_FILE

    def load(self, now: float) -> None:
        try:
            data = json.loads(self.policy_path.read_text())
            self.policy = Policy(**{k: data[k] for k in Policy.__dataclass_fields__ if k in data})
        except FileNotFoundError:
            self.policy = Policy(every=float(self.config.backup_every or 0),
                                 keep_days=float(self.config.backup_keep_days or 0), set_at=now)
        except (OSError, ValueError, TypeError) as exc:
            log.error("backup policy %s unreadable (%s): no periodic backup until it is set "
                      "again", self.policy_path, exc)
            self.policy = Policy()
        for leftover in self.directory.glob("architect-*.partial"):  # a stop mid-backup
            leftover.unlink(missing_ok=True)

    def save(self) -> None:
        path = self.policy_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self.policy), indent=2, sort_keys=True))
        os.replace(tmp, path)

    def start(self, reason: str, now: float, keep_days: float) -> None:
        self.running = {"started_at": now, "reason": reason}
        threading.Thread(target=self._take, args=(keep_days, now), name="backup",
                         daemon=True).start()

    def _take(self, keep_days: float, now: float) -> None:
        from architect.broker import backup, backup_pg
        try:
            ext = "dump" if self.config.database_url else "db"
            out = backup.default_path(self.directory, ext, now)
            if self.config.database_url:
                result = backup_pg.backup(self.config.database_url, out)
            else:
                result = backup.backup(self.config.db_path, out)
            result["pruned"] = backup.prune(self.directory, keep_days, keep=out)
        except Exception as exc:  # BackupError, or the disk: reported, never raised
            result = {"error": str(exc) or type(exc).__name__}
        self.done.put(result)
        if self.wake is not None:
            try:
                self.wake()
            except Exception:  # the loop still finds it on its next poll
                pass


def init_backups(b) -> None:
    b.backups = Backups(b.config)
    b.backups.load(b.tasks_now)
    b.backups.wake = lambda: _wake(b)


def _wake(b) -> None:
    """From the backup thread: a message on the loop's inproc wake socket (the one the SSH
    service's threads use, polled by the loop), on a socket of this thread's own."""
    import zmq

    from architect.bus.transport import context
    addr = getattr(getattr(b, "ssh", None), "addr", None)
    if addr is None:
        return
    sock = context().socket(zmq.PUSH)
    try:
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(addr)
        sock.send(b"", zmq.NOBLOCK)
    finally:
        sock.close()


def tick_backups(b, now: float) -> None:
    """Answer a finished backup; start the periodic one when it is due."""
    bk = b.backups
    while True:
        try:
            result = bk.done.get_nowait()
        except queue.Empty:
            break
        _finished(b, result, now)
    due = bk.policy.next_due()
    if bk.running is None and due is not None and now >= due:
        bk.start("schedule", now, bk.policy.keep_days)
        log.info("backup: periodic backup started (every %gs) into %s", bk.policy.every,
                 bk.directory)


def _finished(b, result: dict, now: float) -> None:
    bk = b.backups
    reason = (bk.running or {}).get("reason", "?")
    bk.running = None
    bk.policy.last, bk.policy.last_at = {**result, "reason": reason}, now
    try:
        bk.save()
    except OSError as exc:
        log.error("backup: could not record the policy in %s: %s", bk.policy_path, exc)
    if "error" in result:
        b.counters.inc("backup_errors")
        log.error("backup failed (%s): %s", reason, result["error"])
        reply = {"ok": False, "error": {"code": "backup_failed", "message": result["error"]}}
    else:
        b.counters.inc("backups")
        log.info("backup (%s): %s, %d bytes, %ss%s", reason, result["backup"], result["bytes"],
                 result["seconds"], f", pruned {len(result['pruned'])} old copies"
                 if result.get("pruned") else "")
        reply = {"ok": True, "result": result}
    b.emit("backup.done", {**result, "reason": reason})
    for token, req_id in bk.waiters:
        b._ready_waits.append((token, Reply(id=req_id, **reply)))
    bk.waiters = []


# --- methods ------------------------------------------------------------------------------

def backup_run(b, params, ctx):
    """{keep_days?} → when the copy is checked: {backup, bytes, integrity, seconds, pruned}.
    The copy goes in the backup dir (DATA_DIR/backups); keep_days prunes older copies."""
    keep_days = check_keep_days(params.get("keep_days", b.backups.policy.keep_days or None))
    bk = b.backups
    if bk.running is not None:
        ago = ctx.now - bk.running["started_at"]
        raise RequestError(f"a backup is under way (started {ago:.0f}s ago, "
                           f"{bk.running['reason']}); try again when it is done",
                           code="conflict")
    bk.start(f"requested by {ctx.caller.name}", ctx.now, keep_days)
    bk.waiters.append((ctx.token, ctx.req_id))
    return DEFERRED


def backup_schedule(b, params, ctx):
    """{every: "1d" | seconds | 0 / "off", keep_days?} → the policy. The first periodic
    backup is `every` from now."""
    if "every" not in params:
        raise RequestError("parameter 'every' is required (0 or 'off' stops the schedule)")
    every = parse_every(params["every"])
    keep_days = check_keep_days(params.get("keep_days"))
    bk = b.backups
    bk.policy.every, bk.policy.keep_days = every, keep_days
    bk.policy.set_at, bk.policy.set_by = ctx.now, ctx.caller.name
    bk.policy.last_at = None     # the next one is `every` from now
    try:
        bk.save()
    except OSError as exc:
        raise RequestError(f"could not store the backup policy: {exc}") from None
    return backup_status(b, {}, ctx)


def backup_status(b, params, ctx):
    """{} → {policy, directory, running}."""
    bk = b.backups
    return {**bk.policy.public(), "directory": str(bk.directory),
            "backend": "postgresql" if b.config.database_url else "sqlite",
            "running": bk.running}


BACKUP_METHODS = {
    "backup.run": write(backup_run, ADMIN),
    "backup.schedule": write(backup_schedule, ADMIN),
    "backup.status": read(backup_status, ADMIN),
}
