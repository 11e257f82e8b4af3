"""Node metrics from psutil, and node facts (IP address, detected capabilities)."""

from __future__ import annotations

import json
import shutil
import socket
import time

import psutil

DETECTED = ("python", "docker", "git")
_EXECUTABLES = {"python": ("python3", "python"), "docker": ("docker",), "git": ("git",)}


def collect(disk_path: str = "/", now: float | None = None, cpu_window: float | None = None) -> dict:
    """One sample of the node's metrics (all numbers). CPU % is measured since the previous
    call; pass `cpu_window` seconds for the first call, which has no previous one."""
    now = time.time() if now is None else now
    load1, load5, load15 = psutil.getloadavg()
    net = psutil.net_io_counters()
    boot = psutil.boot_time()
    try:
        disk = psutil.disk_usage(disk_path).percent
    except OSError:
        disk = None
    out = {"cpu_percent": psutil.cpu_percent(interval=cpu_window),
           "memory_percent": psutil.virtual_memory().percent,
           "load_1": load1, "load_5": load5, "load_15": load15,
           "net_bytes_sent": net.bytes_sent if net else 0,
           "net_bytes_recv": net.bytes_recv if net else 0,
           "process_count": len(psutil.pids()),
           "uptime": round(now - boot, 1), "boot_time": boot}
    if disk is not None:
        out["disk_percent"] = disk
    return out


def overrides(path: str | None) -> dict:
    """Metric values to force, read from a JSON file on every heartbeat (for tests and demos:
    `architect agent --metrics-file F`). A missing or bad file overrides nothing."""
    if not path:
        return {}
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} \
        if isinstance(data, dict) else {}


def detect_capabilities() -> list[str]:
    return [cap for cap in DETECTED if any(shutil.which(exe) for exe in _EXECUTABLES[cap])]


def local_ip(toward_host: str) -> str:
    """The address this machine uses to reach `toward_host` (no packet is sent)."""
    try:
        family = socket.AF_INET6 if ":" in toward_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((toward_host, 9))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
