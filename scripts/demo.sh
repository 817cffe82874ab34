#!/usr/bin/env bash
# The main job: build and install pg_tviews, start a persistent local demo
# cluster (as the unprivileged server user), load the demo read model, and
# say how to connect. Safe to rerun: an existing demo cluster is reused.
#
#   scripts/demo.sh            # set up (or reuse) and start the demo
#   scripts/demo.sh --reset    # throw the demo database away and reload it
#   scripts/demo.sh --stop     # stop the demo cluster
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

DEMO_DIR="$PG_WORK_ROOT/demo"
DEMO_PORT="${TVIEWS_DEMO_PORT:-5499}"
DEMO_DB="tviews_demo"
PG_CTL="$PG_BIN/pg_ctl"

reset=0
case "${1:-}" in
  --stop)
    as_pg "$PG_CTL" -D "$DEMO_DIR/data" stop -m fast 2>/dev/null || true
    echo "demo cluster stopped"; exit 0 ;;
  --reset) reset=1 ;;
  "") ;;
  *) die "usage: scripts/demo.sh [--reset|--stop]" ;;
esac

phase "set-up"
bash scripts/setup.sh

phase "build and install pg_tviews into the system PostgreSQL"
cargo pgrx install -p pg_tviews --pg-config "$PG_CONFIG"
cargo build -p tviews-cli

phase "demo cluster in $DEMO_DIR (port $DEMO_PORT)"
if [[ ! -f "$DEMO_DIR/data/PG_VERSION" ]]; then
  as_root mkdir -p "$DEMO_DIR"
  [[ $EUID -eq 0 ]] && chown "$PG_OS_USER" "$DEMO_DIR"
  as_pg "$PG_BIN/initdb" -D "$DEMO_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_pg mkdir -p "$DEMO_DIR/sock"
  as_pg chmod 0755 "$DEMO_DIR/sock"
  cat <<CONF | as_pg tee -a "$DEMO_DIR/data/postgresql.conf" >/dev/null
# pg_tviews demo cluster
port = $DEMO_PORT
listen_addresses = 'localhost'
unix_socket_directories = '$DEMO_DIR/sock'
shared_preload_libraries = 'pg_tviews'
max_prepared_transactions = 20
CONF
fi
if ! as_pg "$PG_CTL" -D "$DEMO_DIR/data" status >/dev/null 2>&1; then
  as_pg "$PG_CTL" -D "$DEMO_DIR/data" -l "$DEMO_DIR/server.log" -w start >/dev/null
else
  # A newer build of the library only loads in new sessions; restart so
  # the preloaded copy is the one just installed.
  as_pg "$PG_CTL" -D "$DEMO_DIR/data" -l "$DEMO_DIR/server.log" -w restart -m fast >/dev/null
fi

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO_DIR/sock" -p "$DEMO_PORT" -U postgres)
if ((reset)); then
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $DEMO_DB"
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

TVIEWS="$REPO_ROOT/target/debug/tviews"
cat <<EOF2

The demo is running. Connect with:
  psql -h $DEMO_DIR/sock -p $DEMO_PORT -U postgres $DEMO_DB
  psql "postgresql://postgres@localhost:$DEMO_PORT/$DEMO_DB"
  $TVIEWS -h $DEMO_DIR/sock -p $DEMO_PORT -U postgres -d $DEMO_DB status

Try:  UPDATE tb_product SET price = price + 1 WHERE pk_product = 7;
      SELECT data FROM tv_product WHERE pk_product = 7;
Stop: scripts/demo.sh --stop      Reload: scripts/demo.sh --reset
EOF2
