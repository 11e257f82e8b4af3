"""One validated configuration object.

Layers, later wins: defaults → ``~/.architect/config.json`` (or ``$ARCHITECT_CONFIG``) →
``ARCHITECT_*`` environment → CLI flags. Every setting is one field of Config (its default
and its type); ``ARCHITECT_<FIELD>`` sets it from the environment. An invalid value raises
ConfigError with a one-line message naming the setting and where it came from.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from architect.bus.protocol import NODE_NAME_RE


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the setting and its source."""

    def __init__(self, message: str, setting: str | None = None):
        super().__init__(message)
        self.setting = setting


def default_node_name() -> str:
    """The short hostname, with characters a node name cannot hold replaced by '-'."""
    short = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9_\-]", "-", short).lstrip("-")[:128]
    return name or "node"


@dataclass(frozen=True)
class Thresholds:
    """(warning, critical) per graded metric, built by Config.thresholds() (see broker.health)."""
    cpu: tuple[float, float] = (80.0, 95.0)
    memory: tuple[float, float] = (85.0, 95.0)
    disk: tuple[float, float] = (80.0, 90.0)
    load: tuple[float, float] = (4.0, 8.0)

    def as_dict(self) -> dict:
        return {f.name: {"warning": getattr(self, f.name)[0], "critical": getattr(self, f.name)[1]}
                for f in fields(self)}


