"""Logging for the daemons: where the lines go and what they look like.

    setup(cfg)            once, at a daemon's start (after daemonize(), if it detached)

Foreground: stderr (systemd's journal picks it up). Detached (`--daemon`): the log file
``<log dir>/<name>.log`` (daemon.py), rotated by size (`log_max_bytes`, keeping
`log_backups` old files, name.log.1 the newest of them); Python's stdout and stderr (click
messages, uncaught tracebacks) become records too, and the process's file descriptors 1 and 2
follow the current file across rotations, so nothing written below Python is lost.

`log_format` (ARCHITECT_LOG_FORMAT, --log-format): ``text`` or ``json``, one object per line:

    {"ts": "2026-12-01T15:12:00.123Z", "level": "INFO", "logger": "architect.worker",
     "message": "...", "node": "web-1", "task_id": 42, "request_id": "..."}

`node` is the configured node name; `task_id` and `request_id` appear where the code knows
them: `extra={"task_id": ...}` on the call, or the context variables below (`with
context(task_id=42):`) around work done for one task or request.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import logging.handlers
import os
import sys
import threading
import time

FIELDS = ("task_id", "request_id")
_context: dict[str, contextvars.ContextVar] = {
    name: contextvars.ContextVar(f"architect_{name}", default=None) for name in FIELDS}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "_architect_handler"


@contextlib.contextmanager
def context(**values):
    """Log records made inside carry these fields (task_id, request_id)."""
    tokens = [(_context[k], _context[k].set(v)) for k, v in values.items() if k in _context]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Puts node, task_id and request_id on every record (None where unknown)."""

    def __init__(self, node: str | None):
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "node", None) is None:
            record.node = self.node
        for name, var in _context.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
               + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        for name in ("node", *FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual line, with [task 42] / [request r-1] when known."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"task {record.task_id}" if getattr(record, "task_id", None) is not None else "",
                f"request {record.request_id}" if getattr(record, "request_id", None)
                is not None else ""]
        tags = [t for t in tags if t]
        return f"{line} [{', '.join(tags)}]" if tags else line


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


class RotatingFile(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose file also receives the process's fds 1 and 2 (follow_fds)."""

    def __init__(self, path, max_bytes: int, backups: int, follow_fds: bool):
        self.follow_fds = follow_fds
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._dup()

    def doRollover(self) -> None:
        super().doRollover()
        self._dup()

    def _dup(self) -> None:
        if self.follow_fds and self.stream is not None:
            self.stream.flush()
            for fd in (1, 2):
                os.dup2(self.stream.fileno(), fd)


class _LineWriter:
    """sys.stdout / sys.stderr of a detached daemon: each line becomes a log record."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, logger: logging.Logger, level: int, fd: int):
        self.logger, self.level, self.fd = logger, level, fd
        self.buf = ""
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            self.buf += text
            *lines, self.buf = self.buf.split("\n")
        for line in lines:
            if line.strip():
                self.logger.log(self.level, line.rstrip())
        return len(text)

    def flush(self) -> None:
        with self.lock:
            line, self.buf = self.buf, ""
        if line.strip():
            self.logger.log(self.level, line.rstrip())

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fd

    def writable(self) -> bool:
        return True


def setup(cfg, name: str | None = None) -> logging.Handler:
    """Configure the root logger for a daemon from cfg (log_level, log_format, log_max_bytes,
    log_backups, node_name); replaces whatever basicConfig set. Returns the handler."""
    from architect import daemon
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if getattr(h, _OURS, False):
            h.close()
    detached = daemon.daemonized()
    if detached is not None:
        handler = RotatingFile(detached[1], cfg.log_max_bytes, cfg.log_backups, follow_fds=True)
    else:
        handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    handler.setFormatter(formatter(cfg.log_format))
    handler.addFilter(ContextFilter(getattr(cfg, "node_name", None)))
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(cfg.log_level).upper(), logging.INFO))
    if detached is not None and not isinstance(sys.stderr, _LineWriter):
        console = logging.getLogger("architect.console")
        sys.stdout = _LineWriter(console, logging.INFO, 1)
        sys.stderr = _LineWriter(console, logging.INFO, 2)    # banners; errors log themselves

        def excepthook(kind, value, tb):
            logging.getLogger("architect").critical("uncaught exception",
                                                    exc_info=(kind, value, tb))
        sys.excepthook = excepthook
        threading.excepthook = lambda args: logging.getLogger("architect").critical(
            "uncaught exception in thread %s", args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
    return handler


def log_files(directory, name: str) -> list:
    """name.log and its rotated files, oldest first."""
    from pathlib import Path
    base = Path(directory) / f"{name}.log"
    rotated = sorted((p for p in base.parent.glob(f"{name}.log.*") if p.suffix[1:].isdigit()),
                     key=lambda p: -int(p.suffix[1:]))
    return rotated + ([base] if base.exists() else [])
