"""The Dash UI, mounted on the API's Flask server at /."""

from __future__ import annotations


def mount(server) -> None:
    from architect.ui.app import build
    build(server)
