"""Tier 1: click's own shell completion for `architect` (docs/CONFIG.md, README)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("shell,marker", [("bash", "_architect_completion()"),
                                          ("zsh", "#compdef architect"),
                                          ("fish", "complete --no-files --command architect")])
def test_the_completion_script_is_produced(shell, marker):
    done = subprocess.run([sys.executable, "-m", "architect"], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "_ARCHITECT_COMPLETE": f"{shell}_source"})
    assert done.returncode == 0 and marker in done.stdout, done.stdout[:300] + done.stderr


def test_completion_answers_with_commands():
    env = {**os.environ, "_ARCHITECT_COMPLETE": "bash_complete", "COMP_WORDS": "architect back",
           "COMP_CWORD": "1"}
    done = subprocess.run([sys.executable, "-m", "architect"], capture_output=True, text=True,
                          timeout=30, env=env)
    assert "plain,backup" in done.stdout.splitlines()