@dataclass
class Config:
    # where things live
    data_dir: str = "./data"
    state_dir: str = "~/.architect"  # daemon pid/log files, client bus keys (keys/)
    # web server
    host: str = "127.0.0.1"
    port: int = 8080
    user: str = ""                 # ARCHITECT_USER / ARCHITECT_PASSWORD: HTTP Basic auth
    password: str = ""
    cert_file: str = "cert.pem"    # --ssl
    key_file: str = "key.pem"
    max_request_bytes: int = 1 << 20
    web_threads: int = 16
    allowed_hosts: list = field(default_factory=list)  # Host names the web answers besides
    #                              loopback names (and the bound address); "*" allows any
    # bus: the broker binds bus_host:bus_port..bus_port+3; clients connect to broker_host
    bus_host: str = "127.0.0.1"
    bus_port: int = 5555
    broker_host: str = "127.0.0.1"
    dashboard_url: str = ""
    bus_curve: str = "auto"        # CURVE on the bus: auto (on beyond loopback), on, off
    bus_local: str = "ipc"         # a loopback bus without CURVE: ipc (sockets in a 0700 dir
    #                                of the data dir: its owner and root only) or tcp (plain
    #                                127.0.0.1 ports: any local user; for benchmarks)
    join_token: str = ""           # nodes presenting it join the secured bus at once
    bus_server_key: str = ""       # for --broker clients of a secured bus (else from /api/bus)
    # node identity
    node_name: str = field(default_factory=default_node_name)
    capabilities: list = field(default_factory=list)
    disk_path: str = "/"
    # health thresholds (ARCHITECTURE.md §4)
    cpu_warning: float = 80.0
    cpu_critical: float = 95.0
    memory_warning: float = 85.0
    memory_critical: float = 95.0
    disk_warning: float = 80.0
    disk_critical: float = 90.0
    load_warning: float = 4.0
    load_critical: float = 8.0
    # hysteresis and flapping (docs/HEALTH.md): a level changes after health_samples samples
    # in a row; it clears below the threshold minus health_margin points (load: its margin)
    health_samples: int = 3
    health_margin: float = 5.0
    health_load_margin: float = 0.5
    flap_changes: int = 5          # more level changes than this within flap_window: flapping
    flap_window: float = 600.0     # seconds
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 120.0
    # task workers (Paranoid Pirate): ping every interval; silent for liveness pings = lost
    worker_heartbeat_interval: float = 1.0
    worker_liveness: int = 3
    # SSH pool (on the master): ARCHITECT_SSH_* variables
    ssh_max_per_host: int = 3
    ssh_connect_timeout: float = 30.0
    ssh_idle_timeout: float = 300.0
    ssh_keepalive: float = 30.0
    ssh_command_timeout: float = 60.0
    ssh_max_output: int = 1 << 20
    ssh_max_parallel: int = 32
    ssh_user: str = ""             # default: the user running the master
    ssh_key_file: str = "~/.ssh/architect_key"
    ssh_known_hosts: str = ""      # default: DATA_DIR/known_hosts
    ssh_accept_new_hosts: bool = False   # trust on first use; off: `architect ssh trust NODE`
    # storage
    database_url: str = ""         # postgresql://user@host:port/db; empty: SQLite in data_dir
    # several masters on one PostgreSQL (lease.py): a standby takes over lease_ttl seconds
    # after the active one stops renewing (at once when its database session is gone)
    lease_ttl: float = 5.0
    advertise_host: str = ""       # the address other masters and nodes reach this master's
    #                                bus at, when it binds 0.0.0.0 [the hostname's address]
    metrics_retention_days: float = 1.0        # raw samples (every heartbeat)
    metrics_1m_retention_days: float = 14.0    # 1-minute roll-ups (min / avg / max)
    metrics_1h_retention_days: float = 365.0   # 1-hour roll-ups
    audit_retention_days: float = 365.0
    task_retention: float = 30.0          # days a finished task (its events too) is kept
    task_output_retention: float = 7.0    # days its streamed output chunks are kept
    # wire
    max_message_size: int = 1 << 20
    request_timeout: float = 5.0
    log_level: str = "INFO"
    # notifications (docs/NOTIFICATIONS.md): one attempt's timeout, attempts per message,
    # the first retry's delay (doubled each time), delivery threads, queued messages at most
    notify_timeout: float = 10.0
    notify_attempts: int = 5
    notify_backoff: float = 2.0
    notify_workers: int = 4
    notify_queue: int = 1000
    external_url: str = ""         # the dashboard's URL in messages [http://HOST:PORT]
    # logs (logsetup.py): text or json lines; a daemon's file is rotated at log_max_bytes,
    # keeping log_backups old files, in log_dir (default: the state dir, beside the pid file)
    log_format: str = "text"
    log_max_bytes: int = 10 << 20
    log_backups: int = 5
    log_dir: str = ""
    # backups (backup.py, broker/backup_handlers.py): where copies go [DATA_DIR/backups], and
    # the periodic backup the master takes when DATA_DIR/backup-policy.json does not say
    backup_dir: str = ""
    backup_every: float = 0.0      # seconds; 0: none
    backup_keep_days: float = 0.0  # 0: keep every copy

    def validate(self) -> "Config":
        """Check ranges and relations; ConfigError.setting names the offending setting."""
        for metric in ("cpu", "memory", "disk", "load"):
            warn, crit = getattr(self, f"{metric}_warning"), getattr(self, f"{metric}_critical")
            if warn > crit:
                raise ConfigError(f"{metric}_warning ({warn:g}) is above {metric}_critical "
                                  f"({crit:g})", f"{metric}_warning")
        for metric in ("cpu", "memory", "disk"):
            for level in ("warning", "critical"):
                value = getattr(self, f"{metric}_{level}")
                if not 0 <= value <= 100:
                    raise ConfigError(f"{metric}_{level} must be a percentage 0-100, got {value:g}",
                                      f"{metric}_{level}")
        for name, low, high in (("health_samples", 1, 1000), ("flap_changes", 1, 10_000)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be {low}-{high}, got {getattr(self, name)}", name)
        for name, low, high in (("health_margin", 0, 50), ("health_load_margin", 0, 1000),
                                ("flap_window", 1, 7 * 86400)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be {low:g}-{high:g}, got {getattr(self, name):g}",
                                  name)
        if not 1.0 <= self.lease_ttl <= 300:
            raise ConfigError(f"lease_ttl must be 1-300 seconds, got {self.lease_ttl:g}",
                              "lease_ttl")
        for name in ("heartbeat_interval", "heartbeat_timeout", "request_timeout",
                     "metrics_retention_days", "metrics_1m_retention_days",
                     "metrics_1h_retention_days", "audit_retention_days", "task_retention",
                     "task_output_retention", "load_warning",
                     "load_critical",
                     "worker_heartbeat_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be greater than 0, got {getattr(self, name):g}", name)
        if self.worker_liveness < 1:
            raise ConfigError(f"worker_liveness must be at least 1, got {self.worker_liveness}",
                              "worker_liveness")
        for name in ("port", "bus_port"):
            if not 1 <= getattr(self, name) <= 65532:
                raise ConfigError(f"{name} must be a TCP port 1-65532, got {getattr(self, name)}", name)
        for name, low, high in (("ssh_max_per_host", 1, 64), ("ssh_max_parallel", 1, 512)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be {low}-{high}", name)
        for name in ("ssh_connect_timeout", "ssh_idle_timeout", "ssh_keepalive",
                     "ssh_command_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be greater than 0", name)
        if not 1024 <= self.ssh_max_output <= 64 << 20:
            raise ConfigError("ssh_max_output must be 1 KiB - 64 MiB", "ssh_max_output")
        if not 1 <= self.web_threads <= 256:
            raise ConfigError("web_threads must be 1-256", "web_threads")
        if self.max_request_bytes < 1024:
            raise ConfigError("max_request_bytes must be at least 1024", "max_request_bytes")
        if bool(self.user) != bool(self.password):
            raise ConfigError("set both ARCHITECT_USER and ARCHITECT_PASSWORD, or neither",
                              "user" if self.user else "password")
        if self.max_message_size < 1024:
            raise ConfigError("max_message_size must be at least 1024 bytes", "max_message_size")
        if not NODE_NAME_RE.fullmatch(self.node_name):
            raise ConfigError(f"node_name {self.node_name!r} must be 1-128 letters, digits, '_' "
                              "or '-' (no dots or spaces)", "node_name")
        if self.bus_curve not in ("auto", "on", "off"):
            raise ConfigError(f"bus_curve must be auto, on or off, got {self.bus_curve!r}",
                              "bus_curve")
        if self.bus_local not in ("ipc", "tcp"):
            raise ConfigError(f"bus_local must be ipc or tcp, got {self.bus_local!r}", "bus_local")
        if self.database_url and not re.fullmatch(r"postgres(ql)?://[^\s]+", self.database_url):
            raise ConfigError("database_url must be empty (SQLite in the data dir) or a "
                              "postgresql:// URL, got "
                              f"{self.database_url.split('://')[0][:20]!r}://…", "database_url")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, got {self.log_format!r}",
                              "log_format")
        if self.log_max_bytes < 4096:
            raise ConfigError("log_max_bytes must be at least 4096", "log_max_bytes")
        if not 0 <= self.log_backups <= 1000:
            raise ConfigError("log_backups must be 0-1000", "log_backups")
        if self.backup_every and not 60 <= self.backup_every <= 366 * 86400:
            raise ConfigError("backup_every must be 0 (none) or 60 s to 366 days",
                              "backup_every")
        if self.backup_keep_days < 0:
            raise ConfigError("backup_keep_days must be 0 (keep all) or more", "backup_keep_days")
        for name, low, high in (("notify_timeout", 0.1, 300), ("notify_attempts", 1, 20),
                                ("notify_backoff", 0.01, 3600), ("notify_workers", 1, 64),
                                ("notify_queue", 1, 1_000_000)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be {low:g}-{high:g}, got "
                                  f"{getattr(self, name):g}", name)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got "
                              f"{self.log_level!r}", "log_level")
        return self

    @property
    def curve_enabled(self) -> bool:
        """Whether the broker secures its bus: beyond loopback unless told otherwise."""
        if self.bus_curve != "auto":
            return self.bus_curve == "on"
        return self.bus_host not in ("127.0.0.1", "localhost", "::1")

    @property
    def known_hosts_path(self) -> str:
        return os.path.expanduser(self.ssh_known_hosts) if self.ssh_known_hosts else \
            str(Path(self.data_dir) / "known_hosts")

    @property
    def state_path(self) -> Path:
        return Path(os.path.expanduser(self.state_dir))

    @property
    def log_path(self) -> Path:
        return Path(os.path.expanduser(self.log_dir)) if self.log_dir else self.state_path

    @property
    def db_path(self) -> str:
        return str(Path(self.data_dir) / "architect.db")

    def thresholds(self) -> Thresholds:
        return Thresholds(cpu=(self.cpu_warning, self.cpu_critical),
                          memory=(self.memory_warning, self.memory_critical),
                          disk=(self.disk_warning, self.disk_critical),
                          load=(self.load_warning, self.load_critical))


