#!/usr/bin/env bash
# The nightly job for cron or a systemd timer: recompute the baseline, re-score every post, and
# write a snapshot into a dated folder, keeping the last NIGHTLY_KEEP (14).
# Uses the same settings as every monitor command: MONITOR_DB or MONITOR_CHROMA_URL,
# MONITOR_COLLECTION, MONITOR_SNAPSHOTS (default ./snapshots). Extra arguments go to
# `monitor nightly`. Exit 75: another run (or, embedded, another writer) still holds the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/monitor ] || scripts/setup.sh
exec .venv/bin/monitor nightly --keep "${NIGHTLY_KEEP:-14}" "$@"
