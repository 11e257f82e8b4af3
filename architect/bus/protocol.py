"""Protocol constants shared by the master and the nodes: one definition of each, no logic.

    task states   [waiting →] [scheduled →] queued → assigned → running → succeeded | failed | timed_out |
                  cancelled; a waiting task past its expiry ends expired
    health levels healthy < warning < critical < offline  (SEVERITY 0-3)
    node names    NODE_NAME_RE (1-128 letters, digits, '_' or '-'; no dots or spaces: they
                  are event-topic segments), never one of RESERVED_NAMES (API paths)

The broker (tasks, health, registry), the REST API and its OpenAPI document, the UI and the
CLI import these; tuples keep their order because lists and enums are built from them.
"""

from __future__ import annotations

import re

# task states (ARCHITECTURE.md §6)
SCHEDULED, QUEUED, ASSIGNED, RUNNING = "scheduled", "queued", "assigned", "running"
WAITING = "waiting"        # for the tasks it depends on (depends_on) to succeed
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED = "succeeded", "failed", "timed_out", "cancelled"
EXPIRED = "expired"        # never ran: still waiting when its expires_at came
STATES = (WAITING, SCHEDULED, QUEUED, ASSIGNED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT,
          CANCELLED, EXPIRED)
FINAL_STATES = (SUCCEEDED, FAILED, TIMED_OUT, CANCELLED)   # also a worker's result states
FINAL = frozenset(FINAL_STATES + (EXPIRED,))
UNFINISHED = (WAITING, SCHEDULED, QUEUED, ASSIGNED, RUNNING)

# node health levels (ARCHITECTURE.md §4), mildest first
HEALTHY, WARNING, CRITICAL, OFFLINE = "healthy", "warning", "critical", "offline"
LEVELS = (HEALTHY, WARNING, CRITICAL, OFFLINE)
SEVERITY = {HEALTHY: 0, WARNING: 1, CRITICAL: 2, OFFLINE: 3}

# node names
NODE_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}"
NODE_NAME_RE = re.compile(NODE_NAME_PATTERN)
RESERVED_NAMES = ("health", "alerts", "recommend", "distribution")  # paths under /api/nodes/
