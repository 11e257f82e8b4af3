#!/usr/bin/env bash
# Set up and run Architect on this machine: broker, web dashboard + REST API on :8080,
# a node agent and a task worker, SQLite in ./data. Creates .venv and installs on first run.
#   ./deploy.sh                 foreground (Ctrl-C stops)      http://127.0.0.1:8080
#   ./deploy.sh --ssl           HTTPS from cert.pem / key.pem (see README for openssl)
#   ./deploy.sh --daemon        background (pid/log in ~/.architect/up.*)
#   ./deploy.sh status | stop   is it running? / stop the background run
#   other flags go to `architect up` (e.g. --host 0.0.0.0 --port 9090); see --help
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/architect ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "deploy.sh: installing into .venv ..." >&2
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
