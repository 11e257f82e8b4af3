"""Find the bus: from the dashboard URL (GET /api/bus) or straight from a broker host.

Shared by the node agent, the task worker, the CLI and the Python client, so it imports only
architect.bus and architect.config. Every setting comes from the Config: the dashboard URL,
the HTTP Basic login (`user` / `password`), `join_token`, `bus_server_key` and `state_dir`
(where a client's own bus key pair lives, `STATE_DIR/keys/<name>.key*`).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

from architect.bus.transport import client_endpoints, connect_endpoints
from architect.config import Config


class DiscoveryError(RuntimeError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the HTTP status, when the server answered with an error


def _request(url: str, body: dict | None = None, timeout: float = 5.0,
             auth: tuple[str, str] | None = None) -> dict:
    """GET (or POST a JSON body) with HTTP Basic credentials `auth` (user, password) when
    both are set; the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Accept": "application/json",
                                                          "Content-Type": "application/json"})
    if auth and auth[0] and auth[1]:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (configured URL)
            return json.loads(resp.read(1 << 20))
    except urllib.error.HTTPError as exc:  # say what the server said, not only its status
        try:
            error = json.loads(exc.read(1 << 16))["error"]
            why = f"{exc.code} {error['code']}: {error['message']}"
        except Exception:
            why = str(exc)
        raise DiscoveryError(f"cannot read {url}: {why}", exc.code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DiscoveryError(f"cannot read {url}: {exc}") from None


def _auth(config: Config) -> tuple[str, str] | None:
    return (config.user, config.password) if config.user and config.password else None


def from_dashboard(url: str, timeout: float = 5.0, auth: tuple[str, str] | None = None) -> dict:
    """GET {url}/api/bus → {"heartbeat", "work", "control", "events", "server_key"}."""
    full = url.rstrip("/") + "/api/bus"
    data = _request(full, timeout=timeout, auth=auth)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in
                                             ("heartbeat", "work", "control", "events")):
        raise DiscoveryError(f"{full} did not return the bus endpoints")
    host = urllib.parse.urlparse(url).hostname or "127.0.0.1"
    return {k: _rehost(v, host) for k, v in data.items()}


def _rehost(endpoint, host: str):
    """A broker bound to 0.0.0.0 advertises that; connect to the dashboard's host instead.
    Anything else (tcp host:port, ipc:// paths of the loopback bus) is used as given."""
    if isinstance(endpoint, str) and endpoint.startswith("tcp://0.0.0.0:"):
        return endpoint.replace("0.0.0.0", host, 1)
    if isinstance(endpoint, str) and endpoint.startswith("tcp://[::]:"):
        return endpoint.replace("[::]", f"[{host}]" if ":" in host else host, 1)
    return endpoint


def from_broker(host: str, base_port: int, data_dir: str = "./data",
                bus_local: str = "ipc") -> dict:
    """Straight to a broker host: on the master (loopback), the ipc sockets its broker made
    in data_dir's bus folder; otherwise tcp host:base_port..+3."""
    return connect_endpoints(host, base_port, data_dir=data_dir, bus_local=bus_local).as_dict()


def dashboard_urls(config: Config) -> list[str]:
    """ARCHITECT_DASHBOARD_URL may list several masters, comma-separated (or name a load
    balancer in front of them)."""
    return [u.strip() for u in (config.dashboard_url or "").split(",") if u.strip()]


def from_dashboards(urls: list[str], timeout: float = 5.0,
                    auth: tuple[str, str] | None = None) -> tuple[dict, str]:
    """(bus endpoints, the URL that gave them) from the first master that knows the active
    broker; a standby answers with the active one's bus, and 503 during a failover. Several
    URLs are asked at once (a dead master must not cost a timeout before the next)."""
    if len(urls) == 1:
        return from_dashboard(urls[0], timeout=timeout, auth=auth), urls[0]
    from concurrent.futures import ThreadPoolExecutor, as_completed
    errors = []
    pool = ThreadPoolExecutor(max_workers=len(urls), thread_name_prefix="discover")
    try:
        futures = {pool.submit(from_dashboard, url, timeout, auth): url for url in urls}
        for future in as_completed(futures):
            try:
                return future.result(), futures[future]
            except DiscoveryError as exc:
                errors.append(exc)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if len(errors) == 1:
        raise errors[0]
    denied = [e for e in errors if e.status in (401, 403)]
    raise DiscoveryError("no dashboard knows the active broker: " +
                         "; ".join(str(e) for e in errors),
                         denied[0].status if len(denied) == len(errors) else None)


def join(config: Config, name: str, server_key: str, url: str | None = None) -> tuple[dict, str]:
    """Make (once) this client's CURVE key pair and ask the dashboard (`url`, else the first
    of config.dashboard_url) to let it on the bus, with config.join_token and the web login.
    → (curve options for sockets, "authorized" | "pending")."""
    from architect.bus.security import ensure_keypair
    public, secret = ensure_keypair(config.state_path / "keys", name)
    url = url or dashboard_urls(config)[0]
    answer = _request(url.rstrip("/") + "/api/bus/join",
                      {"name": name, "public_key": public.decode(),
                       "token": config.join_token or None}, auth=_auth(config))
    status = answer.get("status") if isinstance(answer, dict) else None
    if status not in ("authorized", "pending"):
        raise DiscoveryError(f"joining the bus failed: {answer}")
    return {"public": public, "secret": secret, "server": server_key.encode()}, status


def connect_info(config: Config, key_name: str,
                 timeout: float = 5.0) -> tuple[dict, dict | None, str]:
    """(endpoints, curve options or None, status) for an agent, worker, CLI or client."""
    from architect.bus.security import local_client
    if config.dashboard_url:
        endpoints, url = from_dashboards(dashboard_urls(config), timeout=timeout,
                                         auth=_auth(config))
        key = endpoints.get("server_key")
        if not key:
            return endpoints, None, "open"
        curve, status = join(config, key_name, key, url)
        return endpoints, curve, status
    endpoints = client_endpoints(config).as_dict()
    if endpoints["control"].startswith("ipc://"):
        return endpoints, None, "open"  # the loopback bus: its folder's mode is the lock
    try:
        local = local_client(config.data_dir)  # on the master itself
    except OSError:  # another user's data dir (0700): no key of ours there
        local = None
    if local is not None:
        return endpoints, local, "authorized"
    if config.bus_server_key:
        from architect.bus.security import ensure_keypair
        public, secret = ensure_keypair(config.state_path / "keys", key_name)
        return endpoints, {"public": public, "secret": secret,
                           "server": config.bus_server_key.encode()}, "preauthorized"
    return endpoints, None, "open"
