"""Tier 1: log lines (logsetup.py) and `architect logs` reading and following files.

JSON lines parse and carry node, task_id and request_id where known; a detached daemon's
file rotates by size with the process's stderr following it; follow() reads across a
rotation.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time

from architect import logsetup
from architect.cli.logs import follow, last_lines


def record(msg="hello %s", args=("there",), **extra):
    rec = logging.LogRecord("architect.worker", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_lines_carry_the_context():
    fmt, flt = logsetup.JsonFormatter(), logsetup.ContextFilter("node-7")
    rec = record(task_id=42)
    flt.filter(rec)
    line = json.loads(fmt.format(rec))
    assert line["message"] == "hello there" and line["level"] == "INFO"
    assert line["logger"] == "architect.worker" and line["node"] == "node-7"
    assert line["task_id"] == 42 and "request_id" not in line
    assert line["ts"].endswith("Z") and "T" in line["ts"]
    with logsetup.context(request_id="r-9", task_id=7):
        rec = record()
        flt.filter(rec)
    line = json.loads(fmt.format(rec))
    assert line["request_id"] == "r-9" and line["task_id"] == 7
    rec = record()
    flt.filter(rec)
    assert "task_id" not in json.loads(fmt.format(rec))   # the context ended


def test_json_keeps_exceptions_on_one_line():
    fmt = logsetup.JsonFormatter()
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = fmt.format(rec)
    assert "\n" not in text and "ValueError" in json.loads(text)["exc"]


def test_text_lines_name_the_task():
    rec = record(task_id=5, request_id=None)
    assert logsetup.TextFormatter().format(rec).endswith("hello there [task 5]")


def test_a_detached_daemon_rotates_and_its_stderr_follows(tmp_path):
    """In a child process: daemon state as daemonize() leaves it (fd 2 on the log file), then
    setup(); enough lines to rotate twice; a raw write to fd 2 lands in the current file."""
    log = tmp_path / "worker.log"
    script = textwrap.dedent(f"""
        import logging, os, sys
        from types import SimpleNamespace
        from architect import daemon, logsetup
        fd = os.open({str(log)!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        daemon._DAEMON = ("worker", __import__("pathlib").Path({str(log)!r}))
        cfg = SimpleNamespace(log_level="INFO", log_format="json", log_max_bytes=4096,
                              log_backups=2, node_name="n1")
        logsetup.setup(cfg)
        for i in range(100):
            logging.getLogger("architect.worker").info("line %d", i, extra={{"task_id": i}})
        print("printed by click or print()", file=sys.stderr)
        os.write(2, b"raw fd 2\\n")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    files = logsetup.log_files(tmp_path, "worker")
    assert [f.name for f in files] == ["worker.log.2", "worker.log.1", "worker.log"]
    assert all(f.stat().st_size <= 4096 + 512 for f in files)
    current = log.read_text().splitlines()
    assert current[-1] == "raw fd 2"                     # fd 2 follows the current file
    printed = json.loads(current[-2])
    assert printed["message"] == "printed by click or print()" and printed["level"] == "INFO"
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()
             if line.startswith("{")]
    tasks = [x["task_id"] for x in lines if "task_id" in x]
    assert tasks == list(range(tasks[0], 100)) and all(x["node"] == "n1" for x in lines)


def test_last_lines_span_rotated_files(tmp_path):
    (tmp_path / "web.log.1").write_text("a\nb\n")
    (tmp_path / "web.log").write_text("c\n")
    files = logsetup.log_files(tmp_path, "web")
    assert last_lines(files, 2) == ["b\n", "c\n"] and last_lines(files, 0) == []


def test_follow_reads_across_a_rotation(tmp_path):
    path = tmp_path / "agent.log"
    path.write_text("old line\n")
    got, stop = [], threading.Event()

    def reader():
        for line in follow(path, stop=stop.is_set, poll=0.02):
            got.append(line)
    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.1)
        with open(path, "a") as f:
            f.write("one\n")
        deadline = time.monotonic() + 5
        while "one\n" not in got and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(path, "a") as f:
            f.write("two\n")
        path.rename(tmp_path / "agent.log.1")
        path.write_text("three\n")
        while "three\n" not in got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(5)
    assert got == ["one\n", "two\n", "three\n"]          # not the line from before
