#!/usr/bin/env bash
# The main job: build and install pg_tviews, start a persistent local demo
# cluster (as the unprivileged server user), load the demo read model, run a
# background workload on it (`tviews workload`: shop transactions from several
# sessions, and now and then a prepared transaction), and open the live
# console (`tviews top`) on it. Leaving the console (q, or Ctrl-C) stops the
# workload and prints how to reconnect; the cluster keeps running.
# Safe to rerun: an existing demo cluster and database are reused.
#
#   scripts/demo.sh                # set up (or reuse) the demo, open the console
#   scripts/demo.sh --no-console   # for scripts: set up, run the workload for 10 s, print
#                                  # how to connect, exit 0 (also what happens when stdin
#                                  # or stdout is not a terminal)
#   scripts/demo.sh --reset        # throw the demo database away and reload it (combines
#                                  # with --no-console)
#   scripts/demo.sh --stop         # stop the workload and the demo cluster
#
# Environment:
#   TVIEWS_SKIP_INSTALL=1          skip `cargo pgrx install`: use the pg_tviews already
#                                  installed (the CLI is still built)
#   TVIEWS_DEMO_PORT=5499          the demo cluster's port
#   TVIEWS_DEMO_SECONDS=10         how long --no-console runs the workload (0: not at all)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
CALLER_DIR="$PWD"
cd "$REPO_ROOT"

DEMO_DIR="$PG_WORK_ROOT/demo"
DEMO_PORT="${TVIEWS_DEMO_PORT:-5499}"
DEMO_DB="tviews_demo"
DEMO_SOCK="$DEMO_DIR/sock"
PG_CTL="$PG_BIN/pg_ctl"
TVIEWS="$REPO_ROOT/target/debug/tviews"
WORKLOAD_LOG="$DEMO_DIR/workload.log"   # the last run's
WORKLOAD_PID="$DEMO_DIR/workload.pid"
NO_CONSOLE_SECONDS="${TVIEWS_DEMO_SECONDS:-10}"
CONN=(-h "$DEMO_SOCK" -p "$DEMO_PORT" -U postgres -d "$DEMO_DB")
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO_SOCK" -p "$DEMO_PORT" -U postgres)

usage() { die "usage: scripts/demo.sh [--no-console] [--reset] | --stop"; }

cluster_running() { as_pg "$PG_CTL" -D "$DEMO_DIR/data" status >/dev/null 2>&1; }

# Stops the background workload of this or an earlier run, if it is still
# there, and waits for it: it rolls back its pending prepared transaction
# before it exits.
stop_workload() {
  local pid
  pid="$(cat "$WORKLOAD_PID" 2>/dev/null || true)"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null && ps -o args= -p "$pid" 2>/dev/null | grep -q "tviews workload"; then
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < 400)); do
      sleep 0.1; waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      note "the workload (pid $pid) did not stop within 40 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$WORKLOAD_PID"
}

# Prints how to get back in, with paths as short as the caller's directory allows.
print_connect() {
  local tviews="$TVIEWS" demo="$REPO_ROOT/scripts/demo.sh"
  if [[ "$CALLER_DIR" == "$REPO_ROOT" ]]; then
    tviews="target/debug/tviews" demo="scripts/demo.sh"
  fi
  cat <<EOF

The demo cluster is running in $DEMO_DIR (port $DEMO_PORT):
  psql         psql -h $DEMO_SOCK -p $DEMO_PORT -U postgres $DEMO_DB
               psql "postgresql://postgres@localhost:$DEMO_PORT/$DEMO_DB"
  console      $tviews top ${CONN[*]}
  load         $tviews workload ${CONN[*]}
               (in another terminal; Ctrl-C stops it)
  try          UPDATE tb_product SET price = price + 1 WHERE pk_product = 7;
               SELECT data FROM tv_product WHERE pk_product = 7;
  again        $demo             the console and the workload
               $demo --reset     reload the demo database
               $demo --stop      stop the cluster
EOF
}

no_console=0
reset=0
stop=0
for arg in "$@"; do
  case "$arg" in
    --no-console) no_console=1 ;;
    --reset) reset=1 ;;
    --stop) stop=1 ;;
    *) usage ;;
  esac
done

if ((stop)); then
  ((no_console == 0 && reset == 0)) || usage
  stop_workload
  as_pg "$PG_CTL" -D "$DEMO_DIR/data" stop -m fast >/dev/null 2>&1 || true
  echo "demo cluster stopped"; exit 0
fi
if ((no_console == 0)) && ! [[ -t 0 && -t 1 ]]; then
  no_console=1
  note "stdin or stdout is not a terminal: running as --no-console (no live console)"
fi

phase "set-up"
bash scripts/setup.sh

# A workload left by an earlier run would hold connections (and a prepared
# transaction) across the restart and the reset below.
stop_workload

phase "build the tviews CLI"
cargo build -p tviews-cli

