#!/usr/bin/env python3
"""The node agent as in the setup guide:
    python3 distributed/node_agent.py --dashboard http://master-ip:8080 [--daemon|--status|--stop]
Runs `architect agent`; the dashboard URL may also come from ARCHITECT_DASHBOARD_URL or
~/.architect/config.json."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from architect.wrapper import run  # noqa: E402

run(["agent", *sys.argv[1:]])
