#!/usr/bin/env python3
"""Write docs/CLI.md, the CLI reference, from click itself: every command and group with its
help text, usage and options, in the order `architect --help` lists them.

    .venv/bin/python scripts/gen_cli_reference.py            # rewrite docs/CLI.md
    .venv/bin/python scripts/gen_cli_reference.py --check    # exit 1 if it is out of date

tests/unit/test_cli_reference.py runs the check, so the reference cannot drift from --help.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "docs" / "CLI.md"

HEAD = """# CLI reference

Generated from click by `scripts/gen_cli_reference.py`; do not edit by hand (a test checks
that it matches `--help`). Every command also answers `--help`. Shell completion:
[OPERATIONS.md](OPERATIONS.md#shell-completion).

"""


def _help(cmd: click.Command, ctx: click.Context) -> str:
    formatter = ctx.make_formatter()
    cmd.format_help(ctx, formatter)
    return formatter.getvalue().rstrip()


def _walk(cmd: click.Command, path: list[str], parent: click.Context | None, out: list[str]):
    ctx = click.Context(cmd, info_name=path[-1], parent=parent, terminal_width=96,
                        max_content_width=96)
    depth = min(len(path) + 1, 4)
    out.append(f"{'#' * depth} `{' '.join(path)}`\n")
    out.append("```text\n" + _help(cmd, ctx) + "\n```\n")
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                _walk(sub, path + [name], ctx, out)


def render() -> str:
    from architect.cli.main import main
    out: list[str] = [HEAD]
    _walk(main, ["architect"], None, out)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run scripts/gen_cli_reference.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
