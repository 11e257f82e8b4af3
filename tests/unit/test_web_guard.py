"""The web guard's pure parts: the Host matcher, Origin comparison, body rules, and the
/proc/net/tcp parser that finds who owns a client socket."""

import ipaddress
import os
import socket

import pytest

from architect.api import guard, peer


# --- Host ---------------------------------------------------------------------------------
@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:8080", "10.1.2.3:1", "0.0.0.0:8080", "[::1]", "[::1]:8080",
    "[2001:db8::5]:443", "[::ffff:127.0.0.1]:8080", "localhost", "LOCALHOST:8080",
    "localhost.", "localhost.:8080", "app.localhost", "a.b.Localhost:9", " localhost:8080 ",
])
def test_always_allowed_hosts(host):
    assert guard.host_allowed(host)


@pytest.mark.parametrize("host", [
    None, "", "   ", "evil.example", "evil.example:8080", "localhost.evil.example",
    "evillocalhost", "127.0.0.1.evil.example", "127.1", "0x7f000001", "::1", "[::1",
    "[::1]:", "[::1]x", "[zz::1]", "localhost:", "localhost:0", "localhost:65536",
    "localhost:80:80", "user@localhost", "localhost/x", "local host",
    ".localhost", "a..localhost", "localhost..", "-", "[::1]:8080:1",
])
def test_refused_hosts(host):
    assert not guard.host_allowed(host)


def test_allowed_hosts_entries():
    allowed = ["cluster.example.com", ".corp.example", "Mixed.Case", "withport.example:8080"]
    ok = ["cluster.example.com", "CLUSTER.example.com:8080", "cluster.example.com.",
          "corp.example", "a.corp.example", "a.b.corp.example:1", "mixed.case",
          "withport.example", "withport.example:9999"]
    bad = ["example.com", "x.cluster.example.com", "evilcorp.example", "corp.example.evil",
           "xcorp.example"]
    for host in ok:
        assert guard.host_allowed(host, allowed), host
    for host in bad:
        assert not guard.host_allowed(host, allowed), host
    assert not guard.host_allowed("example.com", [".", "..", "", "  "])
    assert guard.host_allowed("anything.at.all:1", ["*"])
    assert not guard.host_allowed("bad host", ["*"])  # malformed is malformed
    assert not guard.host_allowed("", ["*"])


def test_local_names():
    assert guard.host_allowed("myhost", (), {"myhost"})
    assert not guard.host_allowed("other", (), {"myhost"})
    called = []

    def names():
        called.append(1)
        return {"myhost"}
    assert guard.host_allowed("localhost", (), names) and not called  # looked up only if needed
    assert guard.host_allowed("MyHost:8080", (), names) and called


def test_local_names_loopback_and_beyond(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "Box")
    monkeypatch.setattr(socket, "getfqdn", lambda: "box.lan.example.")
    assert guard.LocalNames("127.0.0.1")() == {"127.0.0.1"}
    assert guard.LocalNames("localhost")() == {"localhost"}
    assert guard.LocalNames("::1")() == {"::1"}
    assert guard.LocalNames("0.0.0.0")() == {"0.0.0.0", "box", "box.lan.example"}
    assert guard.LocalNames("Dash.Example")() == {"dash.example", "box", "box.lan.example"}


# --- Origin and body ------------------------------------------------------------------------
@pytest.mark.parametrize("origin,scheme,host,same", [
    ("http://127.0.0.1:8080", "http", "127.0.0.1:8080", True),
    ("http://LOCALHOST:8080", "http", "localhost:8080", True),
    ("http://localhost", "http", "localhost:80", True),
    ("https://localhost", "https", "localhost", True),
    ("http://[::1]:8080", "http", "[0:0::1]:8080", True),
    ("http://127.0.0.1:8080/", "http", "127.0.0.1:8080", True),
    ("http://127.0.0.1:8081", "http", "127.0.0.1:8080", False),
    ("https://127.0.0.1:8080", "http", "127.0.0.1:8080", False),
    ("http://localhost:8080", "http", "127.0.0.1:8080", False),
    ("http://evil.example", "http", "127.0.0.1:8080", False),
    ("null", "http", "127.0.0.1:8080", False),
    ("", "http", "127.0.0.1:8080", False),
    ("http://user@127.0.0.1:8080", "http", "127.0.0.1:8080", False),
    ("http://127.0.0.1:8080/path", "http", "127.0.0.1:8080", False),
    ("file://", "http", "127.0.0.1:8080", False),
    ("http://127.0.0.1:99999", "http", "127.0.0.1:8080", False),
])
def test_same_origin(origin, scheme, host, same):
    assert guard.same_origin(origin, scheme, host) is same


def test_body_rules():
    assert not guard.has_body({})
    assert not guard.has_body({"Content-Length": "0"})
    assert not guard.has_body({"Content-Type": ""})
    assert guard.has_body({"Content-Length": "2"})
    assert guard.has_body({"Content-Length": "junk"})
    assert guard.has_body({"Transfer-Encoding": "chunked"})
    assert guard.has_body({"Content-Type": "text/plain", "Content-Length": "0"})
    assert guard.is_json("application/json")
    assert guard.is_json("Application/JSON; charset=utf-8")
    for other in (None, "", "text/plain", "application/x-www-form-urlencoded",
                  "multipart/form-data; boundary=x", "application/jsonx", "text/json",
                  "application/json-patch+json"):
        assert not guard.is_json(other), other


