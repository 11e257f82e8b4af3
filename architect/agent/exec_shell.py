"""Run a `shell` task: one subprocess in its own process group, its output capped and streamed.

The caller's thread drives everything in one loop, no reader threads: it waits on both pipes
with a selector for at most POLL seconds, then checks whether the process exited, the cancel
event and the deadline. So cancel and timeout are noticed within ~POLL, and a chatty process
never blocks on a full pipe (output past `max_output` is read and dropped).

Stopping (timeout or cancel): SIGTERM to the process group; SIGKILL to the group once
`kill_grace` has passed with any member still alive (zombies do not count). A task stopped this
way is timed_out / cancelled whatever its exit status.

Leftovers: when the main process has exited but something it started still holds the pipes
open (`sleep 100 &`), the group is SIGKILLed after DRAIN_GRACE and reading stops. Background
children that redirected their output elsewhere are left alone when the task ends by itself.
"""

from __future__ import annotations

import codecs
import logging
import json
import os
import selectors
import signal
import subprocess
import time

log = logging.getLogger(__name__)

POLL = 0.02  # seconds: the longest the loop waits before checking cancel / deadline / exit
DRAIN_GRACE = 0.5  # seconds the pipes may stay open after the main process exited
EMIT_INTERVAL = 0.05  # seconds between on_output calls per stream (at most ~20 a second)
CHUNK = 1 << 16


class Stream:
    """One output pipe: keeps the first `limit` bytes and streams the same bytes in batches."""

    def __init__(self, name: str, limit: int, on_output=None):
        self.name, self.limit, self.on_output = name, limit, on_output
        self.kept = bytearray()
        self.truncated = False
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace") if on_output else None
        self.pending: list[str] = []
        self.last_emit = float("-inf")

    def feed(self, data: bytes) -> None:
        room = self.limit - len(self.kept)
        if len(data) > room:
            self.truncated = True
            data = data[:max(room, 0)]
        if data:
            self.kept += data
            if self.decoder is not None:
                self.pending.append(self.decoder.decode(data))

    def emit(self, now: float, final: bool = False) -> None:
        """Hand pending text to on_output if EMIT_INTERVAL has passed (or this is the end)."""
        if self.decoder is None or (not final and now - self.last_emit < EMIT_INTERVAL):
            return
        if final:
            self.pending.append(self.decoder.decode(b"", final=True))
        text = "".join(self.pending)
        self.pending = []
        if not text:
            return
        self.last_emit = now
        try:
            self.on_output(self.name, text)
        except Exception:  # a broken callback must not break the task; stop streaming
            log.exception("on_output failed for %s; no more output streamed", self.name)
            self.decoder = None

    def text(self) -> str:
        return self.kept.decode("utf-8", "replace")


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:  # already gone (or not ours any more)
        pass


