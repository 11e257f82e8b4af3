"""The container image: Dockerfile, docker-compose.yml, .dockerignore, scripts/build-image.

Static checks (fast, always run): the Dockerfile takes its base image as `ARG BASE`, runs as
a user that is not root and exposes the ports of the architecture's socket table; the compose
file parses as YAML and runs the seed's commands with those ports, publishing the web port
on 127.0.0.1 only and demanding a password instead of shipping one.

The real build (`test_build_and_compose_smoke`) is marked slow AND skipped unless
ARCHITECT_TEST_IMAGE=1 is set. It runs
`scripts/build-image --run-compose`: a Debian base from debootstrap when no registry answers,
pip downloads from PyPI, a podman (or docker) build, then dashboard + 2 workers + agent up,
the workers seen through the REST API and a task run, everything removed. It takes minutes,
needs root, podman and the network (the Debian mirror and PyPI), so CI does not run it by
default; run it by hand after touching the image files:

    ARCHITECT_TEST_IMAGE=1 .venv/bin/python -m pytest -q tests/multihost/test_image.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from architect import config

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
BUILD = ROOT / "scripts" / "build-image"

# ARCHITECTURE.md §1 (sockets table) and §8 (the seed's commands): contracts
WEB_PORT = 8080
BUS_PORTS = {"heartbeat": 5555, "work": 5556, "control": 5557, "events": 5558}
SEED_COMMANDS = {"dashboard": "app.py", "worker": "workers/task_worker.py",
                 "agent": "distributed/node_agent.py"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                            if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def resolve(value: str) -> str:
    """${VAR:-default} → default; ${VAR:?message} → '' (compose refuses to run without VAR)."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "", value)


def test_ports_are_the_architecture_contract():
    """The table in ARCHITECTURE.md and the code's defaults agree (so the image can use them)."""
    cfg = config.load(env={})
    assert cfg.port == WEB_PORT
    assert [cfg.bus_port + i for i in range(4)] == list(BUS_PORTS.values())


def test_dockerfile_base_is_an_arg():
    steps = instructions(DOCKERFILE.read_text())
    assert steps[0][0] == "ARG" and steps[0][1].startswith("BASE="), \
        "the first instruction must be ARG BASE=<default> (before FROM)"
    default = steps[0][1].split("=", 1)[1]
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-bookworm)?", default), default
    froms = [args for word, args in steps if word == "FROM"]
    assert froms == ["${BASE}"], froms


def test_dockerfile_exposes_ports_runs_seed_and_not_root():
    steps = instructions(DOCKERFILE.read_text())
    exposed = {int(p) for word, args in steps if word == "EXPOSE" for p in args.split()}
    assert exposed == {WEB_PORT, *BUS_PORTS.values()}
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    copied = " ".join(args for word, args in steps if word == "COPY")
    for path in SEED_COMMANDS.values():
        assert path.split("/")[0] in copied, f"{path} is not copied into the image"
    assert "pyproject.toml" in copied, "dependencies come from pyproject.toml (one list)"
    cmd = [args for word, args in steps if word == "CMD"][-1]
    assert "app.py" in cmd and "0.0.0.0" in cmd


def test_compose_parses_and_runs_the_seed_commands():
    doc = compose()
    services = doc["services"]
    assert set(services) >= set(SEED_COMMANDS)
    for name, script in SEED_COMMANDS.items():
        svc = services[name]
        command = svc["command"]
        command = command.split() if isinstance(command, str) else command
        assert command[:2] == ["python", script], (name, command)
        assert (ROOT / script).is_file(), script
        # one image for all; each service can build it (docker compose would pull otherwise)
        assert svc["image"] == services["dashboard"]["image"]
        assert svc["build"] == services["dashboard"]["build"]
        assert resolve(svc["build"]["args"]["BASE"]).startswith("python:3.")
    dash = services["dashboard"]["command"]
    assert dash[dash.index("--host") + 1] == "0.0.0.0"
    assert int(dash[dash.index("--port") + 1]) == WEB_PORT


def test_compose_publishes_on_loopback_and_ships_no_password():
    services = compose()["services"]
    ports = [resolve(p) for p in services["dashboard"]["ports"]]
    assert ports == [f"127.0.0.1:{WEB_PORT}:{WEB_PORT}"], ports
    for name in ("worker", "agent"):
        assert "ports" not in services[name], f"{name} publishes nothing"
        env = services[name]["environment"]
        assert env["ARCHITECT_DASHBOARD_URL"] == f"http://dashboard:{WEB_PORT}"
    dash_env = services["dashboard"]["environment"]
    assert "dashboard" in dash_env["ARCHITECT_ALLOWED_HOSTS"].split(",")
    for name in SEED_COMMANDS:
        password = services[name]["environment"]["ARCHITECT_PASSWORD"]
        assert re.fullmatch(r"\$\{ARCHITECT_PASSWORD:\?[^}]+\}", password), \
            f"{name}: the password must come from the environment (required), not the file"
    # the bus ports are published only when the operator uncomments them
    assert not any(str(p).split(":")[-1] in map(str, BUS_PORTS.values())
                   for p in services["dashboard"]["ports"])
    assert "architect-data" in compose()["volumes"]


def test_dockerignore_keeps_secrets_and_junk_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for entry in (".git", ".venv", "data", "cert.pem", "key.pem", "tests"):
        assert entry in ignored, entry


def test_build_script_parses_and_explains_itself():
    assert os.access(BUILD, os.X_OK)
    subprocess.run(["bash", "-n", str(BUILD)], check=True, timeout=10)
    out = subprocess.run([str(BUILD), "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "--run-compose" in out.stdout and "--local-base" in out.stdout
    bad = subprocess.run([str(BUILD), "--no-such-flag"], capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0 and "unknown option --no-such-flag" in bad.stderr


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.environ.get("ARCHITECT_TEST_IMAGE") != "1",
                    reason="builds the image (minutes, root, podman, network): "
                           "set ARCHITECT_TEST_IMAGE=1")
def test_build_and_compose_smoke(tmp_path):
    tag = "localhost/architect:test"
    result = subprocess.run([str(BUILD), "--tag", tag, "--run-compose"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1700)
    log = result.stdout + result.stderr
    try:
        assert result.returncode == 0, log
        assert "smoke: ok: 2 workers" in log, log
        assert "succeeded as uid 10001" in log, log   # tasks run as the image's user
    finally:
        engine = "podman" if shutil.which("podman") else "docker"
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=120)
