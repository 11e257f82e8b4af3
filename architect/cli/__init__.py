"""The `architect` command line (click). Thin: commands build a Config, call the library,
and turn domain errors into one-line click errors."""

from architect.cli.main import main

__all__ = ["main"]
