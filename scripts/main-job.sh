#!/usr/bin/env bash
# The main job, end to end on the embedded default (no server, no API key), or against a Chroma
# server when MONITOR_CHROMA_URL is set (http://HOST:PORT; MONITOR_COLLECTION picks the collection):
#   ingest sci.* training posts -> baseline -> held-out sci.* posts and off-topic posts arrive
#   -> stats -> flagged outliers -> snapshot report.
# Uses ../shared/data/20news-bydate.tar.gz when present, else the real sample in the repo.
# Settings (environment): MONITOR_ARCHIVE, MONITOR_DB (default monitor-db), SNAPSHOT_DIR
# (default snapshot), TRAIN_PER_GROUP (150), TEST_PER_GROUP (50), OFFTOPIC_PER_GROUP (3).
# Relative paths (the database, the snapshot, MONITOR_ARCHIVE) are the caller's folder's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"

if [ -n "${MONITOR_ARCHIVE:-}" ]; then
  archive=$MONITOR_ARCHIVE
  [ -e "$archive" ] || { echo "main-job: MONITOR_ARCHIVE=$archive: no such file or folder" >&2; exit 1; }
else
  archive=$(realpath -m "$root/../shared/data/20news-bydate.tar.gz")
  [ -f "$archive" ] || archive=$root/monitor/data/20news-sample.tar.gz
fi
export MONITOR_DB=${MONITOR_DB:-monitor-db}
snapshot=${SNAPSHOT_DIR:-snapshot}
monitor=$root/.venv/bin/monitor

step() { printf '\n== %s\n' "$*" >&2; }

step "store: ${MONITOR_CHROMA_URL:-embedded folder $MONITOR_DB}, collection ${MONITOR_COLLECTION:-posts}"
step "1. ingest sci.* training posts (${TRAIN_PER_GROUP:-150} per group) from $archive"
$monitor ingest "$archive" --split train --category 'sci.*' --per-category "${TRAIN_PER_GROUP:-150}"

step "2. baseline: per-category reference posts, calibrated thresholds (kept if one exists)"
$monitor baseline --if-missing

step "3. arrivals: held-out sci.* posts (${TEST_PER_GROUP:-50} per group), checked as they arrive"
$monitor ingest "$archive" --split test --category 'sci.*' --per-category "${TEST_PER_GROUP:-50}"

step "4. arrivals: off-topic posts from the 16 other groups, filed under a random sci.* group"
$monitor ingest "$archive" --split test --exclude-category 'sci.*' --per-category "${OFFTOPIC_PER_GROUP:-3}" \
  --as-category 'sci.*'

step "5. stats"
$monitor stats

step "6. flagged outliers (the 15 most unusual)"
$monitor outliers --limit 15

step "7. snapshot"
$monitor snapshot --out "$snapshot"
