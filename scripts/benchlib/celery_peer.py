"""Celery 5 with Redis in the same run as Architect and Huey (scripts/bench.py): a private
redis-server on a free loopback port, a prefork worker of `workers` processes, and the two
calling patterns (`noop.delay().get()` per task; every `delay()`, then each `.get()`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from scripts.benchlib.common import pct, stop

SCRIPTS = Path(__file__).resolve().parents[1]


def available() -> str | None:
    """None when Celery and redis-server are here, else why not."""
    try:
        import celery  # noqa: F401
        import redis  # noqa: F401
    except ImportError as exc:
        return f"not installed ({exc.name}): pip install -e '.[bench]'"
    if shutil.which("redis-server") is None:
        return "redis-server not found (apt-get install redis-server)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_celery(n: int, samples: int, workers: int, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    log = open(tmp / "celery.log", "ab")
    redis_proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    env = dict(os.environ, CELERY_BENCH_REDIS=url, PYTHONPATH=str(SCRIPTS))
    os.environ["CELERY_BENCH_REDIS"] = url
    sys.path.insert(0, str(SCRIPTS))
    procs = [redis_proc]
    try:
        import redis
        r = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                r.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "benchlib.celery_app", "worker",
             "--pool", "prefork", "-c", str(workers), "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, cwd=SCRIPTS, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        from benchlib import celery_app
        celery_app.app.conf.broker_url = celery_app.app.conf.result_backend = url
        celery_app.noop.delay().get(timeout=60)         # the worker is up
        lat = []
        t0 = time.perf_counter()
        for _ in range(samples):
            t = time.perf_counter()
            celery_app.noop.delay().get(timeout=30, interval=0.0005)
            lat.append((time.perf_counter() - t) * 1000)
        single_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        results = [celery_app.noop.delay() for _ in range(n)]
        submit_s = time.perf_counter() - t0
        for res in results:
            res.get(timeout=600, interval=0.001)
        total_s = time.perf_counter() - t0
        del results, res    # an AsyncResult left past redis's stop complains when collected
        import gc
        gc.collect()
    finally:
        stop(procs[::-1])
    return {"tasks": n, "succeeded": n, "submit_seconds": round(submit_s, 3),
            "total_seconds": round(total_s, 3), "tasks_per_second": round(n / total_s),
            "one_at_a_time_per_second": round(samples / single_s),
            "submit_to_start_p50_ms": round(pct(lat, 0.5), 3),
            "submit_to_start_p99_ms": round(pct(lat, 0.99), 3)}
