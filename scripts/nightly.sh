#!/usr/bin/env bash
# The nightly job for cron or a systemd timer: recompute the baseline, re-score every post, and
# write a snapshot into a dated folder, keeping the last NIGHTLY_KEEP (14).
# Uses the same settings as every monitor command: MONITOR_DB or MONITOR_CHROMA_URL,
# MONITOR_COLLECTION, MONITOR_SNAPSHOTS (default ./snapshots). Extra arguments go to
# `monitor nightly`. Exit 75: another run (or, embedded, another writer) still holds the lock.
# Relative paths are the caller's: run it from anywhere, it uses the repo's .venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$root/.venv/bin/monitor" ] || "$root/scripts/setup.sh"
exec "$root/.venv/bin/monitor" nightly --keep "${NIGHTLY_KEEP:-14}" "$@"
