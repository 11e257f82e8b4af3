"""The web app factory: Flask with the REST routes, auth, errors, and the Dash UI mounted."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from flask import Flask
from werkzeug.routing import BaseConverter

from architect.api import auth, errors, guard, request_ids, routes
from architect.api.broker import BrokerGateway
from architect.api.jsonfast import OrjsonProvider
from architect.api.metrics import Metrics
from architect.bus.protocol import RESERVED_NAMES
from architect.bus.security import local_client
from architect.bus.transport import bus_endpoints, client_endpoints
from architect.config import Config

log = logging.getLogger("architect.api")


@dataclass
class AppState:
    config: Config
    broker: BrokerGateway
    metrics: Metrics
    routes: tuple
    ha: object = None   # ha.Master when several masters share PostgreSQL, else None

    def master_info(self) -> dict:
        """Active or standby, the epoch and since when (/healthz, cluster status)."""
        if self.ha is not None:
            return self.ha.info()
        return {"role": "active", "epoch": None, "since": None, "ha": False}

    def bus_info(self) -> dict | None:
        """The active broker's bus; None while no master is active (a failover)."""
        if self.ha is not None:
            return self.ha.leader_bus()
        info = bus_endpoints(self.config).as_dict()  # ipc:// paths on the loopback bus
        curve = local_client(self.config.data_dir) if self.config.curve_enabled else None
        info["server_key"] = curve["server"].decode() if curve else None  # CURVE public key
        return info

    def store_state(self) -> dict:
        if self.config.database_url:  # a connect and a COUNT(*) with a short timeout
            from architect.broker.store.postgres import ping
            return ping(self.config.database_url)
        path = self.config.db_path
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            try:
                conn.execute("SELECT COUNT(*) FROM nodes").fetchone()
            finally:
                conn.close()
            return {"backend": "sqlite", "path": path, "ok": True}
        except sqlite3.Error as exc:
            return {"backend": "sqlite", "path": path, "ok": False, "error": str(exc)}


class NodeKeyConverter(BaseConverter):
    """A node id or name in /api/nodes/<key>, but never one of the static paths beside it
    (so DELETE /api/nodes/health is a 405, not "no node 'health'")."""
    regex = r"(?!(?:%s)(?:/|$))[^/]+" % "|".join(RESERVED_NAMES)


def _api_not_found(rest):
    from flask import current_app, request
    from architect.api.errors import ApiError, NotFound
    allowed = current_app.extensions["api_methods"](request.path)
    if allowed:  # a real route, another method (the catch-all only takes GET)
        allow = ", ".join(sorted(allowed | {"OPTIONS"}))
        raise ApiError(f"GET is not allowed here; use {allow}", code="method_not_allowed",
                       status=405, headers={"Allow": allow})
    raise NotFound(f"no API route /api/{rest}; see /api/openapi.json")


def _api_options(app: Flask) -> None:
    """OPTIONS on an API path lists what the API route allows (not the catch-all's GET)."""
    default = app.make_default_options_response

    def options_response():
        from flask import request
        allowed = app.extensions["api_methods"](request.path) if request.path.startswith("/api") \
            else set()
        if not allowed:
            return default()
        response = app.response_class()
        response.allow.update(allowed | {"OPTIONS"})
        return response
    app.make_default_options_response = options_response


def _database_view(config: Config):
    from architect.broker.standby_reads import DatabaseView
    return DatabaseView(config)


def _mark_source(response):
    """A read answered from the database (no active broker to ask) says so."""
    from flask import g
    if g.get("architect_source"):
        response.headers["X-Architect-Source"] = g.architect_source
    return response


def create_app(config: Config, credentials=None, with_ui: bool = True,
               control_endpoint: str | None = None, ha=None) -> Flask:
    """The Flask app. `credentials` (user, password) turns on Basic auth for every route but
    /healthz; pass auth.resolve_credentials(config) to follow the configuration."""
    app = Flask("architect")
    app.url_map.converters["nodekey"] = NodeKeyConverter
    app.json_provider_class = OrjsonProvider
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    endpoint = control_endpoint or client_endpoints(config).control
    gateway = BrokerGateway(endpoint, timeout=config.request_timeout,
                            curve=local_client(config.data_dir) if config.curve_enabled else None,
                            route=ha.route if ha is not None else None,
                            fallback=_database_view(config) if ha is not None else None)
    app.extensions["architect"] = AppState(config, gateway, Metrics(gateway), routes.ROUTES, ha)
    request_ids.install(app)   # first: every later hook and view logs with the id
    errors.install(app)
    app.after_request(_mark_source)
    _api_options(app)
    guard.install(app, config)
    auth.install(app, credentials)
    routes.register(app)
    # GET-only, so a wrong method on a real route still answers 405 (errors.py turns a 405
    # on a path no API route has into a JSON 404)
    for rule in ("/api", "/api/", "/api/<path:rest>"):
        app.add_url_rule(rule, endpoint="api_not_found", view_func=_api_not_found,
                         methods=["GET"], defaults=None if "rest" in rule else {"rest": ""})
    if with_ui:
        from architect.ui import mount
        mount(app)
    return app
