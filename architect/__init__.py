"""Architect: a cluster manager with a ZeroMQ broker, node agents, task workers and a Dash UI."""

__version__ = "0.1.0"
