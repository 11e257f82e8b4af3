"""Run a command as a daemon: pid file, log file, --status and --stop.

Files are ``<state dir>/<name>.pid`` and ``<log dir>/<name>.log``, the state dir being
Config.state_path (``~/.architect`` unless ``state_dir`` / ``ARCHITECT_STATE_DIR`` says
otherwise) and the log dir Config.log_path (the state dir unless ``log_dir`` says), so that
``--status`` and ``--stop`` find the daemon with no other arguments (as the setup guide runs
them). Daemonize before any ZeroMQ context exists. The log file is rotated by logsetup.py
(size and count in the config); `daemonized()` says under which name this process runs.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from pathlib import Path


def pid_path(name: str, state_dir: Path) -> Path:
    return Path(state_dir) / f"{name}.pid"


_DAEMON: tuple[str, Path] | None = None     # (name, log file) once daemonize() detached


def daemonized() -> tuple[str, Path] | None:
    """(name, log file) when this process detached with daemonize(), else None."""
    return _DAEMON


def log_path(name: str, state_dir: Path, log_dir: Path | None = None) -> Path:
    return Path(log_dir or state_dir) / f"{name}.log"


def read_pid(name: str, state_dir: Path) -> int | None:
    try:
        pid = int(pid_path(name, state_dir).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def status(name: str, state_dir: Path, log_dir: Path | None = None) -> tuple[bool, str]:
    pid = read_pid(name, state_dir)
    if pid is None:
        return False, f"{name}: not running"
    return True, f"{name}: running (pid {pid}, log {log_path(name, state_dir, log_dir)})"


def stop(name: str, state_dir: Path, grace: float = 20.0) -> tuple[bool, str]:
    pid = read_pid(name, state_dir)
    if pid is None:
        return False, f"{name}: not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_path(name, state_dir).unlink(missing_ok=True)
    return True, f"{name}: stopped (pid {pid})"


def daemonize(name: str, state_dir: Path, log_dir: Path | None = None) -> None:
    """Detach (double fork), send output to the log file, write the pid file."""
    global _DAEMON
    running = read_pid(name, state_dir)
    if running is not None:
        raise SystemExit(f"{name}: already running (pid {running}); use --stop first")
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    log_file = log_path(name, state_dir, log_dir)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"{name}: starting in the background; log {log_file}, "
          f"pid file {pid_path(name, state_dir)}")
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.umask(0o022)
    with open(os.devnull) as devnull:
        os.dup2(devnull.fileno(), 0)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    pid_path(name, state_dir).write_text(str(os.getpid()))
    _DAEMON = (name, log_file)
    atexit.register(lambda: _remove_own_pid(pid_path(name, state_dir)))


def _remove_own_pid(path: Path) -> None:
    try:
        if int(path.read_text()) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def handle_signals(stop_callback) -> None:
    """SIGTERM and SIGINT call stop_callback (the main loop then exits cleanly)."""
    def _handler(signum, frame):
        stop_callback()
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
