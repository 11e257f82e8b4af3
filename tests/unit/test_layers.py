"""Layering (ARCHITECTURE.md §9), checked on the source: every module under architect/ is
parsed with `ast` and each import — at module level or inside a function — is held against
the rules of the side the module is on.

    master side   architect/broker, architect/api, architect/ui, architect/client.py
                  (and its parts, architect/client_*.py)
                  never import architect.agent
    node side     architect/agent  never imports architect.broker, architect.api, architect.ui
    shared        architect/bus, architect/ssh and every other top-level module
                  (config.py, tasktypes.py, discovery.py, ...) import neither broker nor agent
    entry points  architect/cli, architect/__main__.py, architect/wrapper.py wire the sides
                  together and may import anything
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "architect"

MASTER = ("architect/broker/", "architect/api/", "architect/ui/", "architect/client.py",
          "architect/client_")
NODE = ("architect/agent/",)
ENTRY = ("architect/cli/", "architect/__main__.py", "architect/wrapper.py")

RULES = (  # (side, paths, forbidden module prefixes); a module is on the first side it matches
    ("entry point", ENTRY, ()),
    ("master side", MASTER, ("architect.agent",)),
    ("node side", NODE, ("architect.broker", "architect.api", "architect.ui")),
    ("shared", ("architect/",), ("architect.broker", "architect.agent")),
)

# imports in files being changed by others (issue 10): each one goes when its line is fixed
PENDING = {
}


def pending(name: str, module: str) -> bool:
    return any(name == file and (module == mod or mod.startswith(module + "."))
               for file, mod in PENDING)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def package_of(path: Path) -> str:
    """The package a relative import in this file starts from (its own, for __init__.py)."""
    return ".".join(path.relative_to(ROOT).parts[:-1])


def imported(source: str, package: str) -> list[tuple[int, str]]:
    """(line, module) for every import in the source, relative ones resolved against
    `package`; for `from X import name` both X and X.name are listed (name may be a module)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                pkg = pkg[:len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")):
            out.append((node.lineno, node.args[0].value))
    return out


def side_of(path: Path):
    name = rel(path)
    for side, prefixes, forbidden in RULES:
        if name.startswith(prefixes):
            return side, forbidden
    raise AssertionError(f"{name} is on no side")


def violations(path: Path) -> list[str]:
    side, forbidden = side_of(path)
    found = []
    for line, module in imported(path.read_text(), package_of(path)):
        for prefix in forbidden:
            if (module == prefix or module.startswith(prefix + ".")) \
                    and not pending(rel(path), module):
                found.append(f"{rel(path)}:{line} ({side}) imports {module}")
    return sorted(set(found))


def test_the_rules_see_every_side():
    sides = {side_of(p)[0] for p in modules()}
    assert sides == {"entry point", "master side", "node side", "shared"}
    assert side_of(PACKAGE / "config.py")[0] == "shared"
    assert side_of(PACKAGE / "bus" / "protocol.py")[0] == "shared"
    assert side_of(PACKAGE / "client.py")[0] == "master side"
    assert side_of(PACKAGE / "client_workflows.py")[0] == "master side"


def test_imports_are_found_wherever_they_are():
    source = ("import architect.agent.worker\n"
              "def f():\n"
              "    from architect.agent import executors\n"
              "    from ..agent.metrics import collect\n"
              "    from . import placement\n"
              "    importlib.import_module('architect.agent.node_agent')\n")
    found = {m for _, m in imported(source, "architect.broker")}
    assert {"architect.agent.worker", "architect.agent", "architect.agent.executors",
            "architect.agent.metrics", "architect.broker.placement",
            "architect.agent.node_agent"} <= found
    assert package_of(PACKAGE / "broker" / "tasks.py") == "architect.broker"
    assert package_of(PACKAGE / "broker" / "__init__.py") == "architect.broker"


@pytest.mark.parametrize("path", modules(), ids=rel)
def test_layering(path):
    assert violations(path) == []
