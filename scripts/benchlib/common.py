"""What every benchmark script shares: percentiles, the result table, stopping processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path


_ROOT = Path(__file__).resolve().parents[2]   # the repository


def pct(values, q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def report(result: dict, out: str) -> None:
    """Print `result` as a metric / value table and write it to `out` as JSON."""
    width = max(map(len, result))
    print(f"\n{'metric'.ljust(width)}  value")
    print(f"{'-' * width}  ------")
    for key, value in result.items():
        print(f"{key.ljust(width)}  {value}")
    Path(out).write_text(json.dumps(result, indent=2))


def stop(procs) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after 15 s."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def commit() -> str:
    """The commit measured (+ "-dirty" when the code in the work tree differs from it)."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                "architect", "tests"], cwd=_ROOT, text=True,
                               capture_output=True, timeout=10).stdout
        return head + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def write_results(results: dict, out: str, measured: str) -> None:
    """Write the JSON, warning when the code changed while it was measured."""
    now = commit()
    if now != measured:
        print(f"WARNING: the code changed during the run ({measured} -> {now})")
    Path(out).write_text(json.dumps(results, indent=2))


def master_dirs(prefix: str):
    """A fresh master's settings for a benchmark: (tmp dir, first bus port, env, Config) with
    its data and state dirs in tmp, five free ports, no config file, warnings-only logs; the
    database's folder made."""
    import tempfile

    from architect import config
    from tests.helpers import free_port_block
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    base = free_port_block(5)
    env = dict(os.environ, ARCHITECT_BUS_PORT=str(base), ARCHITECT_DATA_DIR=str(tmp / "data"),
               ARCHITECT_STATE_DIR=str(tmp / "state"), ARCHITECT_CONFIG=str(tmp / "none.json"),
               ARCHITECT_LOG_LEVEL="WARNING")
    cfg = config.load(env=env)
    Path(cfg.db_path).parent.mkdir(parents=True, exist_ok=True)
    return tmp, base, env, cfg
