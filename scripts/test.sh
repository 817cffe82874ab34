#!/usr/bin/env bash
# Runs every test of the project on this machine, installing what is
# missing first (see scripts/setup.sh). Prints the time of each phase.
#
#   scripts/test.sh            # everything
#   TVIEWS_ORACLE_TXNS=20000 scripts/test.sh   # a longer differential oracle
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
start=$SECONDS

phase "set-up"
bash scripts/setup.sh

phase "format (cargo fmt --check)"
cargo fmt --all --check

phase "lint (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

phase "backend tests (cargo pgrx test, server run as $(pg_server_user))"
pgdata="$PG_WORK_ROOT/pgrx-test"
as_root rm -rf "$pgdata"
mkdir -p "$pgdata"
[[ $EUID -eq 0 ]] && chown "$PG_OS_USER" "$pgdata"
if [[ $EUID -eq 0 ]]; then
  cargo pgrx test pg15 -p pg_tviews --runas "$PG_OS_USER" --pgdata "$pgdata/data"
else
  cargo pgrx test pg15 -p pg_tviews
fi

phase "install the extension into the system PostgreSQL"
cargo pgrx install -p pg_tviews --pg-config "$PG_CONFIG"

phase "unit, snapshot and end-to-end tests (scratch clusters)"
cargo test --workspace --exclude pg_tviews --locked -- --test-threads=2

phase "no PostgreSQL left running by the tests"
if pgrep -u "$(pg_server_user)" -f "postgres -D $PG_WORK_ROOT/harness-" >/dev/null; then
  pgrep -a -u "$(pg_server_user)" -f "postgres -D $PG_WORK_ROOT/harness-" || true
  die "a scratch cluster outlived the test suite"
fi

phase "all tests passed in $((SECONDS - start))s"
