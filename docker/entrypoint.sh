#!/bin/sh
# The monitor container: wait for the Chroma server, then run the nightly job on a schedule.
# Environment:
#   MONITOR_CHROMA_URL     the server (compose: http://chroma:8000); required
#   MONITOR_SNAPSHOTS      where dated snapshots go (default /snapshots)
#   NIGHTLY_KEEP           dated snapshots to keep (default 14)
#   NIGHTLY_AT             UTC time of day HH:MM for each run (default 02:30)
#   NIGHTLY_ONCE=1         run once now and exit (a manual run, or a test)
#   MONITOR_WAIT_SECONDS   how long to wait for the server's heartbeat (default 120)
# A run that fails is logged and the loop goes on to the next day; exit code 75 means another
# run still held the lock.
set -eu
: "${MONITOR_CHROMA_URL:?set MONITOR_CHROMA_URL (e.g. http://chroma:8000)}"
export MONITOR_CHROMA_URL
export MONITOR_SNAPSHOTS="${MONITOR_SNAPSHOTS:-/snapshots}"
keep="${NIGHTLY_KEEP:-14}"
at="${NIGHTLY_AT:-02:30}"
wait_s="${MONITOR_WAIT_SECONDS:-120}"

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) monitor: $*" >&2; }

# PID 1 in a container gets no default signal handling: stop at once on docker stop / Ctrl-C,
# and take the running child (a sleep, the heartbeat wait, a nightly run) along. Children run in the
# background and are waited for, because a shell runs its trap only once a foreground command ends.
child=
trap 'log "stopping"; [ -z "$child" ] || kill "$child" 2>/dev/null; exit 143' TERM INT
in_child() {  # run "$@" as the interruptible child; returns its exit status
  "$@" &
  child=$!
  status=0
  wait "$child" || status=$?
  child=
  return "$status"
}

# Check the settings before waiting for anything: a typo must not become a restart loop.
case "$at" in
  [01][0-9]:[0-5][0-9] | 2[0-3]:[0-5][0-9]) ;;
  *) echo "monitor: NIGHTLY_AT must be HH:MM (UTC, 00:00-23:59), got '$at'" >&2; exit 2 ;;
esac
case "$keep" in
  '' | *[!0-9]* | 0) echo "monitor: NIGHTLY_KEEP must be a whole number of at least 1, got '$keep'" >&2; exit 2 ;;
esac
case "$wait_s" in
  '' | *[!0-9]*) echo "monitor: MONITOR_WAIT_SECONDS must be a whole number of seconds, got '$wait_s'" >&2; exit 2 ;;
esac
python - "$MONITOR_CHROMA_URL" <<'PY' || exit 2
import sys
from monitor.errors import MonitorError
from monitor.store import normalise_url
try:
    normalise_url(sys.argv[1])
except MonitorError as exc:
    sys.exit(f"monitor: MONITOR_CHROMA_URL: {exc}")
PY

# Waits for the server's heartbeat (run as `python -c`, so that the trap's kill reaches it).
WAIT_FOR_SERVER='
import sys, time, urllib.request
url, limit = sys.argv[1].rstrip("/"), float(sys.argv[2])
deadline = time.monotonic() + limit
while True:
    try:
        with urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    if time.monotonic() > deadline:
        print(f"monitor: no Chroma server answering at {url}/api/v2/heartbeat after {limit:.0f}s", file=sys.stderr)
        sys.exit(1)
    time.sleep(1)
'
wait_for_server() {
  in_child python -c "$WAIT_FOR_SERVER" "$MONITOR_CHROMA_URL" "$wait_s"
}

seconds_until() {  # seconds from now until the next HH:MM UTC
  python - "$1" <<'PY'
import sys
from datetime import UTC, datetime, timedelta
h, m = (int(x) for x in sys.argv[1].split(":"))
now = datetime.now(UTC)
nxt = now.replace(hour=h, minute=m, second=0, microsecond=0)
if nxt <= now:
    nxt += timedelta(days=1)
print(int((nxt - now).total_seconds()))
PY
}

run() {
  log "nightly run against $MONITOR_CHROMA_URL into $MONITOR_SNAPSHOTS"
  in_child monitor nightly --keep "$keep"
}

wait_for_server
if [ "${NIGHTLY_ONCE:-0}" = "1" ]; then
  status=0
  run || status=$?
  exit "$status"
fi
while true; do
  pause=$(seconds_until "$at")
  log "next nightly run at $at UTC (in ${pause}s)"
  in_child sleep "$pause"
  wait_for_server || continue
  run || log "nightly run failed (exit $?); next one tomorrow"
done
