"""Support for the setup guide's scripts (app.py, distributed/node_agent.py,
workers/task_worker.py): run an `architect` command from a source checkout.

If the running python lacks the dependencies but ./.venv (made by ./deploy.sh) has them, the
script re-runs itself with .venv/bin/python; else it says what to install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str]) -> None:
    try:
        import msgpack  # noqa: F401
        import zmq  # noqa: F401
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        in_venv = Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()
        if venv_python.exists() and not in_venv and not os.environ.get("ARCHITECT_WRAPPER_REEXEC"):
            os.environ["ARCHITECT_WRAPPER_REEXEC"] = "1"
            os.execv(str(venv_python), [str(venv_python), *sys.argv])
        sys.exit("architect: dependencies missing; run `pip install -r requirements.txt` "
                 "(or ./deploy.sh, which makes .venv)")
    from architect.cli import main
    main(args=argv, prog_name=Path(sys.argv[0]).name)
