"""Tier 3: `architect server --ssl` serves HTTPS with TLS >= 1.2 (ARCHITECTURE.md §7)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import warnings

import pytest
import requests
import urllib3

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is needed to make a test certificate: apt-get install openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-nodes", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def https(cluster, cert):
    """(base URL, port) of `architect server --ssl` on 127.0.0.1."""
    base = cluster.start_server("--ssl", "--cert", str(cert[0]), "--key", str(cert[1]),
                                scheme="https")
    return base, int(base.rsplit(":", 1)[1])


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def handshake(port: int, ctx: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version()


def test_https_answers_with_tls_12_or_newer(https, cert):
    base, port = https
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        health = requests.get(base + "/healthz", verify=False, timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        nodes = requests.get(base + "/api/nodes", verify=False, timeout=10)
        assert nodes.status_code == 200 and nodes.json() == {"nodes": [], "count": 0}
    # the certificate we made is the one served: it verifies against itself as the only CA
    pinned = client_context()
    pinned.verify_mode = ssl.CERT_REQUIRED
    pinned.load_verify_locations(cafile=str(cert[0]))
    assert handshake(port, pinned) in ("TLSv1.2", "TLSv1.3")
    version = handshake(port, client_context())
    assert version in ("TLSv1.2", "TLSv1.3"), version
    only_12 = client_context()
    only_12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert handshake(port, only_12) == "TLSv1.2"


def test_tls_11_is_refused(https):
    _, port = https
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old = client_context()
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.0/1.1 at all
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"the local OpenSSL cannot build a TLS <= 1.1 client context ({exc}); "
                    "the server's floor is still checked by test_https_answers_with_tls_12_or_newer")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)) as info:
        handshake(port, old)
    # the server (not only our client) refused: its alert names the protocol version
    assert "version" in str(info.value).lower() or "protocol" in str(info.value).lower(), info.value


def test_plain_http_does_not_reach_the_api(https):
    _, port = https
    try:
        response = requests.get(f"http://127.0.0.1:{port}/api/nodes", timeout=10)
    except requests.ConnectionError:
        return  # the TLS server dropped the plain-text connection: fine
    if response.status_code == 400:
        return  # cheroot's "plain HTTP request to an HTTPS port" answer
    with pytest.raises(ValueError):
        response.json()  # anything else must at least not be the API's JSON


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_missing_cert_file_is_a_one_line_error(cluster, cert, tmp_path, missing):
    from tests.helpers import free_port_block
    files = {"cert": str(cert[0]), "key": str(cert[1])}
    files[missing] = str(tmp_path / f"no-{missing}.pem")
    port = free_port_block(1)
    result = cluster.cli("server", "--ssl", "--cert", files["cert"], "--key", files["key"],
                         "--host", "127.0.0.1", "--port", str(port), check=False)
    assert result.returncode != 0, result
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, output
    assert "openssl" in errors[0] and files[missing] in errors[0], errors[0]
    # and nothing is left listening on the web port
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
