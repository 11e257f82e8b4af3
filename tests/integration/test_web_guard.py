"""S5 (TESTING.md): drive-by requests against a real `architect up` on loopback with no login.

A web page open in the user's browser can send text/plain, form and multipart bodies to any
address, with its own Origin, and — by DNS rebinding — with its own Host. Each such probe
must get a 4xx with its documented code, and afterwards no task exists (in the API and in the
database, read-only) and no node is drained. What the user does on purpose still works: a
JSON curl without Origin submits a task that runs, a bodyless POST to /api/ssh/pool/cleanup
answers 200. A second local user of the machine is refused too (no login: only the server's
own user and root). Every response carries the security headers.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess

import pytest
import requests

from tests.helpers import Cluster, wait_for

pytestmark = pytest.mark.slow

NODE = "s5node"
EVIL = "http://evil.example"
OTHER_USER = "architect_s5"
MARK = "drive-by-s5"          # in every probe's task command: no task may ever hold it
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "same-origin"}
DASH_CALLBACK = {"output": "live.children", "outputs": {"id": "live", "property": "children"},
                 "inputs": [{"id": "tick", "property": "n_intervals", "value": 1}],
                 "changedPropIds": ["tick.n_intervals"]}


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    """`architect up` (broker, web, local agent and worker) on 127.0.0.1, no login."""
    tmp = tmp_path_factory.mktemp("s5")
    cluster = Cluster(tmp, extra_env={"ARCHITECT_NODE_NAME": NODE,
                                      "ARCHITECT_ALLOWED_HOSTS": "dash.example.test,.corp.test"})
    try:
        cluster.url = cluster.start_server(command="up", key="up", timeout=60)
        wait_for(lambda: any(n["name"] == NODE for n in
                             requests.get(cluster.url + "/api/nodes", timeout=5).json()["nodes"]),
                 30, what="the local node listed")
        cluster.db = tmp / "data" / "architect.db"
        yield cluster
    finally:
        cluster.stop_all()


def task_body(tag: str) -> str:
    return json.dumps({"task_type": "shell", "payload": {"command": f"echo {MARK}-{tag}"}})


def db_tasks(up) -> list[tuple[int, str]]:
    """(id, payload) of every task, read straight from the database, read-only."""
    conn = sqlite3.connect(f"file:{up.db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT id, payload FROM tasks ORDER BY id").fetchall()
    finally:
        conn.close()


def node(up) -> dict:
    nodes = requests.get(up.url + "/api/nodes", timeout=10).json()["nodes"]
    return next(n for n in nodes if n["name"] == NODE)


def assert_refused(response, status: int, code: str) -> None:
    where = f"{response.request.method} {response.request.url} {dict(response.request.headers)}"
    assert response.status_code == status, (where, response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, (where, body)
    assert body["error"]["message"], body
    assert_security_headers(response)


def assert_security_headers(response) -> None:
    for key, value in SECURITY_HEADERS.items():
        assert response.headers.get(key) == value, (response.request.url, key, response.headers)
    csp = response.headers.get("Content-Security-Policy", "")
    directives = {d.split(" ", 1)[0]: d for d in csp.split("; ")}
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert directives.get("default-src") == "default-src 'self'", csp
    assert directives.get("object-src") == "object-src 'none'", csp
    assert directives.get("script-src", "").startswith("script-src 'self'"), csp
    assert "'unsafe-inline'" not in directives.get("script-src", ""), csp


def test_drive_by_probes_change_nothing(up):
    url = up.url
    host = url.split("://", 1)[1]
    tasks_before, drained_before = db_tasks(up), node(up)["drained"]
    assert drained_before is False
    post = lambda path, **kw: requests.post(url + path, timeout=10, **kw)  # noqa: E731

    # a page's "simple" requests, which browsers send cross-origin without asking first
    assert_refused(post("/api/tasks", data=task_body("text"),
                        headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    assert_refused(post("/api/tasks", data={"task_type": "shell",
                                            "payload": f"echo {MARK}-form"}),
                   415, "unsupported_media_type")
    assert_refused(post("/api/tasks", files={"task_type": (None, "shell"),
                                             "payload": (None, f"echo {MARK}-multipart")}),
                   415, "unsupported_media_type")
    assert_refused(post("/api/tasks", data=task_body("untyped")), 415, "unsupported_media_type")
    assert_refused(post(f"/api/nodes/{NODE}/drain", data="x",
                        headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    assert_refused(post(f"/api/nodes/{NODE}/drain", data="",
                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
                   415, "unsupported_media_type")

    # DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its own Host
    for method, path, kw in [
            ("GET", "/api/nodes", {}), ("GET", "/api/tasks", {}), ("GET", "/", {}),
            ("GET", "/healthz", {}), ("GET", "/metrics", {}),
            ("POST", "/api/tasks", {"data": task_body("rebind"),
                                    "headers": {"Content-Type": "application/json"}}),
            ("POST", f"/api/nodes/{NODE}/drain", {}),
            ("POST", "/_dash-update-component", {"json": DASH_CALLBACK})]:
        for bad_host in ("evil.example", "evil.example:" + host.rsplit(":", 1)[1],
                         "localhost.evil.example", ""):
            headers = {**kw.get("headers", {}), "Host": bad_host}
            response = requests.request(method, url + path, timeout=10,
                                        **{**kw, "headers": headers})
            assert_refused(response, 400, "bad_host")

    # a foreign Origin with a proper JSON body, Origin: null (sandboxed frames, file://),
    # a cross-site fetch that left Origin out, and the same on the Dash callback route
    json_headers = {"Content-Type": "application/json"}
    for extra in ({"Origin": EVIL}, {"Origin": "null"}, {"Origin": "http://localhost:1"},
                  {"Origin": url.replace("http://", "https://")},
                  {"Sec-Fetch-Site": "cross-site"},
                  {"Origin": EVIL, "Sec-Fetch-Site": "same-site"}):
        headers = {**json_headers, **extra}
        assert_refused(post("/api/tasks", data=task_body("origin"), headers=headers),
                       403, "cross_origin")
        assert_refused(post("/api/tasks/assign-optimal", headers=headers,
                            data=json.dumps({"task_type": "shell", "requirements": [],
                                             "payload": {"command": f"echo {MARK}-assign"}})),
                       403, "cross_origin")
        assert_refused(post(f"/api/nodes/{NODE}/drain", headers=extra), 403, "cross_origin")
        assert_refused(post("/_dash-update-component", json=DASH_CALLBACK, headers=extra),
                       403, "cross_origin")
    assert_refused(requests.delete(f"{url}/api/nodes/{NODE}", headers={"Origin": EVIL},
                                   timeout=10), 403, "cross_origin")
    assert_refused(requests.delete(f"{url}/api/nodes/{NODE}", data="x",
                                   headers={"Content-Type": "text/plain"}, timeout=10),
                   415, "unsupported_media_type")

    # nothing was created, nothing drained, the node is still there
    listed = requests.get(url + "/api/tasks", timeout=10).json()
    assert not any(MARK in json.dumps(t) for t in listed["tasks"]), listed
    assert db_tasks(up) == tasks_before
    assert not any(MARK in (payload or "") for _, payload in db_tasks(up))
    assert node(up)["drained"] is False


def test_what_the_user_does_on_purpose_still_works(up):
    url = up.url
    # the seed guide's curl: JSON, no Origin
    created = requests.post(url + "/api/tasks", timeout=10,
                            headers={"Content-Type": "application/json; charset=utf-8"},
                            data=json.dumps({"task_type": "shell",
                                             "payload": {"command": "echo on-purpose"}}))
    assert created.status_code == 201, created.text
    assert_security_headers(created)
    task_id = created.json()["id"]
    done = wait_for(lambda: (t := requests.get(f"{url}/api/tasks/{task_id}", timeout=10).json())
                    and t["final"] and t, 30, what="the task to finish")
    assert done["status"] == "succeeded" and done["result"]["stdout"] == "on-purpose\n", done
    # a bodyless POST, as in the guide
    cleanup = requests.post(url + "/api/ssh/pool/cleanup", timeout=10)
    assert cleanup.status_code == 200 and "closed" in cleanup.json(), cleanup.text
    assert_security_headers(cleanup)
    # the dashboard's own callback: same origin
    callback = requests.post(url + "/_dash-update-component", json=DASH_CALLBACK, timeout=10,
                             headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
    assert callback.status_code == 200 and "live" in callback.text, callback.text[:300]
    # names this server answers to, besides IP literals
    for name in ("localhost", "LocalHost", "ui.localhost", "[::1]", "dash.example.test",
                 "corp.test", "a.b.corp.test"):  # the last three: ARCHITECT_ALLOWED_HOSTS
        port = url.rsplit(":", 1)[1]
        assert requests.get(url + "/api/nodes", headers={"Host": f"{name}:{port}"},
                            timeout=10).status_code == 200, name
    for name in ("x.dash.example.test", "evilcorp.test"):
        assert requests.get(url + "/api/nodes", headers={"Host": name}, timeout=10
                            ).status_code == 400, name
    # drain and undrain with a JSON-less POST: allowed (and put back)
    assert requests.post(f"{url}/api/nodes/{NODE}/drain", timeout=10).status_code == 200
    assert requests.post(f"{url}/api/nodes/{NODE}/undrain", timeout=10).status_code == 200


def test_security_headers_on_every_kind_of_response(up):
    url = up.url
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    srcs = re.findall(r'<script src="([^"]+)"', page.text)
    assert srcs, page.text[:500]
    responses = [page, requests.get(url + "/api/nodes", timeout=10),
                 requests.get(url + "/healthz", timeout=10),
                 requests.get(url + "/api/no-such-route", timeout=10),
                 requests.get(url + "/no-such-page", timeout=10),
                 requests.get(url + "/assets/style.css", timeout=10),
                 requests.get(url + srcs[0], timeout=10),
                 requests.get(url + "/metrics", timeout=10)]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 200, 200, 200], \
        [(r.url, r.status_code) for r in responses]
    for response in responses:
        assert_security_headers(response)
    # the inline script Dash needs is allowed by its hash, nothing else inline
    csp = page.headers["Content-Security-Policy"]
    assert re.search(r"script-src 'self'( 'sha256-[A-Za-z0-9+/=]+')+;", csp), csp
    assert "style-src 'self' 'unsafe-inline'" in csp and "img-src 'self' data:" in csp
    assert "connect-src 'self'" in csp and "base-uri 'self'" in csp
    assert "form-action 'self'" in csp


def _other_user() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root: it creates a second local user (useradd) and runs curl as "
                    f"that user (runuser -u {OTHER_USER})")
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", OTHER_USER], check=True,
                       capture_output=True, timeout=60)
    return OTHER_USER


def _post_as(user: str | None, url: str, body: str) -> str:
    """POST a JSON body as `user` (None: as this process), like a user's curl; the status."""
    if shutil.which("curl"):
        cmd = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
               "-H", "Content-Type: application/json", "-d", body, url]
    else:
        cmd = ["/usr/bin/python3", "-c",
               "import sys, urllib.request, urllib.error\n"
               "req = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(),"
               " headers={'Content-Type': 'application/json'})\n"
               "try:\n    print(urllib.request.urlopen(req, timeout=20).status, end='')\n"
               "except urllib.error.HTTPError as e:\n    print(e.code, end='')\n", url, body]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, (cmd, out.stdout, out.stderr)
    return out.stdout.strip()


