#!/usr/bin/env python3
"""The task worker as in the setup guide: python3 workers/task_worker.py [--daemon|--status|--stop]
Runs `architect worker`; it finds the dashboard from ARCHITECT_DASHBOARD_URL or
~/.architect/config.json ("dashboard_url", "node_name", "capabilities")."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from architect.wrapper import run  # noqa: E402

run(["worker", *sys.argv[1:]])