if [[ "${TVIEWS_SKIP_INSTALL:-0}" == 1 ]]; then
  phase "using the pg_tviews already installed (TVIEWS_SKIP_INSTALL=1)"
else
  phase "build and install pg_tviews into the system PostgreSQL"
  # Overwriting the library under a running server that has it loaded can
  # crash it: stop the demo cluster for the install, start it again below
  # (which also makes it load the new build).
  if cluster_running; then
    note "stopping the demo cluster for the install"
    as_pg "$PG_CTL" -D "$DEMO_DIR/data" stop -m fast >/dev/null
  fi
  cargo pgrx install -p pg_tviews --pg-config "$PG_CONFIG"
fi

phase "demo cluster in $DEMO_DIR (port $DEMO_PORT)"
if [[ ! -f "$DEMO_DIR/data/PG_VERSION" ]]; then
  as_root mkdir -p "$DEMO_DIR"
  [[ $EUID -eq 0 ]] && chown "$PG_OS_USER" "$DEMO_DIR"
  as_pg "$PG_BIN/initdb" -D "$DEMO_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_pg mkdir -p "$DEMO_SOCK"
  as_pg chmod 0755 "$DEMO_SOCK"
  cat <<CONF | as_pg tee -a "$DEMO_DIR/data/postgresql.conf" >/dev/null
# pg_tviews demo cluster
port = $DEMO_PORT
listen_addresses = 'localhost'
unix_socket_directories = '$DEMO_SOCK'
shared_preload_libraries = 'pg_tviews'
max_prepared_transactions = 20
CONF
fi
if cluster_running; then
  note "already running"
else
  as_pg "$PG_CTL" -D "$DEMO_DIR/data" -l "$DEMO_DIR/server.log" -w start >/dev/null
fi

if ((reset)) && [[ -n "$("${PSQL[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DEMO_DB'")" ]]; then
  phase "dropping the demo database (--reset)"
  # Prepared transactions keep a database from being dropped, even WITH (FORCE).
  "${PSQL[@]}" -d "$DEMO_DB" -Atc "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()" |
    while IFS= read -r gid; do
      "${PSQL[@]}" -d "$DEMO_DB" -v gid="$gid" <<<"ROLLBACK PREPARED :'gid';"
      note "rolled back prepared transaction $gid"
    done
  "${PSQL[@]}" -d postgres -c "DROP DATABASE $DEMO_DB WITH (FORCE)"
fi
if [[ -z "$("${PSQL[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$DEMO_DB'")" ]]; then
  phase "loading the demo read model (demo/schema.sql)"
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE $DEMO_DB"
  "${PSQL[@]}" -d "$DEMO_DB" -c "CREATE EXTENSION pg_tviews"
  "${PSQL[@]}" -d "$DEMO_DB" -f demo/schema.sql
else
  "${PSQL[@]}" -d "$DEMO_DB" -c "ALTER EXTENSION pg_tviews UPDATE" 2>/dev/null || true
fi

phase "a write, refreshed in its own transaction"
"${PSQL[@]}" -d "$DEMO_DB" <<'SQL'
UPDATE tb_category SET name = 'Category 1 (renamed at ' || to_char(now(), 'HH24:MI:SS') || ')' WHERE pk_category = 1;
SELECT data->'category'->>'name' AS "tv_product 1: category" FROM tv_product WHERE pk_product = 20;
SELECT count(*) AS "TVIEWs exact (0 = none differ)" FROM tviews.tview WHERE pg_tviews_diff(relid::text) <> 0;
SQL

if ((no_console)); then
  if ((NO_CONSOLE_SECONDS > 0)); then
    phase "workload for $NO_CONSOLE_SECONDS s (log: $WORKLOAD_LOG)"
    "$TVIEWS" workload "${CONN[@]}" --seconds "$NO_CONSOLE_SECONDS" --prepared-every 3 2>&1 | tee "$WORKLOAD_LOG"
  fi
  print_connect
  exit 0
fi

phase "workload in the background (log: $WORKLOAD_LOG), live console in front"
"$TVIEWS" workload "${CONN[@]}" >"$WORKLOAD_LOG" 2>&1 &
echo $! >"$WORKLOAD_PID"
saved_tty="$(stty -g 2>/dev/null || true)"
finish() {
  local code=$?
  trap - EXIT INT TERM HUP
  # The console restores the terminal itself; this is for a console that was
  # killed outright.
  [[ -n "$saved_tty" ]] && stty "$saved_tty" 2>/dev/null || true
  stop_workload
  echo
  echo "Console closed, workload stopped:"
  tail -n 1 "$WORKLOAD_LOG" 2>/dev/null | sed 's/^tviews workload: /  /' || true
  print_connect
  exit "$code"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# Give the workload a moment to connect, so the first screen already moves.
sleep 1
"$TVIEWS" top "${CONN[@]}"
