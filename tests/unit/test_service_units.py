"""Tier 1: `architect install-service` writes the setup guide's systemd units with this
installation's paths filled in; `systemd-analyze verify` accepts them (when installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ARCHITECT = Path(sys.executable).parent / "architect"


def run(*args, env=None, check=True):
    done = subprocess.run([sys.executable, "-m", "architect", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_dry_run_prints_units_with_the_paths_filled_in(tmp_path):
    data = tmp_path / "my data"
    out = run("install-service", "dashboard", "agent", "worker", "--dry-run", "--data-dir",
              str(data), "--run-as", "architect", "--dashboard", "http://10.1.2.3:8080").stdout
    assert out.count("[Service]") == 3
    for unit in ("architect-dashboard", "architect-agent", "architect-worker"):
        assert f"/etc/systemd/system/{unit}.service" in out
    exe = str(ARCHITECT) if ARCHITECT.exists() else sys.executable
    assert f"ExecStart={exe} server --host 0.0.0.0 --port 8080 --bus-host 0.0.0.0" in out
    assert f"ExecStart={exe} agent" in out and f"ExecStart={exe} worker" in out
    assert f'Environment="ARCHITECT_DATA_DIR={data.resolve()}"' in out     # quoted: a space
    assert "Environment=ARCHITECT_DASHBOARD_URL=http://10.1.2.3:8080" in out
    assert out.count("User=architect") == 3 and "TimeoutStopSec=30" in out
    assert "EnvironmentFile=-/etc/architect/dashboard.env" in out
    assert "WantedBy=multi-user.target" in out
    assert not (tmp_path / "units").exists()


def test_user_units_and_verify(tmp_path):
    units = tmp_path / "units"
    (tmp_path / "my 100% data").mkdir()           # WorkingDirectory: a space and a % in it
    done = run("install-service", "agent", "worker", "dashboard", "--user", "--prefix",
               str(units), "--data-dir", str(tmp_path / "my 100% data" / "data"))
    written = sorted(p.name for p in units.iterdir())
    assert written == ["architect-agent.service", "architect-dashboard.service",
                       "architect-worker.service"]
    text = (units / "architect-agent.service").read_text()
    assert "User=" not in text and "WantedBy=default.target" in text
    assert "systemctl --user daemon-reload" in done.stdout
    again = run("install-service", "agent", "--user", "--prefix", str(units), check=False)
    assert again.returncode == 1 and "--force" in again.stderr       # never overwritten silently
    run("install-service", "agent", "--prefix", str(units), "--force", "--run-as", "root")
    assert "User=root" in (units / "architect-agent.service").read_text()
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): the units "
                    "were written but not verified")
    # as system units (a user manager needs a login session this test does not have)
    checked = subprocess.run([verify, "verify", *map(str, sorted(units.iterdir()))],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_unknown_unit_is_refused():
    done = run("install-service", "database", "--dry-run", check=False)
    assert done.returncode == 2 and "database" in done.stderr
