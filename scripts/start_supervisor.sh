#!/usr/bin/env bash
# Start the day-trading supervisor on Linux or macOS (the counterpart of start_supervisor.bat).
#
#   scripts/start_supervisor.sh [supervisor.py arguments]   e.g. --date 2025-11-26 --speed 500
#
# Runs from the repository root whatever the current folder; installs uv if it is
# missing; uv creates the Python environment from uv.lock on first run. The supervisor
# keeps market time in America/New_York itself, so the machine's time zone does not
# matter; cron and systemd examples are in scripts/examples/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  for dir in "$HOME/.local/bin" "$HOME/.cargo/bin"; do
    if [ -x "$dir/uv" ]; then PATH="$dir:$PATH"; fi
  done
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "uv not found: installing it (https://docs.astral.sh/uv/)" >&2
  if command -v curl >/dev/null 2>&1; then
    curl -LsSf https://astral.sh/uv/install.sh | sh
  else
    python3 -m pip install --user uv
  fi
  PATH="$HOME/.local/bin:$PATH"
fi

# exec: signals from a terminal (Ctrl+C), cron or systemd reach the supervisor directly.
exec uv run supervisor.py "$@"
