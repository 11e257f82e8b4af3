"""Tier 3: unique tasks (issue 13): a second submit with the same unique_key within its
unique_for window gets the first task back, even across a broker kill -9; after the window
a new task is made; unlike an idempotency key, which is forever."""

from __future__ import annotations

import time

import requests


def test_unique_within_the_window_across_a_restart_then_new(cluster):
    base = cluster.start_server(key="server")
    spec = {"task_type": "shell", "payload": {"command": "true"}, "requirements": ["nobody"],
            "unique_key": "report:42", "unique_for": 3}
    first = requests.post(base + "/api/tasks", json=spec, timeout=10)
    assert first.status_code == 201 and first.json()["created"] is True
    again = requests.post(base + "/api/tasks", json=spec, timeout=10)
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "status": "queued", "created": False,
                            "unique": True}
    other = requests.post(base + "/api/tasks", json={**spec, "unique_key": "report:43"},
                          timeout=10).json()
    assert other["created"] and other["id"] != first.json()["id"]
    cluster.kill("server")
    base = cluster.start_server(key="server2")
    assert requests.post(base + "/api/tasks", json=spec, timeout=10).json()["id"] == \
        first.json()["id"], "the window was forgotten across a restart"
    cli = cluster.cli("tasks", "submit", "--command", "true", "--require", "nobody",
                      "--unique-key", "report:42", "--unique-for", "3s").stdout
    assert f"task {first.json()['id']}" in cli and "unique key" in cli
    time.sleep(3.2)
    later = requests.post(base + "/api/tasks", json=spec, timeout=10).json()
    assert later["created"] is True and later["id"] > other["id"]
    for extra, words in (({"unique_for": None}, "go together"),
                         ({"unique_for": 0}, "unique_for"),
                         ({"unique_for": "soon"}, "unique_for"),
                         ({"unique_key": ""}, "unique_key")):
        answer = requests.post(base + "/api/tasks", json={**spec, **extra}, timeout=10)
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], \
            (extra, answer.text)
