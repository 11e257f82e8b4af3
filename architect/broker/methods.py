"""What a control method needs: the role that may call it and whether it writes.

Every handler table (handlers.py, task_handlers.py, views.py, keys.py, ssh_handlers.py,
accounts.py) maps a wire name to a Method; this is the only list of who may do what
(ARCHITECTURE.md §10). A method that writes makes the next commit an fsync, its reply waits
for that commit, and it leaves an audit row.

Roles: *viewer* reads; *operator* reads, runs tasks and drains; *admin* does everything.
*node* (a worker machine's bus key) is apart: it may call only methods marked node=True, and
those under its own name only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

VIEWER, OPERATOR, ADMIN, NODE = "viewer", "operator", "admin", "node"
ROLES = (NODE, VIEWER, OPERATOR, ADMIN)        # bus keys may hold any of these
WEB_ROLES = (VIEWER, OPERATOR, ADMIN)          # web users and API tokens
_RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


@dataclass(frozen=True)
class Method:
    fn: Callable             # fn(broker, params, ctx) → result, or a params.Deferred
    role: str = VIEWER       # least role that may call it
    writes: bool = False     # changes state: durable commit before the reply, audited
    node: bool = False       # a node key may call it too (for its own name)


def read(fn, role: str = VIEWER, node: bool = False) -> Method:
    return Method(fn, role, False, node)


def write(fn, role: str = OPERATOR, node: bool = False) -> Method:
    return Method(fn, role, True, node)


def allowed(caller_role: str, method: Method) -> bool:
    """May a caller with this role call this method?"""
    if caller_role == NODE:
        return method.node
    return _RANK.get(caller_role, 0) >= _RANK[method.role]


def at_least(role: str, wanted: str) -> bool:
    """Role order for web roles (node is below everything here)."""
    return _RANK.get(role, 0) >= _RANK[wanted]


@dataclass(frozen=True)
class Caller:
    """Who sent a control request. `name` is the bus key's name (a node key's name is its
    node's name), or `web:USER` for a web user the master's own key speaks for; `via` is the
    key that carried it; `addr` where it came from."""
    name: str
    role: str
    via: str = ""
    addr: str = ""

    def label(self) -> str:
        return self.name if not self.via or self.via == self.name else f"{self.name} (via {self.via})"


LOCAL = Caller("local", ADMIN, "local", "")   # a plain bus: only the data dir's owner reaches it


@dataclass(frozen=True)
class Ctx:
    """What a handler knows of the request besides its params: the time, who sent it, and
    how to answer it later (the routing envelope and the request id, for a Deferred)."""
    now: float
    caller: Caller = LOCAL
    token: object = None
    req_id: object = None