def group_alive(pgid: int) -> bool:
    """True while the process group has a member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        names = os.listdir("/proc")
    except OSError:  # no /proc: zombies count as alive, so SIGKILL comes after kill_grace
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _failed(error: str) -> dict:
    return {"state": "failed", "error": error}


def _start(payload: dict, soft_timeout: float | None = None):
    """Popen the task, or a failed partial result explaining why it could not start."""
    argv = payload.get("argv") or ["/bin/sh", "-c", payload["command"]]
    cwd = payload.get("cwd")
    env = payload.get("env")
    if soft_timeout is not None:
        env = {**(env or {}), "ARCHITECT_SOFT_TIMEOUT": f"{soft_timeout:g}"}
    if payload.get("inputs") is not None:   # results of the tasks it depends on (workflows)
        env = {**(env or {}), "ARCHITECT_INPUTS": json.dumps(payload["inputs"])}
    if cwd is not None and not os.path.isdir(cwd):
        return _failed(f"cwd {cwd!r} does not exist or is not a directory")
    try:
        return subprocess.Popen(list(argv), cwd=cwd, env={**os.environ, **env} if env else None,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError as exc:
        if cwd is not None and exc.filename == cwd:
            return _failed(f"cwd {cwd!r} does not exist or is not a directory")
        return _failed(f"executable not found: {argv[0]!r}")
    except PermissionError:
        return _failed(f"cannot execute {argv[0]!r}: permission denied")
    except (OSError, ValueError) as exc:
        return _failed(f"cannot start {argv[0]!r}: {exc}")


def run(payload: dict, *, timeout: float | None, cancel, on_output=None,
        max_output: int = 1_048_576, kill_grace: float = 5.0,
        soft_timeout: float | None = None) -> dict:
    """Run one shell task (payload already validated); a partial result dict. At
    soft_timeout the process group gets SIGTERM once (it may clean up and exit: then the
    task ended timed_out, "soft time limit"); at timeout it is stopped as always."""
    proc = _start(payload, soft_timeout)
    if isinstance(proc, dict):
        return proc
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    soft_at = None if soft_timeout is None else started + soft_timeout
    soft_sent = False
    pgid = proc.pid  # start_new_session: the child leads its own session and group
    selector = selectors.DefaultSelector()
    streams = []
    for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        streams.append(Stream(name, max_output, on_output))
        selector.register(pipe, selectors.EVENT_READ, streams[-1])
    reason = None  # "timed_out" | "cancelled" once we started stopping it
    term_at = exited_at = None
    killed = False

    def stop_reading():
        for key in list(selector.get_map().values()):
            selector.unregister(key.fileobj)
            key.fileobj.close()

    try:
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if reason is None and exited_at is None:
                if cancel.is_set():
                    reason = "cancelled"
                elif deadline is not None and now >= deadline:
                    reason = "timed_out"
                if reason is not None:
                    _killpg(pgid, signal.SIGTERM)
                    term_at = now
                elif soft_at is not None and not soft_sent and now >= soft_at:
                    _killpg(pgid, signal.SIGTERM)   # the soft limit: a chance to clean up
                    soft_sent = True
            if term_at is not None and not killed and now - term_at >= kill_grace:
                _killpg(pgid, signal.SIGKILL)
                killed = True
            if exited_at is not None and selector.get_map() and now - exited_at >= DRAIN_GRACE:
                _killpg(pgid, signal.SIGKILL)  # leftovers hold the pipes: end them, stop reading
                killed = True
                stop_reading()
            if exited_at is not None and not selector.get_map():
                if term_at is None or killed or not group_alive(pgid):
                    break
            if selector.get_map():
                for key, _ in selector.select(POLL):
                    data = os.read(key.fd, CHUNK)
                    if data:
                        key.data.feed(data)
                    else:
                        selector.unregister(key.fileobj)
                        key.fileobj.close()
            elif reason is None:
                cancel.wait(POLL)  # pipes closed, process still running
            else:
                time.sleep(POLL)
            for stream in streams:
                stream.emit(time.monotonic())
    finally:
        if proc.poll() is None:  # only on an unexpected error above
            _killpg(pgid, signal.SIGKILL)
            proc.wait()
        stop_reading()
        selector.close()
    for stream in streams:
        stream.emit(time.monotonic(), final=True)
    if reason is None and soft_sent:
        return {"state": "timed_out", "error": f"soft time limit ({soft_timeout:g}s) reached",
                "exit_code": proc.returncode, "stdout": streams[0].text(),
                "stderr": streams[1].text(),
                "truncated": streams[0].truncated or streams[1].truncated}
    return _outcome(proc.returncode, reason, timeout) | {
        "exit_code": proc.returncode,
        "stdout": streams[0].text(), "stderr": streams[1].text(),
        "truncated": streams[0].truncated or streams[1].truncated}


def _outcome(code: int, reason: str | None, timeout: float | None) -> dict:
    if reason == "timed_out":
        return {"state": "timed_out", "error": f"timed out after {timeout:g}s"}
    if reason == "cancelled":
        return {"state": "cancelled", "error": "cancelled"}
    if code == 0:
        return {"state": "succeeded", "error": None}
    if code < 0:
        try:
            return _failed(f"killed by signal {signal.Signals(-code).name}")
        except ValueError:
            return _failed(f"killed by signal {-code}")
    return _failed(f"exit code {code}")
