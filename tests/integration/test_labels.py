"""Tier 3: labels and search (issue 13): tasks submitted with labels are filtered by a
label and found by a search over the command or function, node, labels and error, from
REST and the CLI; a search with SQL wildcards matches them literally; bad input is named."""

from __future__ import annotations

import requests


def test_labels_and_search(cluster):
    base = cluster.start_server()
    cluster.start_worker("w1", "-c", "4")
    cluster.wait_workers(1)

    def post(command, labels=None):
        body = {"task_type": "shell", "payload": {"command": command}}
        if labels:
            body["labels"] = labels
        answer = requests.post(base + "/api/tasks", json=body, timeout=10)
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]
    web = post("echo deploy-web", {"team": "web", "env": "prod"})
    db = post("echo backup-db", {"team": "db"})
    pct = post("echo 100%_done", {"team": "web"})
    boom = post("exit 7")
    for t in (web, db, pct, boom):
        cluster.wait_task(t)

    def ids(**query):
        answer = requests.get(base + "/api/tasks", params=query, timeout=10)
        assert answer.status_code == 200, answer.text
        return sorted(t["id"] for t in answer.json()["tasks"])
    assert ids(label="team=web") == sorted([web, pct])
    assert ids(label="env=prod") == [web]
    assert ids(label="team=nobody") == []
    assert ids(q="backup") == [db]
    assert ids(q="100%_") == [pct]                 # % and _ are not wildcards
    assert ids(q="exit code 7") == [boom]           # the error
    assert ids(q="w1") == sorted([web, db, pct, boom])   # the node
    assert ids(q="deploy", label="team=web") == [web]
    task = requests.get(f"{base}/api/tasks/{web}", timeout=10).json()
    assert task["labels"] == {"team": "web", "env": "prod"}
    listed = cluster.cli_json("tasks", "list", "--label", "team=db")
    assert [t["id"] for t in listed] == [db]
    assert [t["id"] for t in cluster.cli_json("tasks", "list", "--search", "deploy")] == [web]
    out = cluster.cli_json("tasks", "submit", "--command", "true", "--label", "team=ops")
    assert requests.get(f"{base}/api/tasks/{out['id']}", timeout=10).json()["labels"] == \
        {"team": "ops"}
    for body, words in (({"labels": {"bad key!": "x"}}, "labels"),
                        ({"labels": {"k": 5}}, "labels"),
                        ({"labels": ["team=web"]}, "labels")):
        answer = requests.post(base + "/api/tasks", json={
            "task_type": "shell", "payload": {"command": "true"}, **body}, timeout=10)
        assert answer.status_code == 400 and words in answer.json()["error"]["message"], body
    assert requests.get(base + "/api/tasks", params={"label": "novalue"},
                        timeout=10).status_code == 400
    bad = cluster.cli("tasks", "submit", "--command", "true", "--label", "nokey", check=False)
    assert bad.returncode == 2 and "--label" in bad.stderr
