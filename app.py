#!/usr/bin/env python3
"""The dashboard (master) as in the setup guide: python3 app.py --host 0.0.0.0 --port 8080

Runs `architect server`: the broker and the web server (dashboard, REST API). With --host
beyond loopback the bus binds there too (unless ARCHITECT_BUS_HOST says otherwise), so
nodes can reach it, and the web server asks for a login (see README).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from architect.wrapper import run  # noqa: E402

args = sys.argv[1:]
if "--host" in args and "ARCHITECT_BUS_HOST" not in os.environ and "--bus-host" not in args:
    host = args[args.index("--host") + 1] if args.index("--host") + 1 < len(args) else ""
    if host:
        args += ["--bus-host", host]
run(["server", *args])
