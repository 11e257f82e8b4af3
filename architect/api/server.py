"""Serve the web app with cheroot (CherryPy's production WSGI server): a thread pool,
and TLS >= 1.2 with --ssl. (Waitress has no TLS; gunicorn forks, which does not mix with a
broker thread in the same process. cheroot does both jobs in one server.)"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

log = logging.getLogger("architect.web")


class TLSAdapter(BuiltinSSLAdapter):
    """cheroot's adapter with TLS 1.2 as the floor."""

    def __init__(self, certificate, private_key):
        super().__init__(certificate, private_key)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2


class WebServer:
    """run() / stop(), like the broker loop, so `architect server` can run both."""

    def __init__(self, app, host: str, port: int, threads: int = 16, ssl_files=None):
        self.server = wsgi.Server((host, port), app, numthreads=threads,
                                  server_name="architect", request_queue_size=256,
                                  timeout=30, shutdown_timeout=5)
        self.scheme = "http"
        if ssl_files:
            cert, key = ssl_files
            for path in (cert, key):
                if not Path(path).exists():
                    raise FileNotFoundError(
                        f"{path} not found; make a self-signed pair with: openssl req -x509 "
                        "-newkey rsa:4096 -keyout key.pem -out cert.pem -days 365 -nodes")
            self.server.ssl_adapter = TLSAdapter(cert, key)
            self.scheme = "https"
        self.host, self.port = host, port

    def run(self) -> None:
        self.server.prepare()
        log.info("web server on %s://%s:%d", self.scheme, self.host, self.server.bind_addr[1])
        self.server.serve()

    def stop(self) -> None:
        self.server.stop()
