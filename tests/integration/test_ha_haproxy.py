"""H3 (TESTING.md): requests through haproxy while the active master fails over.

The haproxy that runs here uses config/haproxy.cfg itself. The test copies the example and
changes only its `bind` line (127.0.0.1 on a free port) and the address of each `server`
line (the test's masters). It also adds a stats listener on loopback, so the test can see
when haproxy marks a master down. Every other line (checks, retries, timeouts) is the
example's own.

Two masters (tests/ha.py) share one PostgreSQL database, with two nodes (agent + worker)
that heartbeat every INTERVAL (0.3 s). A client thread sends GET /api/nodes through
haproxy every ~50 ms. Meanwhile the test kill -9's the active master. Every request is
recorded (sent, received, status, body), and the test asserts:

- failures (an error, or any status but 200) happen only after the kill. Their longest
  window is under MAX_FAILURE_WINDOW: from the sending of the first failed request to the
  receipt of the next good answer. So is the longest time the client goes without a good
  answer, which also counts a request that hangs and then succeeds (haproxy's retries turn
  most failures into slow answers). Requests succeed again after it (the final stretch has
  no failure);
- no answer is wrong: every 200 lists both nodes, and none of them is offline (they never
  stopped heartbeating, and the gap is shorter than the heartbeat timeout);
- no answer is stale beyond one heartbeat interval (+ STALE_TOLERANCE).

What "stale" means here. For an answer received at time R, a node's age is
R - last_seen. Normally a node heartbeats every INTERVAL and the broker records each
heartbeat at once (persisted each loop iteration), so the age stays under about one
interval. During a failover there is a gap from the kill until the new broker is active
(its /healthz `since`), and no broker exists to hear heartbeats in that gap. The freshest
last_seen anyone could report then is the last heartbeat before the kill. An answer that
shows this is honest: the data is as fresh as the cluster has. So the age an answer
cannot help is excused. That is the part of [last_seen, R] inside the deaf window
[kill, since]:

    staleness = (R - last_seen) - overlap([last_seen, R], [t_kill, t_active])

and every 200 answer must have staleness <= INTERVAL + STALE_TOLERANCE. Only the deaf
window is excused. The new active broker must still start from the last heartbeats the old
one persisted, not from older rows: a lag there shows as staleness. The agents must also
move to the new broker promptly: until they do, staleness grows after t_active. So the
bound covers everything that is the product's doing.

STALE_TOLERANCE = 1.0 s. After the takeover an agent that saw the bus go quiet finds the
new broker on its next beat (<= 1 interval), plus a ping timeout (0.15 s) and one GET
/api/bus. It sends its first heartbeat there on the following beat, which is 1 more
interval after "one interval". So ~0.5 s beyond the bound, plus ~0.3 s of scheduling slack
for a test machine that runs other processes and a 50 ms client loop. Before the kill the
same bound holds, with room to spare.

Which request meets the dying master in H3 is chance. So the example's retry rules are also
checked against stand-in masters: a GET answered 503 is retried on the other master and a
POST is not; a connection refused is retried for both.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.ha import Masters
from tests.helpers import free_port_block, wait_for

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "haproxy.cfg"
INTERVAL = 0.3            # heartbeat interval of the masters and nodes (Masters(interval=))
POLL = 0.05               # the client's request period
CLIENT_TIMEOUT = 15.0     # a request that takes longer counts as failed
MAX_FAILURE_WINDOW = 4.0   # seconds; measured ~1 s (haproxy's own retry delay on a refused connect)
STALE_TOLERANCE = 1.0     # see the module docstring
NODES = ("n1", "n2")


def haproxy_binary() -> str:
    """The haproxy binary. Skip without it only when we are not root (scripts/test installs
    Debian's haproxy as root, so as root a missing one is a failure)."""
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)),
        None)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("haproxy is not installed and we are not root: install the Debian package "
                    "haproxy (apt-get install haproxy), or run ./scripts/test as root")
    pytest.fail("haproxy is not installed although we run as root: ./scripts/test installs "
                "it (SYSTEM_TOOLS haproxy:haproxy); or apt-get install haproxy")


# --- the config ---------------------------------------------------------------------------
SERVER_RE = re.compile(r"^(\s*server\s+)(\S+)(\s+)(\S+)(.*)$")
BIND_RE = re.compile(r"^(\s*bind\s+)(\S+)(.*)$")


