#!/usr/bin/env bash
# Set up and run Architect on this machine (broker + local node agent, SQLite in ./data).
#   ./deploy.sh            run in the foreground (Ctrl-C stops)
#   ./deploy.sh --daemon   run in the background (pid/log in ~/.architect/up.*)
#   ./deploy.sh status     is it running?
#   ./deploy.sh stop       stop the background run
# Creates .venv and installs on first run.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/architect ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "deploy.sh: installing into .venv (first run)..." >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip >&2
  .venv/bin/pip install --quiet -e . >&2
  touch .venv/.installed
fi

args=()
for arg in "$@"; do
  case "$arg" in
    stop) args+=(--stop) ;;
    status) args+=(--status) ;;
    *) args+=("$arg") ;;
  esac
done
exec .venv/bin/architect up "${args[@]}"
