"""The embedded loopback bus: four Unix sockets in a 0700 folder (transport.local_bus_dir),
so that only the data dir's owner (and root) can reach the broker on the master.

Broker side: `prepare()` makes the folder (0700, ours, not a symlink), takes a lock that
says "a broker uses this folder" for the life of the process, and removes socket files a
killed broker left behind; `release()` removes them again on a clean stop.
Client side: `why_unreachable()` says, in words, why a process cannot use the endpoints it
was given (another user's bus, another machine's, no broker yet), or None.

Checked with libzmq 4.3.4/4.3.5: bind() on an ipc path unlinks whatever file is there,
a stale socket and a live broker's alike (so without the lock a second broker would
silently take the bus from the first), and close() leaves the file behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import socket
import stat
from pathlib import Path

from architect.bus.transport import SOCKET_NAMES, ipc_path

LOCK_NAME = "broker.lock"


class LocalBusError(RuntimeError):
    """The bus folder cannot be used (another user's, or another broker's)."""


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _own_dir(directory: Path, make: bool) -> bool:
    """Check (and with `make`, create) `directory` as a real folder of this user, mode 0700.
    False if it does not exist and `make` is off."""
    if make:
        directory.parent.mkdir(parents=True, exist_ok=True)
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise LocalBusError(f"{directory} must be a folder (it is a symlink or a file): "
                            "remove it; the broker makes the bus folder itself")
    if st.st_uid != os.geteuid():
        raise LocalBusError(f"{directory} belongs to {_owner(st.st_uid)}, not to the user "
                            f"running the broker ({_owner(os.geteuid())}): the bus sockets go "
                            "only in a folder of ours; run the broker as its owner, or remove it")
    os.chmod(directory, 0o700)  # also when it existed: whatever its mode was
    return True


def _lock(directory: Path, blocking_error: bool):
    """The broker's lock in `directory` (an open file), or None if another broker holds it
    and not `blocking_error`."""
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    lock = os.fdopen(fd, "r+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock.read().strip() or "?"
        lock.close()
        if not blocking_error:
            return None
        raise LocalBusError(f"another broker (pid {holder}) is using the bus in {directory}: "
                            "stop it first (./deploy.sh stop, architect broker --stop)") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _remove_sockets(directory: Path) -> None:
    for name in SOCKET_NAMES:
        path = directory / name
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                path.unlink()
        except FileNotFoundError:
            pass


def prepare(directory: str | os.PathLike):
    """Before the broker binds ipc sockets in `directory`: make it 0700 and ours, lock it
    (LocalBusError if another broker holds it) and remove stale socket files. Keep the
    returned object for as long as the sockets are bound; pass it to release()."""
    directory = Path(directory)
    _own_dir(directory, make=True)
    lock = _lock(directory, blocking_error=True)
    _remove_sockets(directory)  # a killed broker's: nobody else holds the lock
    return lock


def clear_stale(directory: str | os.PathLike) -> None:
    """For a broker that binds tcp: remove socket files an ipc broker of this data dir left
    behind (killed), so that clients do not pick them; leave a running one's alone."""
    directory = Path(directory)
    try:
        if not _own_dir(directory, make=False):
            return
    except LocalBusError:
        return
    lock = _lock(directory, blocking_error=False)
    if lock is not None:
        _remove_sockets(directory)
        release(directory, lock, remove=False)


def in_use(directory: str | os.PathLike) -> bool:
    """Whether a running broker holds the bus folder's lock (False if there is none)."""
    directory = Path(directory)
    if not (directory / LOCK_NAME).exists():
        return False
    try:
        lock = _lock(directory, blocking_error=False)
    except OSError:
        return False
    if lock is None:
        return True
    lock.close()
    return False


def release(directory: str | os.PathLike, lock, remove: bool = True) -> None:
    """After the broker closed its sockets: remove them (clients then know it is gone)
    and drop the lock."""
    if lock is None:
        return
    if remove:
        _remove_sockets(Path(directory))
    lock.close()


DENIED = ("the embedded bus admits only the owner of the master's data dir, and root: "
          "run this as {owner}, or run the master with the bus beyond loopback "
          "(--bus-host / ARCHITECT_BUS_HOST, which turns on CURVE) and join it")


def _probe_unix(path: str) -> int:
    """0 if something listens on the Unix socket `path`, else the errno."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect(path)
        except OSError as exc:
            return exc.errno or errno.EIO
    return 0


def _probe_tcp(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def _dir_owner(path: str) -> str:
    try:
        return _owner(os.stat(os.path.dirname(path)).st_uid)
    except OSError:
        return "the user who runs the master"


def why_unreachable(endpoints: dict, bus_dir: str | os.PathLike | None = None,
                    tcp: tuple[str, int] | None = None) -> tuple[str, str] | None:
    """(kind, message) when this process cannot use `endpoints`, else None. kind:
    "denied" (another user's bus), "absent" (no such socket here: another machine's
    endpoints, or the broker is gone), "waiting" (a local client found no broker yet).
    `bus_dir` and `tcp` (host, control port): the client chose tcp because the ipc
    sockets of bus_dir were not there; say why nothing answers."""
    path = ipc_path(endpoints.get("control", ""))
    if path is not None:
        err = _probe_unix(path)
        if err in (errno.EACCES, errno.EPERM):
            return "denied", (f"cannot use the bus at {endpoints['control']} (permission "
                              "denied): " + DENIED.format(owner=_dir_owner(path)))
        if err == errno.ENOENT:
            return "absent", (f"no bus socket {path} on this machine: the embedded (loopback) "
                              "bus can be reached only on the master itself, as the owner of "
                              "its data dir; for other machines run the master with the bus "
                              "beyond loopback (--bus-host / ARCHITECT_BUS_HOST)")
        return None  # listening, or a stale file (ECONNREFUSED): zmq reconnects by itself
    if bus_dir is None or tcp is None or _probe_tcp(*tcp):
        return None
    control = Path(bus_dir) / "control"
    try:
        os.stat(control)
    except PermissionError:
        return "denied", (f"cannot see {control} (permission denied) and nothing answers on "
                          f"tcp {tcp[0]}:{tcp[1]}: " + DENIED.format(owner=_dir_owner(str(control))))
    except OSError:
        pass
    return "waiting", (f"no broker yet: neither ipc://{control} nor tcp {tcp[0]}:{tcp[1]} "
                       "answers; waiting for it")