def config_for_test(example: str, bind: str, servers: dict[str, str], stats: str) -> str:
    """The example with its one `bind` address and its `server` addresses replaced
    (servers: name in the example -> host:port), and a stats listener appended. Fails if
    the example no longer has exactly one bind line and these servers."""
    out, binds, seen = [], 0, []
    for line in example.splitlines():
        if m := BIND_RE.match(line):
            binds += 1
            line = f"{m[1]}{bind}{m[3]}"
        elif m := SERVER_RE.match(line):
            name = m[2]
            assert name in servers, f"the example has a server {name!r}; the test knows " \
                                    f"{sorted(servers)}"
            seen.append(name)
            line = f"{m[1]}{name}{m[3]}{servers[name]}{m[5]}"
        out.append(line)
    assert binds == 1, f"the example should have one bind line, it has {binds}"
    assert sorted(seen) == sorted(servers), f"servers in the example: {seen}"
    out += ["", "# added by the test: haproxy's view of the servers, as CSV",
            "listen stats", f"    bind {stats}", "    http-request set-log-level silent",
            "    stats enable", "    stats uri /stats", ""]
    return "\n".join(out)


def server_states(stats_url: str) -> dict[str, str]:
    """{server name: status} of backend `masters` (UP, DOWN, "UP 1/2", ...)."""
    text = requests.get(stats_url + "/stats;csv", timeout=2).text.lstrip("# ")
    return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == "masters" and row["svname"] not in ("FRONTEND", "BACKEND")}


