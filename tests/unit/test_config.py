"""Tier 1: configuration layers and validation (architect/config.py).

Every test passes `env` and a config file under tmp_path explicitly; the real
~/.architect is never read.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
from pathlib import Path

import pytest

from architect import config
from architect.broker.health import Thresholds
from architect.config import Config, ConfigError


@pytest.fixture
def no_file(tmp_path) -> Path:
    return tmp_path / "absent.json"


@pytest.fixture
def write_file(tmp_path):
    def write(data, name="config.json") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data))
        return path
    return write


# ---------------------------------------------------------------------------------------------
# Defaults

def test_defaults(no_file):
    cfg = config.load(env={}, config_file=no_file)
    assert cfg.data_dir == "./data"
    assert cfg.host == "127.0.0.1" and cfg.port == 8080
    assert cfg.bus_host == "127.0.0.1" and cfg.bus_port == 5555
    assert cfg.dashboard_url == ""
    assert cfg.capabilities == []
    assert (cfg.cpu_warning, cfg.cpu_critical) == (80, 95)
    assert (cfg.memory_warning, cfg.memory_critical) == (85, 95)
    assert (cfg.disk_warning, cfg.disk_critical) == (80, 90)
    assert (cfg.load_warning, cfg.load_critical) == (4.0, 8.0)
    assert cfg.heartbeat_interval == 5 and cfg.heartbeat_timeout == 120
    assert cfg.max_message_size == 1 << 20
    assert cfg.node_name == socket.gethostname()
    assert cfg.db_path == str(Path("./data") / "architect.db")


def test_default_thresholds_match_the_architecture_table(no_file):
    th = config.load(env={}, config_file=no_file).thresholds()
    assert th == Thresholds(cpu=(80, 95), memory=(85, 95), disk=(80, 90), load=(4.0, 8.0))
    assert th == Thresholds()


def test_default_file_location_without_env():
    assert config.config_file_path({}) == Path.home() / ".architect" / "config.json"


def test_architect_config_env_chooses_the_file(write_file):
    path = write_file({"bus_port": 6100}, name="elsewhere.json")
    assert config.config_file_path({"ARCHITECT_CONFIG": str(path)}) == path
    cfg = config.load(env={"ARCHITECT_CONFIG": str(path)})
    assert cfg.bus_port == 6100


def test_explicit_config_file_wins_over_architect_config(write_file):
    a = write_file({"bus_port": 6100}, name="a.json")
    b = write_file({"bus_port": 6200}, name="b.json")
    assert config.load(env={"ARCHITECT_CONFIG": str(a)}, config_file=b).bus_port == 6200


def test_missing_file_is_not_an_error(tmp_path):
    cfg = config.load(env={"ARCHITECT_CONFIG": str(tmp_path / "nope.json")})
    assert cfg.bus_port == 5555


# ---------------------------------------------------------------------------------------------
# Layers: defaults -> file -> env -> overrides

def test_file_layer(write_file):
    path = write_file({"cpu_warning": 70, "bus_port": 6000, "data_dir": "/srv/arch",
                       "capabilities": ["gpu", "ssd"], "dashboard_url": "http://m:8080",
                       "heartbeat_timeout": 30})
    cfg = config.load(env={}, config_file=path)
    assert cfg.cpu_warning == 70.0 and isinstance(cfg.cpu_warning, float)
    assert cfg.bus_port == 6000 and isinstance(cfg.bus_port, int)
    assert cfg.data_dir == "/srv/arch"
    assert cfg.capabilities == ["gpu", "ssd"]
    assert cfg.dashboard_url == "http://m:8080"
    assert cfg.heartbeat_timeout == 30.0
    assert cfg.cpu_critical == 95.0  # untouched settings keep their defaults


def test_file_accepts_numbers_as_strings_and_comma_capabilities(write_file):
    path = write_file({"cpu_warning": "70", "port": "9000", "capabilities": "a, b"})
    cfg = config.load(env={}, config_file=path)
    assert (cfg.cpu_warning, cfg.port, cfg.capabilities) == (70.0, 9000, ["a", "b"])


def test_env_overrides_file(write_file):
    path = write_file({"cpu_warning": 70, "bus_port": 6000, "data_dir": "/from/file"})
    cfg = config.load(env={"ARCHITECT_CPU_WARNING": "60", "ARCHITECT_BUS_PORT": "7000"},
                      config_file=path)
    assert cfg.cpu_warning == 60.0
    assert cfg.bus_port == 7000
    assert cfg.data_dir == "/from/file"


def test_empty_env_value_is_ignored(write_file):
    path = write_file({"cpu_warning": 70})
    cfg = config.load(env={"ARCHITECT_CPU_WARNING": "", "ARCHITECT_DATA_DIR": ""},
                      config_file=path)
    assert cfg.cpu_warning == 70.0
    assert cfg.data_dir == "./data"


def test_overrides_win_over_env_and_file(write_file):
    path = write_file({"bus_port": 6000, "cpu_warning": 70, "data_dir": "/f"})
    cfg = config.load(overrides={"bus_port": 8000, "cpu_warning": 50.5},
                      env={"ARCHITECT_BUS_PORT": "7000", "ARCHITECT_CPU_WARNING": "60",
                           "ARCHITECT_DATA_DIR": "/e"},
                      config_file=path)
    assert cfg.bus_port == 8000
    assert cfg.cpu_warning == 50.5
    assert cfg.data_dir == "/e"


def test_unset_overrides_do_not_mask_lower_layers(no_file):
    cfg = config.load(overrides={"bus_port": None, "capabilities": ()},
                      env={"ARCHITECT_BUS_PORT": "7000", "ARCHITECT_CAPABILITIES": "gpu"},
                      config_file=no_file)
    assert cfg.bus_port == 7000
    assert cfg.capabilities == ["gpu"]


def test_override_tuple_becomes_a_list(no_file):
    cfg = config.load(overrides={"capabilities": ("gpu", "ssd")}, env={}, config_file=no_file)
    assert cfg.capabilities == ["gpu", "ssd"]


def test_override_strings_are_coerced(no_file):
    cfg = config.load(overrides={"port": "9001", "cpu_warning": "10"}, env={}, config_file=no_file)
    assert cfg.port == 9001 and cfg.cpu_warning == 10.0


# ---------------------------------------------------------------------------------------------
# Every env var is read

ENV_CASES = [
    ("ARCHITECT_CPU_WARNING", "cpu_warning", "50", 50.0),
    ("ARCHITECT_CPU_CRITICAL", "cpu_critical", "99.5", 99.5),
    ("ARCHITECT_MEMORY_WARNING", "memory_warning", "60", 60.0),
    ("ARCHITECT_MEMORY_CRITICAL", "memory_critical", "97", 97.0),
    ("ARCHITECT_DISK_WARNING", "disk_warning", "70.25", 70.25),
    ("ARCHITECT_DISK_CRITICAL", "disk_critical", "99", 99.0),
    ("ARCHITECT_LOAD_WARNING", "load_warning", "2.5", 2.5),
    ("ARCHITECT_LOAD_CRITICAL", "load_critical", "16", 16.0),
    ("ARCHITECT_HEARTBEAT_INTERVAL", "heartbeat_interval", "2.5", 2.5),
    ("ARCHITECT_HEARTBEAT_TIMEOUT", "heartbeat_timeout", " 30 ", 30.0),
    ("ARCHITECT_BUS_PORT", "bus_port", "6000", 6000),
    ("ARCHITECT_DATA_DIR", "data_dir", "/var/lib/architect", "/var/lib/architect"),
    ("ARCHITECT_DASHBOARD_URL", "dashboard_url", "http://master:8080", "http://master:8080"),
    ("ARCHITECT_PORT", "port", "9090", 9090),
    ("ARCHITECT_HOST", "host", "0.0.0.0", "0.0.0.0"),
    ("ARCHITECT_BUS_HOST", "bus_host", "0.0.0.0", "0.0.0.0"),
    ("ARCHITECT_NODE_NAME", "node_name", "web-1", "web-1"),
]


@pytest.mark.parametrize("var,setting,raw,expected", ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_env_var_is_read(var, setting, raw, expected, no_file):
    assert config.env_name(setting) == var
    cfg = config.load(env={var: raw}, config_file=no_file)
    value = getattr(cfg, setting)
    assert value == expected
    assert type(value) is type(expected)


THRESHOLD_CASES = [c for c in ENV_CASES if c[1].split("_")[0] in ("cpu", "memory", "disk", "load")]


@pytest.mark.parametrize("var,setting,raw,expected", THRESHOLD_CASES,
                         ids=[c[0] for c in THRESHOLD_CASES])
def test_threshold_env_var_reaches_thresholds(var, setting, raw, expected, no_file):
    metric, level = setting.split("_")
    th = config.load(env={var: raw}, config_file=no_file).thresholds()
    assert getattr(th, metric)[0 if level == "warning" else 1] == expected
    assert th.as_dict()[metric][level] == expected


def test_every_setting_has_an_env_var(no_file):
    """Each Config field is read from ARCHITECT_<NAME> (values chosen to stay valid)."""
    samples = {"data_dir": "/d", "host": "10.0.0.1", "port": "9000", "bus_host": "10.0.0.2",
               "bus_port": "6000", "broker_host": "10.0.0.3", "dashboard_url": "http://x",
               "node_name": "n1", "capabilities": "a,b", "disk_path": "/data",
               "cpu_warning": "1", "cpu_critical": "2", "memory_warning": "3",
               "memory_critical": "4", "disk_warning": "5", "disk_critical": "6",
               "load_warning": "7", "load_critical": "9.5", "heartbeat_interval": "9",
               "heartbeat_timeout": "10", "metrics_retention_days": "11",
               "metrics_1m_retention_days": "20", "metrics_1h_retention_days": "400",
               "max_message_size": "2048", "request_timeout": "12", "log_level": "DEBUG",
               "worker_heartbeat_interval": "0.5", "worker_liveness": "5",
               "user": "admin", "password": "pw", "cert_file": "/c.pem", "key_file": "/k.pem",
               "max_request_bytes": "4096", "web_threads": "4",
               "ssh_max_per_host": "5", "ssh_connect_timeout": "3", "ssh_idle_timeout": "9",
               "ssh_keepalive": "7", "ssh_command_timeout": "8", "ssh_max_output": "2048",
               "ssh_max_parallel": "4", "ssh_user": "ops", "ssh_key_file": "/k",
               "ssh_known_hosts": "/kh", "ssh_accept_new_hosts": "yes",
               "bus_curve": "on", "join_token": "t0k", "bus_server_key": "k" * 40,
               "allowed_hosts": "a.example,.b.example", "bus_local": "tcp",
               "audit_retention_days": "30", "state_dir": "/state",
               "database_url": "postgresql://architect@db.example:5432/architect",
               "lease_ttl": "7.5", "advertise_host": "10.0.0.9", "task_retention": "60",
               "task_output_retention": "3",
               "health_samples": "2", "health_margin": "3", "health_load_margin": "0.25",
               "flap_changes": "4", "flap_window": "120",
               "log_format": "json", "log_max_bytes": "65536", "log_backups": "3",
               "log_dir": "/logs", "backup_dir": "/bk", "backup_every": "3600",
               "backup_keep_days": "7",
               "notify_timeout": "3", "notify_attempts": "4", "notify_backoff": "0.5",
               "notify_workers": "2", "notify_queue": "50",
               "external_url": "https://dash.example"}
    names = {f.name for f in config.fields(Config)}
    assert names == set(samples), "a new setting needs a sample here"
    cfg = config.load(env={config.env_name(k): v for k, v in samples.items()},
                      config_file=no_file)
    defaults = Config(node_name="x")
    for name in names:
        assert getattr(cfg, name) != getattr(defaults, name), name


def test_capabilities_from_comma_separated_env(no_file):
    cfg = config.load(env={"ARCHITECT_CAPABILITIES": " gpu, ssd,,cuda12 ,"}, config_file=no_file)
    assert cfg.capabilities == ["gpu", "ssd", "cuda12"]
    cfg = config.load(env={"ARCHITECT_CAPABILITIES": "single"}, config_file=no_file)
    assert cfg.capabilities == ["single"]


# ---------------------------------------------------------------------------------------------
# Invalid values name the setting and the source

BAD_ENV = [
    ("ARCHITECT_CPU_WARNING", "cpu_warning", "abc"),
    ("ARCHITECT_CPU_CRITICAL", "cpu_critical", "9O"),
    ("ARCHITECT_MEMORY_WARNING", "memory_warning", "85%"),
    ("ARCHITECT_MEMORY_CRITICAL", "memory_critical", "nan"),
    ("ARCHITECT_DISK_WARNING", "disk_warning", "inf"),
    ("ARCHITECT_DISK_CRITICAL", "disk_critical", "-inf"),
    ("ARCHITECT_LOAD_WARNING", "load_warning", "1,5"),
    ("ARCHITECT_LOAD_CRITICAL", "load_critical", "eight"),
    ("ARCHITECT_HEARTBEAT_INTERVAL", "heartbeat_interval", "5s"),
    ("ARCHITECT_HEARTBEAT_TIMEOUT", "heartbeat_timeout", "two minutes"),
    ("ARCHITECT_BUS_PORT", "bus_port", "abc"),
    ("ARCHITECT_BUS_PORT", "bus_port", "5555.5"),
    ("ARCHITECT_PORT", "port", "1e3"),
    ("ARCHITECT_MAX_MESSAGE_SIZE", "max_message_size", "1MiB"),
]


@pytest.mark.parametrize("var,setting,raw", BAD_ENV, ids=[f"{c[0]}={c[2]}" for c in BAD_ENV])
def test_unparsable_env_value(var, setting, raw, no_file):
    with pytest.raises(ConfigError) as info:
        config.load(env={var: raw}, config_file=no_file)
    msg = str(info.value)
    assert setting in msg
    assert var in msg
    assert "\n" not in msg


def test_example_from_the_brief(no_file):
    with pytest.raises(ConfigError, match="cpu_warning") as info:
        config.load(env={"ARCHITECT_CPU_WARNING": "abc"}, config_file=no_file)
    assert "ARCHITECT_CPU_WARNING" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("data,setting", [
    ({"cpu_warning": "abc"}, "cpu_warning"),
    ({"cpu_warning": True}, "cpu_warning"),
    ({"bus_port": [5555]}, "bus_port"),
    ({"bus_port": None}, "bus_port"),
    ({"capabilities": [1, 2]}, "capabilities"),
    ({"capabilities": {"gpu": True}}, "capabilities"),
    ({"data_dir": {"a": 1}}, "data_dir"),
    ({"data_dir": ["a"]}, "data_dir"),
    ({"heartbeat_timeout": "NaN"}, "heartbeat_timeout"),
])
def test_invalid_value_in_file_names_setting_and_file(data, setting, write_file):
    path = write_file(data)
    with pytest.raises(ConfigError) as info:
        config.load(env={}, config_file=path)
    assert setting in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("overrides,setting,flag", [
    ({"port": "abc"}, "port", "--port"),
    ({"bus_port": True}, "bus_port", "--bus-port"),
    ({"cpu_warning": "x"}, "cpu_warning", "--cpu-warning"),
    ({"capabilities": ("gpu", 3)}, "capabilities", "--capabilities"),
])
def test_invalid_override_names_setting_and_flag(overrides, setting, flag, no_file):
    with pytest.raises(ConfigError) as info:
        config.load(overrides=overrides, env={}, config_file=no_file)
    assert setting in str(info.value)
    assert flag in str(info.value)


@pytest.mark.parametrize("metric", ["cpu", "memory", "disk", "load"])
def test_warning_above_critical(metric, no_file):
    crit = getattr(Config(node_name="x"), f"{metric}_critical")
    env = {f"ARCHITECT_{metric.upper()}_WARNING": str(crit + 0.5)}
    with pytest.raises(ConfigError) as info:
        config.load(env=env, config_file=no_file)
    assert f"{metric}_warning" in str(info.value)
    assert f"{metric}_critical" in str(info.value)


@pytest.mark.parametrize("metric", ["cpu", "memory", "disk", "load"])
def test_warning_above_critical_via_lowered_critical(metric, no_file):
    env = {f"ARCHITECT_{metric.upper()}_CRITICAL": "1"}
    with pytest.raises(ConfigError, match=f"{metric}_warning"):
        config.load(env=env, config_file=no_file)


@pytest.mark.parametrize("metric", ["cpu", "memory", "disk", "load"])
def test_warning_equal_to_critical_is_allowed(metric, no_file):
    env = {f"ARCHITECT_{metric.upper()}_WARNING": "3",
           f"ARCHITECT_{metric.upper()}_CRITICAL": "3"}
    th = config.load(env=env, config_file=no_file).thresholds()
    assert getattr(th, metric) == (3.0, 3.0)


@pytest.mark.parametrize("var,setting,raw", [
    ("ARCHITECT_CPU_CRITICAL", "cpu_critical", "101"),
    ("ARCHITECT_MEMORY_WARNING", "memory_warning", "-1"),
    ("ARCHITECT_DISK_CRITICAL", "disk_critical", "150"),
    ("ARCHITECT_LOAD_WARNING", "load_warning", "0"),
    ("ARCHITECT_HEARTBEAT_INTERVAL", "heartbeat_interval", "0"),
    ("ARCHITECT_HEARTBEAT_TIMEOUT", "heartbeat_timeout", "-5"),
    ("ARCHITECT_BUS_PORT", "bus_port", "0"),
    ("ARCHITECT_BUS_PORT", "bus_port", "65533"),   # needs 4 ports: 65533..65536 is too high
    ("ARCHITECT_PORT", "port", "70000"),
    ("ARCHITECT_MAX_MESSAGE_SIZE", "max_message_size", "10"),
    ("ARCHITECT_NODE_NAME", "node_name", "web 1"),
    ("ARCHITECT_NODE_NAME", "node_name", "web.1"),
    ("ARCHITECT_LOG_LEVEL", "log_level", "LOUD"),
])
def test_out_of_range_value_names_the_setting(var, setting, raw, no_file):
    with pytest.raises(ConfigError, match=setting):
        config.load(env={var: raw}, config_file=no_file)


@pytest.mark.parametrize("var,raw", [("ARCHITECT_DISK_CRITICAL", "150"),
                                     ("ARCHITECT_BUS_PORT", "70000"),
                                     ("ARCHITECT_HEARTBEAT_TIMEOUT", "-5")])
def test_out_of_range_env_value_names_the_source(var, raw, no_file):
    with pytest.raises(ConfigError) as info:
        config.load(env={var: raw}, config_file=no_file)
    assert var in str(info.value)


def test_heartbeat_timeout_may_be_set_alone(no_file):
    """The broker's timeout and each agent's interval are set on different machines, so the
    broker accepts any positive timeout (`architect broker --heartbeat-timeout 3`)."""
    cfg = config.load(env={"ARCHITECT_HEARTBEAT_TIMEOUT": "3"}, config_file=no_file)
    assert cfg.heartbeat_timeout == 3 and cfg.heartbeat_interval == 5


@pytest.mark.parametrize("port", ["1", "65532"])
def test_bus_port_range_edges_are_valid(port, no_file):
    assert config.load(env={"ARCHITECT_BUS_PORT": port}, config_file=no_file).bus_port == int(port)


# ---------------------------------------------------------------------------------------------
# The file itself

@pytest.mark.parametrize("text", ["{not json", "", "{\"cpu_warning\": 70,}", "\x00\x01"],
                         ids=["garbage", "empty", "trailing-comma", "binary"])
def test_malformed_config_json_names_the_path(text, write_file):
    path = write_file(text)
    with pytest.raises(ConfigError) as info:
        config.load(env={}, config_file=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("data", [[1, 2], "text", 3, None])
def test_config_json_must_be_an_object(data, write_file):
    path = write_file(data)
    with pytest.raises(ConfigError) as info:
        config.load(env={}, config_file=path)
    assert str(path) in str(info.value)


def test_unknown_key_in_file(write_file):
    path = write_file({"cpu_warning": 70, "cpu_warn": 70})
    with pytest.raises(ConfigError) as info:
        config.load(env={}, config_file=path)
    assert "cpu_warn" in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_env_vars_are_ignored(no_file):
    cfg = config.load(env={"ARCHITECT_CPU_WARN": "abc", "ARCHITECT_CONFIG_X": "1"},
                      config_file=no_file)
    assert cfg.cpu_warning == 80.0


def test_unreadable_config_path_is_a_config_error(tmp_path):
    path = tmp_path / "dir.json"
    path.mkdir()  # exists, but reading it fails
    with pytest.raises(ConfigError) as info:
        config.load(env={}, config_file=path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ['{"port": Infinity}', '{"bus_port": 1e999}',
                                  '{"max_message_size": -Infinity}'])
def test_infinite_int_in_file_is_a_config_error(text, write_file):
    path = write_file(text)
    with pytest.raises(ConfigError):
        config.load(env={}, config_file=path)


def test_fractional_int_in_file_is_a_config_error(write_file):
    path = write_file({"port": 8080.9})
    with pytest.raises(ConfigError, match="port"):
        config.load(env={}, config_file=path)


def test_default_node_name_on_a_host_with_a_dotted_hostname(monkeypatch, no_file):
    # The default factory is bound when the module is imported, so import a private copy of
    # the module while gethostname() answers an FQDN (the real module is not touched).
    monkeypatch.setattr(socket, "gethostname", lambda: "web-1.example.com")
    spec = importlib.util.spec_from_file_location("_architect_config_fqdn", config.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    cfg = module.load(env={}, config_file=no_file)
    assert cfg.node_name and "." not in cfg.node_name


def test_database_url_is_empty_or_a_postgresql_url(no_file):
    assert config.load(env={}, config_file=no_file).database_url == ""
    for url in ("postgresql://architect@127.0.0.1:5433/architect", "postgres://db/architect"):
        cfg = config.load(env={"ARCHITECT_DATABASE_URL": url}, config_file=no_file)
        assert cfg.database_url == url
    with pytest.raises(ConfigError, match="database_url") as info:
        config.load(env={"ARCHITECT_DATABASE_URL": "mysql://root:s3cret@db/architect"},
                    config_file=no_file)
    assert "s3cret" not in str(info.value) and info.value.setting == "database_url"