def test_another_local_user_gets_nothing(up):
    user = _other_user()
    url = up.url + "/api/tasks"
    before = db_tasks(up)
    assert _post_as(user, url, task_body("other-user")) == "403"
    assert _post_as(user, up.url + "/api/nodes", "{}") == "403"
    assert db_tasks(up) == before
    assert not any(MARK in (payload or "") for _, payload in db_tasks(up))
    # its GETs too (there is no login to tell it apart); /healthz stays open
    get = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20"]
    if shutil.which("curl"):
        for path, want in (("/api/nodes", "403"), ("/", "403"), ("/healthz", "200")):
            out = subprocess.run(["runuser", "-u", user, "--", *get, up.url + path],
                                 capture_output=True, text=True, timeout=60)
            assert out.stdout.strip() == want, (path, out.stdout, out.stderr)
        body = subprocess.run(["runuser", "-u", user, "--", "curl", "-s", "--max-time", "20",
                               up.url + "/api/nodes"], capture_output=True, text=True,
                              timeout=60).stdout
        error = json.loads(body)["error"]
        assert error["code"] == "forbidden_user" and "log in" in error["message"], error
    # the same request as the server's own user (root here) goes through
    assert _post_as(None, url, json.dumps({"task_type": "shell",
                                           "payload": {"command": "echo as-owner"}})) == "201"
    assert len(db_tasks(up)) == len(before) + 1