class Haproxy:
    """A real `haproxy -f CFG -db` on the example config: bind 127.0.0.1:PORT, the servers
    moved to `servers` (name in the example -> host:port), stats on PORT + 1."""

    def __init__(self, tmp: Path, servers: dict[str, str]):
        self.binary = haproxy_binary()
        port = free_port_block(2)
        self.url, self.stats_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        self.cfg, self.log_path = tmp / "haproxy.cfg", tmp / "haproxy.log"
        self.cfg.write_text(config_for_test(EXAMPLE.read_text(), f"127.0.0.1:{port}", servers,
                                            f"127.0.0.1:{port + 1}"))
        self.proc = None

    def start(self) -> "Haproxy":
        check = subprocess.run([self.binary, "-c", "-f", str(self.cfg)], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-f", str(self.cfg), "-db"], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def states(self) -> dict[str, str]:
        assert self.proc.poll() is None, f"haproxy exited:\n{self.log()}"
        return server_states(self.stats_url)

    def wait_up(self, count: int, timeout: float = 20.0) -> None:
        wait_for(lambda: len(st := self.states()) == count and all(
            v == "UP" for v in st.values()), timeout, what=f"haproxy to see {count} servers UP")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


class StubMaster:
    """A stand-in master on loopback for the retry test: GET /healthz answers 200, every
    other request answers `status` (and is counted by method). stop() closes the listening
    socket: connections are then refused, as with a killed master."""

    def __init__(self, status: int):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        stub = self
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                code = 200 if self.path == "/healthz" else status
                if self.path != "/healthz":
                    with stub.lock:
                        stub.hits[self.command] = stub.hits.get(self.command, 0) + 1
                body = b'{"status": "ok"}' if code == 200 else b'{"error": {}}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_POST = answer

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass   # a health check that hangs up early: nothing to report

        self.server = Server(("127.0.0.1", 0), Handler)
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(5)


# --- the client -----------------------------------------------------------------------------
@dataclass
class Answer:
    sent: float
    received: float
    status: int | None
    body: object
    error: str = ""
    source: str = ""     # X-Architect-Source: "database" when no broker could be asked

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def poll(url: str, answers: list, stop: threading.Event) -> None:
    session = requests.Session()
    while not stop.is_set():
        sent = time.time()
        try:
            r = session.get(url + "/api/nodes", timeout=CLIENT_TIMEOUT)
            received = time.time()
            try:
                body = r.json()
            except ValueError:
                body = r.text[:300]
            answers.append(Answer(sent, received, r.status_code, body,
                                  source=r.headers.get("X-Architect-Source", "")))
        except requests.RequestException as exc:
            answers.append(Answer(sent, time.time(), None, None, repr(exc)[:300]))
            session.close()
            session = requests.Session()
        stop.wait(max(0.0, POLL - (time.time() - sent)))
    session.close()


def wrong(answer: Answer) -> str | None:
    """Why a 200 answer is wrong, or None."""
    body = answer.body
    if not isinstance(body, dict) or not isinstance(body.get("nodes"), list):
        return f"not a node list: {body!r:.200}"
    nodes = {n.get("name"): n for n in body["nodes"]}
    missing = [n for n in NODES if n not in nodes]
    if missing:
        return f"nodes {missing} missing: {sorted(nodes)}"
    offline = [n for n in NODES if nodes[n].get("status") == "offline"]
    if offline:
        return f"nodes {offline} offline: {[nodes[n].get('reasons') for n in offline]}"
    if any(not isinstance(nodes[n].get("last_seen"), (int, float)) for n in NODES):
        return f"no last_seen: {[nodes[n].get('last_seen') for n in NODES]}"
    return None


def staleness(answer: Answer, deaf: tuple[float, float]) -> dict[str, tuple[float, float]]:
    """{node: (age, staleness)}: see the module docstring."""
    out = {}
    for node in answer.body["nodes"]:
        if node["name"] not in NODES:
            continue
        seen = node["last_seen"]
        age = answer.received - seen
        excused = max(0.0, min(answer.received, deaf[1]) - max(seen, deaf[0]))
        out[node["name"]] = (age, age - excused)
    return out


def failure_windows(answers: list[Answer]) -> list[tuple[float, float, int]]:
    """(start, end, failed requests) of each run of failures, in the order requests were
    sent; end is when the next good answer arrived (inf if none did)."""
    runs, start, count = [], None, 0
    for a in sorted(answers, key=lambda a: a.sent):
        if not a.ok:
            if start is None:
                start, count = a.sent, 0
            count += 1
        elif start is not None:
            runs.append((start, a.received, count))
            start = None
    if start is not None:
        runs.append((start, float("inf"), count))
    return runs


def longest_without_answer(answers: list[Answer]) -> tuple[float, float]:
    """(start, end) of the longest stretch in which the client got no good answer: between
    two good answers in a row, as received. It counts failures and slow requests alike."""
    times = sorted(a.received for a in answers if a.ok)
    return max(zip(times, times[1:]), key=lambda p: p[1] - p[0], default=(0.0, 0.0))


def haproxy_log_summary(log: str) -> str:
    """Requests per server, and how many haproxy retried or redispatched (httplog format:
    backend/server Tq/Tw/Tc/Tr/Ta status ... actconn/feconn/beconn/srv_conn/retries)."""
    per_server: dict[str, int] = {}
    retried = 0
    for m in re.finditer(r" masters/(\S+) \S+ (\d{3}) .*? \d+/\d+/\d+/\d+/(\+?)(\d+) ", log):
        per_server[m[1]] = per_server.get(m[1], 0) + 1
        retried += bool(m[3] or int(m[4]))
    return f"requests per server {per_server}, retried or redispatched {retried}"


# --- the tests ----------------------------------------------------------------------------
def test_example_config_is_valid():
    """config/haproxy.cfg passes `haproxy -c` as it is, without warnings, and has what H3
    relies on."""
    binary = haproxy_binary()
    result = subprocess.run([binary, "-c", "-f", str(EXAMPLE)], capture_output=True,
                            text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output and "ALERT" not in output, output
    text = EXAMPLE.read_text()
    for needed in ("option httpchk", "/healthz", "http-check expect status 200",
                   "option redispatch", "retry-on", "retries", "server master1",
                   "server master2"):
        assert needed in text, f"config/haproxy.cfg lacks {needed!r}"


def test_example_retries_idempotent_requests_on_the_other_master(tmp_path):
    """The example's retry rules, with stand-in masters (deterministic, unlike which request
    happens to meet the kill in H3): a GET answered 503 by one master is retried on the
    other, a POST is not (it could have been applied); a GET or POST to a master that
    has just died (connection refused, before the checks noticed) is retried on the other
    one."""
    good, failing = StubMaster(200), StubMaster(503)
    proxy = Haproxy(tmp_path, {"master1": good.address, "master2": failing.address})
    try:
        proxy.start().wait_up(2)
        gets = [requests.get(proxy.url + "/api/nodes", timeout=10).status_code
                for _ in range(10)]
        assert gets == [200] * 10, gets
        assert failing.hits.get("GET", 0) >= 3, f"no GET met the failing master: {failing.hits}"
        posts = [requests.post(proxy.url + "/api/tasks", json={}, timeout=10).status_code
                 for _ in range(10)]
        assert posts.count(503) == failing.hits.get("POST", 0) >= 3, (posts, failing.hits)
        assert good.hits.get("POST", 0) + failing.hits.get("POST", 0) == 10, \
            f"a POST was sent twice: {good.hits} {failing.hits}"
        assert proxy.states() == {"master1": "UP", "master2": "UP"}

        failing.stop()   # now it refuses connections, before any check has seen it
        t_stop = time.time()
        after, slowest = [], 0.0
        for method in ("GET", "POST") * 5:
            sent = time.time()
            after.append(requests.request(method, proxy.url + "/api/nodes",
                                          timeout=10).status_code)
            slowest = max(slowest, time.time() - sent)
        took = time.time() - t_stop
        assert after == [200] * 10, after
        print(f"\nretries: 10 GETs on 503 all retried, {posts.count(503)}/10 POSTs got the 503 "
              f"(not retried); after the stop 10 requests all 200 in {took:.3f}s (slowest "
              f"{slowest:.3f}s); haproxy: "
              f"{haproxy_log_summary(proxy.log())}; master2 {proxy.states()['master2']}")
    finally:
        proxy.stop()
        good.stop()
        failing.stop()


def test_requests_through_haproxy_during_failover(tmp_path, pg_server):
    haproxy_binary()   # skip (or fail) before starting anything
    ha = Masters(tmp_path, pg_server.create_database(), count=2, interval=INTERVAL)
    proxy = None
    answers: list[Answer] = []
    stop = threading.Event()
    client = None
    try:
        first = ha.start()
        for name in NODES:
            ha.start_node(name)

        proxy = Haproxy(tmp_path, {f"master{i + 1}": f"127.0.0.1:{p}"
                                   for i, p in enumerate(ha.ports)}).start()
        url = proxy.url
        proxy.wait_up(2)

        def fresh_through_haproxy():
            r = requests.get(url + "/api/nodes", timeout=5)
            a = Answer(0, time.time(), r.status_code, r.json())
            return a.ok and wrong(a) is None and all(
                age <= INTERVAL + 0.5 for age, _ in staleness(a, (0, 0)).values())
        wait_for(fresh_through_haproxy, 30, what="both nodes heartbeating, through haproxy")

        client = threading.Thread(target=poll, args=(url, answers, stop), daemon=True)
        client.start()
        stop.wait(2.0)   # steady state first

        active = ha.active()
        assert active == first, f"the active master moved before the kill: {ha.roles()}"
        t_kill = time.time()
        ha.kill(active)
        t_killed = time.time()
        new = ha.wait_active(timeout=15, other_than=active)
        health = ha.health(new)
        t_active = health["since"]

        down = {}

        def killed_marked_down():
            state = proxy.states().get(f"master{active + 1}", "")
            if state.startswith("DOWN") and "at" not in down:
                down["at"] = time.time()
            return "at" in down
        wait_for(killed_marked_down, 15, interval=0.02, what="haproxy to mark the dead master DOWN")

        def heartbeats_resumed():
            return any(a.ok and wrong(a) is None and a.sent > t_active and
                       all(n["last_seen"] > t_active for n in a.body["nodes"]
                           if n["name"] in NODES) for a in list(answers))
        wait_for(heartbeats_resumed, 15, what="both nodes heartbeating to the new broker")
        stop.wait(3.0)   # a stretch of normal service after the failover
        stop.set()
        client.join(CLIENT_TIMEOUT + 5)
        assert not client.is_alive()

        # --- report ---------------------------------------------------------------------
        deaf = (t_kill, t_active)
        failed = [a for a in answers if not a.ok]
        oks = [a for a in answers if a.ok]
        bad = [(a, why) for a in oks if (why := wrong(a))]
        runs = failure_windows(answers)
        gap = longest_without_answer(answers)
        longest = max(runs, key=lambda r: r[1] - r[0]) if runs else None
        stale = [(a, staleness(a, deaf)) for a in oks if not wrong(a)]
        worst = max(((s, age, a, name) for a, per in stale for name, (age, s) in per.items()),
                    key=lambda x: x[0], default=None)
        worst_age = max((age for _, per in stale for age, _ in per.values()), default=None)
        pre = [s for a, per in stale if a.received < t_kill for _, s in per.values()]
        post = [s for a, per in stale if a.received >= t_kill for _, s in per.values()]
        statuses: dict = {}
        for a in failed:
            key = a.status if a.status is not None else a.error.split("(")[0]
            statuses[key] = statuses.get(key, 0) + 1
        first_ok_after = min((a.received for a in oks if a.sent > t_killed), default=None)
        print(f"\nH3: {len(answers)} requests through haproxy, {len(failed)} failed "
              f"({statuses}); killed master{active + 1} (took {t_killed - t_kill:.3f}s), "
              f"master{new + 1} active after {t_active - t_kill:.3f}s (its `since`), first "
              f"good answer after the kill at +{(first_ok_after or t_kill) - t_kill:.3f}s; "
              f"haproxy showed master{active + 1} DOWN by +{down['at'] - t_kill:.3f}s")
        for start, end, count in runs:
            print(f"  failure window: {count} requests, +{start - t_kill:.3f}s .. "
                  f"+{end - t_kill:.3f}s = {end - start:.3f}s")
        print(f"  longest failure window: "
              f"{(longest[1] - longest[0]) if longest else 0:.3f}s; longest time without a good "
              f"answer: {gap[1] - gap[0]:.3f}s "
              f"(+{gap[0] - t_kill:.3f}s .. +{gap[1] - t_kill:.3f}s, "
              f"slow requests included); wrong answers: {len(bad)}")
        print(f"  staleness (age minus the deaf window {t_active - t_kill:.3f}s): max before "
              f"the kill {max(pre, default=0):.3f}s, after {max(post, default=0):.3f}s, "
              f"bound {INTERVAL + STALE_TOLERANCE:.2f}s; raw max age {worst_age or 0:.3f}s")
        if worst:
            print(f"  worst: {worst[3]} staleness {worst[0]:.3f}s (age {worst[1]:.3f}s) in the "
                  f"answer received at +{worst[2].received - t_kill:.3f}s")
        print(f"  haproxy: {haproxy_log_summary(proxy.log())}")
        slow = [a for a in answers if a.received - a.sent > 1.0]
        for a in slow:
            print(f"  slow request: sent +{a.sent - t_kill:.3f}s, took {a.received - a.sent:.3f}s, "
                  f"{a.status or a.error}")

        # --- assertions -------------------------------------------------------------------
        assert len([a for a in answers if a.sent < t_kill]) >= 20, "too few requests before"
        early = [a for a in failed if a.sent < t_kill]
        assert not early, f"requests failed before the kill: {early[:3]}"
        assert not bad, f"{len(bad)} wrong answers, e.g. {bad[0][1]} at " \
                        f"+{bad[0][0].received - t_kill:.3f}s"
        if longest:
            window = longest[1] - longest[0]
            assert window < MAX_FAILURE_WINDOW, f"failures for {window:.3f}s: {failed[:3]}"
        assert gap[1] - gap[0] < MAX_FAILURE_WINDOW, \
            f"no good answer for {gap[1] - gap[0]:.3f}s (+{gap[0] - t_kill:.3f}s after the kill)"
        after = [a for a in answers if a.sent > t_active + 1.0]
        assert len(after) >= 20 and all(a.ok for a in after), \
            f"requests still fail after the failover: {[a for a in after if not a.ok][:3]}"
        # before the new master is active, only answers read from the database may be good
        early_ok = [a for a in oks if t_kill < a.sent and a.received < t_active]
        assert t_kill <= t_active and all(a.source == "database" for a in early_ok), \
            f"the new master's since {t_active}, the kill {t_kill}: good answers from a " \
            f"broker in between: {[a for a in early_ok if a.source != 'database'][:3]}"
        print(f"  answered from the database during the failover: "
              f"{sum(1 for a in oks if a.source == 'database')}")
        if worst:
            assert worst[0] <= INTERVAL + STALE_TOLERANCE, \
                f"a stale answer: {worst[3]} staleness {worst[0]:.3f}s (age {worst[1]:.3f}s, " \
                f"deaf window {t_active - t_kill:.3f}s) received " \
                f"+{worst[2].received - t_kill:.3f}s after the kill"
    finally:
        stop.set()
        if client is not None:
            client.join(CLIENT_TIMEOUT + 5)
        if proxy is not None:
            proxy.stop()
        ha.stop_all()