_FIELDS = {f.name: f for f in fields(Config)}
_KINDS = {"str": str, "int": int, "float": float, "bool": bool, "list": list}
_TYPES = {f.name: _KINDS[f.type] if isinstance(f.type, str) else f.type for f in fields(Config)}


def env_name(setting: str) -> str:
    return "ARCHITECT_" + setting.upper()


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = _TYPES[name]
    try:
        if kind is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return list(value)
            raise ValueError
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower() if isinstance(value, (str, int)) else ""
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(value, bool):
            raise ValueError
        if kind in (int, float):
            if isinstance(value, str):
                value = value.strip()
                out = kind(value)
            elif kind is int and isinstance(value, float) and not value.is_integer():
                raise ValueError  # 8080.9 is not a port
            else:
                out = kind(value)
            if out != out or out in (float("inf"), float("-inf")):  # NaN / inf
                raise ValueError
            return out
        if not isinstance(value, (str, int, float)):
            raise ValueError
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}: {value!r} is not a valid {kind.__name__} ({source})") from None


def config_file_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("ARCHITECT_CONFIG") or Path.home() / ".architect" / "config.json")


def _layer(source: str | None) -> int:
    """-1 unset, 0 the config file, 1 the environment, 2 a flag."""
    if source is None:
        return -1
    if source.startswith("option --"):
        return 2
    return 1 if source.startswith("environment variable ") else 0


def load(overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
         config_file: str | Path | None = None) -> Config:
    """Build and validate the Config from all layers. `overrides` are CLI flags (None = unset)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = Path(config_file) if config_file else config_file_path(env)
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a JSON object")
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, value, str(path))
            sources[key] = str(path)
    for name in _FIELDS:
        var = env_name(name)
        if var in env and env[var] != "":
            values[name] = _coerce(name, env[var], f"environment variable {var}")
            sources[name] = f"environment variable {var}"
    for name, value in (overrides or {}).items():
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None and value != ():
            source = f"option --{name.replace('_', '-')}"
            values[name] = _coerce(name, list(value) if isinstance(value, tuple) else value, source)
            sources[name] = source
    if _layer(sources.get("broker_host")) > _layer(sources.get("dashboard_url")) >= 0:
        values["dashboard_url"] = ""  # a broker named in a later layer beats the dashboard URL
    try:
        return Config(**values).validate()
    except ConfigError as exc:
        where = sources.get(exc.setting or "", "default")
        raise ConfigError(f"{exc} (from {where})", exc.setting) from None
