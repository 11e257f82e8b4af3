"""Find the bus: from the dashboard URL (GET /api/bus) or straight from a broker host."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

from architect.bus.transport import Endpoints


class DiscoveryError(RuntimeError):
    pass


def from_dashboard(url: str, timeout: float = 5.0) -> dict:
    """GET {url}/api/bus → {"heartbeat", "work", "control", "events", "server_key"?}.
    Sends HTTP Basic credentials from ARCHITECT_USER / ARCHITECT_PASSWORD when set."""
    full = url.rstrip("/") + "/api/bus"
    req = urllib.request.Request(full, headers={"Accept": "application/json"})
    user, password = os.environ.get("ARCHITECT_USER"), os.environ.get("ARCHITECT_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (configured URL)
            data = json.loads(resp.read(1 << 20))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DiscoveryError(f"cannot read {full}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in
                                             ("heartbeat", "work", "control", "events")):
        raise DiscoveryError(f"{full} did not return the bus endpoints")
    host = urllib.parse.urlparse(url).hostname or "127.0.0.1"
    return {k: _rehost(v, host) for k, v in data.items()}


def _rehost(endpoint, host: str):
    """A broker bound to 0.0.0.0 advertises that; connect to the dashboard's host instead."""
    if isinstance(endpoint, str) and endpoint.startswith("tcp://0.0.0.0:"):
        return endpoint.replace("0.0.0.0", host, 1)
    if isinstance(endpoint, str) and endpoint.startswith("tcp://[::]:"):
        return endpoint.replace("[::]", f"[{host}]" if ":" in host else host, 1)
    return endpoint


def from_broker(host: str, base_port: int) -> dict:
    return Endpoints(host, base_port).as_dict()
