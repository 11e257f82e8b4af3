"""The web server: Flask app factory, REST routes, auth, errors, metrics, OpenAPI."""

from architect.api.app import create_app

__all__ = ["create_app"]
