#!/bin/sh
# Quarry's container entrypoint: one image, every role, chosen by QUARRY_ROLE.
#
#   QUARRY_ROLE=ide      the Factory (exactly one): quarry serve --role ide
#   QUARRY_ROLE=serve    a serve replica (N):       quarry serve --role serve
#   QUARRY_ROLE=worker   a queue worker (M):        quarry worker (health on QUARRY_WORKER_PORT)
#   QUARRY_ROLE=all      everything in one process: quarry serve --role all
#   QUARRY_ROLE=migrate  apply pending migrations and exit (the one-off migrate job)
#
#   entrypoint.sh wait-for-schema   exit 0 once the database schema is this release's
#                                   head (an initContainer before any role runs with
#                                   QUARRY_SKIP_MIGRATIONS=1); gives up after
#                                   QUARRY_SCHEMA_WAIT_SECONDS (default 600)
#   entrypoint.sh healthcheck       exit 0 when this container's /healthz answers 200
#
# Extra arguments are passed to the quarry command. PID 1 is tini (the image's
# ENTRYPOINT); this script `exec`s, so Quarry is tini's direct child and receives
# SIGTERM itself (graceful drain) while tini reaps git and compile children.
set -eu

role="${QUARRY_ROLE:-serve}"
: "${QUARRY_HOST:=0.0.0.0}"
: "${QUARRY_PORT:=8000}"
: "${QUARRY_WORKER_PORT:=9100}"
export QUARRY_HOST QUARRY_PORT QUARRY_WORKER_PORT

# The root filesystem is read-only: temporary files (DuckDB spill, git, uploads) go to
# the writable data volume.
if [ -n "${TMPDIR:-}" ]; then
    mkdir -p "$TMPDIR"
fi

fail() {
    echo "entrypoint: $*" >&2
    exit 64
}

healthcheck() {
    case "$role" in
        migrate) exit 0 ;;
        worker) port="$QUARRY_WORKER_PORT" ;;
        *) port="$QUARRY_PORT" ;;
    esac
    exec python -c '
import sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=4) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as exc:
    print(f"healthcheck: {exc}", file=sys.stderr)
    sys.exit(1)
' "$port"
}

wait_for_schema() {
    [ -n "${QUARRY_DATABASE_URL:-}" ] || fail "wait-for-schema needs QUARRY_DATABASE_URL"
    exec python -c '
import os, sys, time
from quarry.store.db import create_state_engine
from quarry.store.migrate import check_schema

deadline = time.monotonic() + float(os.environ.get("QUARRY_SCHEMA_WAIT_SECONDS", "600"))
engine = create_state_engine(os.environ["QUARRY_DATABASE_URL"])
last = None
while True:
    try:
        print(f"wait-for-schema: schema current at {check_schema(engine)}")
        sys.exit(0)
    except Exception as exc:  # not migrated yet, or the database not up yet
        if str(exc) != last:
            print(f"wait-for-schema: {exc}", file=sys.stderr)
            last = str(exc)
    if time.monotonic() > deadline:
        print("wait-for-schema: gave up (QUARRY_SCHEMA_WAIT_SECONDS)", file=sys.stderr)
        sys.exit(1)
    time.sleep(2)
'
}

case "${1:-}" in
    healthcheck) healthcheck ;;
    wait-for-schema) wait_for_schema ;;
esac

case "$role" in
    ide | serve | all)
        exec quarry serve --role "$role" --host "$QUARRY_HOST" --port "$QUARRY_PORT" "$@"
        ;;
    worker)
        exec quarry worker "$@"
        ;;
    migrate)
        # `migrate` is a job, not a Settings role: the quarry CLI must not see it.
        unset QUARRY_ROLE
        exec quarry migrate "$@"
        ;;
    *)
        fail "QUARRY_ROLE=$role is not one of: ide, serve, worker, all, migrate"
        ;;
esac