def test_csp_string():
    csp = guard.content_security_policy(["'sha256-abc='"])
    parts = dict(p.split(" ", 1) for p in csp.split("; "))
    assert parts["script-src"] == "'self' 'sha256-abc='"
    assert parts["frame-ancestors"] == "'none'" and parts["object-src"] == "'none'"
    assert parts["default-src"] == "'self'" and "unsafe-eval" not in csp


# --- /proc/net/tcp ------------------------------------------------------------------------
HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode")


def line(local, remote, uid, inode, state="01"):
    return (f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 "
            f"{uid:>5}        0 {inode} 1 0000000000000000 20 4 30 10 -1")


TCP = "\n".join([
    HEADER,
    line("0100007F:1F90", "00000000:0000", 0, 111, "0A"),          # the server, listening
    line("0100007F:1F90", "0100007F:B26E", 0, 112),                # its side of a connection
    line("0100007F:B26E", "0100007F:1F90", 1001, 113),             # the client: uid 1001
    line("0100007F:C000", "0100007F:1F90", 0, 0, "05"),            # orphan: uid 0, inode 0
    line("0100007F:C001", "0100007F:1F90", 0, 0, "06"),            # TIME_WAIT
    line("0100007F:C002", "0100007F:1F90", 1000, 114),             # another client
    line("0200007F:C002", "0100007F:1F90", 1002, 115),             # same port, 127.0.0.2
    line("0100007F:C003", "0100007F:0050", 1003, 116),             # to another server port
])


def test_parse_address():
    assert peer.parse_address("0100007F:1F90", "little") == (ipaddress.ip_address("127.0.0.1"),
                                                            8080)
    assert peer.parse_address("7F000001:1F90", "big")[0] == ipaddress.ip_address("127.0.0.1")
    assert peer.parse_address("00000000000000000000000001000000:0050", "little") == \
        (ipaddress.ip_address("::1"), 80)
    # ::ffff:127.0.0.1 (a v4 client of a dual-stack socket) comes back as IPv4
    assert peer.parse_address("0000000000000000FFFF00000100007F:0050", "little")[0] == \
        ipaddress.ip_address("127.0.0.1")
    assert peer.parse_address("B80D0120000000000000000005000000:01BB", "little")[0] == \
        ipaddress.ip_address("2001:db8::5")
    for bad in ("", "0100007F", "0100007F:", "01007F:1F90", "zz00007F:1F90"):
        with pytest.raises(ValueError):
            peer.parse_address(bad, "little")


def test_find_owner():
    lines = TCP.splitlines()
    assert peer.find_owner(lines, "127.0.0.1", 0xB26E, 8080, "little") == 1001
    assert peer.find_owner(lines, "127.0.0.1", 0xC002, 8080, "little") == 1000
    assert peer.find_owner(lines, "127.0.0.2", 0xC002, 8080, "little") == 1002
    assert peer.find_owner(lines, "::ffff:127.0.0.1", 0xB26E, 8080, "little") == 1001
    assert peer.find_owner(lines, "127.0.0.1", 0xC003, 8080, "little") is None  # other port
    assert peer.find_owner(lines, "127.0.0.1", 0xC003, 80, "little") == 1003
    # sockets no process holds are no answer (uid 0 there is not root)
    assert peer.find_owner(lines, "127.0.0.1", 0xC000, 8080, "little") is None
    assert peer.find_owner(lines, "127.0.0.1", 0xC001, 8080, "little") is None
    assert peer.find_owner(lines, "127.0.0.1", 0xDEAD, 8080, "little") is None
    assert peer.find_owner([], "127.0.0.1", 0xB26E, 8080, "little") is None
    assert peer.find_owner(["garbage", "   1: x y z"], "127.0.0.1", 1, 2, "little") is None


def test_find_owner_conflicting_matches_fail_closed():
    lines = [HEADER, line("0100007F:B26E", "0100007F:1F90", 0, 1),
             line("0100007F:B26E", "0200007F:1F90", 1001, 2)]
    assert peer.find_owner(lines, "127.0.0.1", 0xB26E, 8080, "little") is None


def test_find_owner_tcp6():
    lines = [HEADER,
             line("00000000000000000000000001000000:B26E",
                  "00000000000000000000000001000000:1F90", 1001, 9)]
    assert peer.find_owner(lines, "::1", 0xB26E, 8080, "little") == 1001
    assert peer.find_owner(lines, "127.0.0.1", 0xB26E, 8080, "little") is None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="needs Linux /proc/net/tcp")
def test_socket_owner_of_a_real_connection():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            conn, _ = server.accept()
            with conn:
                host, port = client.getsockname()
                assert peer.socket_owner(host, port, server.getsockname()[1]) == os.geteuid()
                assert peer.socket_owner(host, port, 1) is None
                assert peer.socket_owner("not an ip", port, 1) is None


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp6") or not _has_ipv6_loopback(),
                    reason="needs Linux /proc/net/tcp6 and ::1")
def test_socket_owner_of_a_real_ipv6_connection():
    with socket.socket(socket.AF_INET6) as server:
        server.bind(("::1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()[:2]) as client:
            conn, _ = server.accept()
            with conn:
                host, port = client.getsockname()[:2]
                assert peer.socket_owner(host, port, server.getsockname()[1]) == os.geteuid()
