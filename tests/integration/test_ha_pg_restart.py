"""H4: PostgreSQL restarted under load. The master's broker backs off while the database is
gone (writes are refused with 503, nothing is acknowledged that is not committed), keeps its
process, and resumes by itself; nothing acknowledged is lost (the fault-test checker).

A PostgreSQL server of this test's own (the session's is shared by other tests)."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests import checker
from tests.ha import Masters
from tests.helpers import wait_for
from tests.pg import PgServer

pytestmark = pytest.mark.slow


@pytest.fixture
def own_pg(tmp_path):
    server = PgServer().start()   # its own temp dir: pytest's is not the postgres user's
    yield server
    server.cleanup()


def submitter(urls, runs_log, acked, stop, errors):
    """One task at a time, each with an idempotency key, retried until acknowledged."""
    i = 0
    while not stop.is_set():
        label = f"t{i}"
        body = {"task_type": "shell", "idempotency_key": label,
                "payload": {"command": checker.run_command(runs_log, label, 0.1)}}
        for attempt in range(200):
            url = urls[attempt % len(urls)]
            try:
                r = requests.post(url + "/api/tasks", json=body, timeout=5)
            except requests.RequestException as exc:
                errors.append(type(exc).__name__)
            else:
                if r.status_code in (200, 201):
                    acked[label] = r.json()["id"]
                    break
                errors.append(r.status_code)
            if stop.wait(0.2):
                return
        i += 1
        stop.wait(0.05)


def final_tasks(ha, i: int, ids: list[int], timeout: float = 90.0) -> dict[int, dict]:
    """Every task (with its events) once final, read from master i's REST API."""
    done: dict[int, dict] = {}

    def all_final():
        for task_id in ids:
            if task_id not in done:
                task = ha.api(f"/api/tasks/{task_id}?events=true", i=i).json()
                if not task.get("final"):
                    return False
                done[task_id] = task
        return True
    wait_for(all_final, timeout, interval=0.2, what="every acknowledged task final")
    return done


@pytest.mark.parametrize("masters", [1, 2])
def test_postgres_restart_under_load(own_pg, tmp_path, masters):
    url = own_pg.create_database()
    ha = Masters(tmp_path, url, count=masters)
    runs_log = tmp_path / "runs.log"
    acked, errors, stop = {}, [], threading.Event()
    try:
        ha.start()
        pids = [m.procs["server"].pid for m in ha.masters]
        ha.start_node("n1", slots=2)
        ha.start_node("n2", slots=2)
        ha.wait_workers(2)
        thread = threading.Thread(target=submitter, args=(ha.urls, runs_log, acked, stop,
                                                           errors), daemon=True)
        thread.start()
        wait_for(lambda: len(acked) >= 10, 20, what="tasks acknowledged before the restart")
        before = len(acked)
        own_pg.stop("fast")            # every session ends; nothing answers
        time.sleep(2.0)
        own_pg.start()
        down_at = time.monotonic()
        wait_for(lambda: len(acked) >= before + 20, 60,
                 what="tasks acknowledged again after the restart")
        resumed = time.monotonic() - down_at
        stop.set()
        thread.join(20)
        ids = list(acked.values())
        active = ha.wait_active(20)
        full = final_tasks(ha, active, ids)
        summary = checker.check(runs_log, acked, full)
        checker.integrity(url)
        # the same processes throughout: the brokers backed off and resumed
        assert [m.procs["server"].poll() for m in ha.masters] == [None] * masters
        assert [m.procs["server"].pid for m in ha.masters] == pids
        for i in range(masters):
            assert "Traceback" not in ha.log(i), ha.log(i)[-3000:]
        print(f"\nH4 ({masters} master(s)): {len(acked)} acknowledged ({before} before the "
              f"restart), resumed {resumed:.1f} s after PostgreSQL was back, "
              f"{len(errors)} refused or failed submits on the way, {summary}")
    finally:
        stop.set()
        ha.stop_all()
