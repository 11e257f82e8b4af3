"""`architect logs [NAME] [-f] [-n N]`: a daemon's log file (rotated ones too), followed."""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from pathlib import Path

import click

from architect.cli.common import load_config
from architect.logsetup import log_files

NAMES = ("broker", "server", "up", "web", "agent", "worker")
FOLLOW_POLL = 0.25


def last_lines(files: list[Path], count: int) -> list[str]:
    """The last `count` lines across the files (oldest file first)."""
    out: deque[str] = deque(maxlen=count)
    if count <= 0:
        return []
    for path in files:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    out.append(line)
        except FileNotFoundError:
            continue
    return list(out)


def follow(path: Path, stop=lambda: False, poll: float = FOLLOW_POLL):
    """Yield lines appended to `path` from its current end, across rotations (the file is
    renamed and a new one made: the old one is read to its end, then the new one from its
    start). A file that does not exist yet is read from its start once it does."""
    f, ino = None, None
    try:
        f = open(path, errors="replace")
        ino = os.fstat(f.fileno()).st_ino
        f.seek(0, os.SEEK_END)
    except FileNotFoundError:
        pass
    try:
        while not stop():
            if f is None:
                try:
                    f = open(path, errors="replace")
                    ino = os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
            line = f.readline()
            if line:
                yield line
                continue
            try:
                rotated = os.stat(path).st_ino != ino
            except FileNotFoundError:
                rotated = False
            if rotated:
                rest = f.read()
                if rest:
                    yield rest
                f.close()
                f = None
                continue
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()


@click.command()
@click.argument("name", required=False, type=click.Choice(NAMES))
@click.option("-f", "--follow", "do_follow", is_flag=True, help="Keep printing lines as they come "
              "(across rotations); Ctrl-C stops.")
@click.option("-n", "--lines", "count", type=click.IntRange(0, 1_000_000), default=100,
              show_default=True, help="Lines to print first (from the rotated files too).")
@click.pass_context
def logs(ctx, name, do_follow, count):
    """Print a daemon's log: LOG_DIR/NAME.log and its rotated files (NAME.log.1 …), where
    `architect NAME --daemon` writes (LOG_DIR: ARCHITECT_LOG_DIR, else the state dir,
    ~/.architect or ARCHITECT_STATE_DIR). Without NAME: the one daemon that has a log.
    In the foreground, and under systemd, the daemons log to stderr instead (journalctl)."""
    cfg = load_config(ctx)
    directory = cfg.log_path
    if name is None:
        present = [n for n in NAMES if log_files(directory, n)]
        if len(present) != 1:
            raise click.UsageError(
                f"name one of: {', '.join(present)} (logs in {directory})" if present else
                f"no daemon logs in {directory} (daemons write them with --daemon)")
        name = present[0]
    files = log_files(directory, name)
    if not files and not do_follow:
        raise click.ClickException(f"no log for {name} in {directory} (is it run with --daemon, "
                                   "or under systemd: journalctl -u architect-...?)")
    for line in last_lines(files, count):
        click.echo(line, nl=False)
    if do_follow:
        sys.stdout.flush()
        try:
            for line in follow(directory / f"{name}.log"):
                click.echo(line, nl=False)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass
