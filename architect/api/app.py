"""The web app factory: Flask with the REST routes, auth, errors, and the Dash UI mounted."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from flask import Flask

from architect.api import auth, errors, routes
from architect.api.broker import BrokerGateway
from architect.api.jsonfast import OrjsonProvider
from architect.api.metrics import Metrics
from architect.bus.security import local_client
from architect.bus.transport import Endpoints
from architect.config import Config

log = logging.getLogger("architect.api")


@dataclass
class AppState:
    config: Config
    broker: BrokerGateway
    metrics: Metrics
    routes: tuple

    def bus_info(self) -> dict:
        info = Endpoints(self.config.bus_host, self.config.bus_port).as_dict()
        curve = local_client(self.config.data_dir) if self.config.curve_enabled else None
        info["server_key"] = curve["server"].decode() if curve else None  # CURVE public key
        return info

    def store_state(self) -> dict:
        path = self.config.db_path
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
            try:
                conn.execute("SELECT COUNT(*) FROM nodes").fetchone()
            finally:
                conn.close()
            return {"path": path, "ok": True}
        except sqlite3.Error as exc:
            return {"path": path, "ok": False, "error": str(exc)}


def _api_not_found(rest):
    from architect.api.errors import NotFound
    raise NotFound(f"no API route /api/{rest}; see /api/openapi.json")


def create_app(config: Config, credentials=None, with_ui: bool = True,
               control_endpoint: str | None = None) -> Flask:
    """The Flask app. `credentials` (user, password) turns on Basic auth for every route but
    /healthz; pass auth.resolve_credentials(config) to follow the configuration."""
    app = Flask("architect")
    app.json_provider_class = OrjsonProvider
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    endpoint = control_endpoint or Endpoints(config.broker_host, config.bus_port).control
    gateway = BrokerGateway(endpoint, timeout=config.request_timeout,
                            curve=local_client(config.data_dir) if config.curve_enabled else None)
    app.extensions["architect"] = AppState(config, gateway, Metrics(gateway), routes.ROUTES)
    errors.install(app)
    auth.install(app, credentials)
    routes.register(app)
    app.add_url_rule("/api/<path:rest>", endpoint="api_not_found", view_func=_api_not_found,
                     methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    if with_ui:
        from architect.ui import mount
        mount(app)
    return app
