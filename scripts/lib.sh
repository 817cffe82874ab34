# Shared settings and helpers for the scripts in this folder (sourced, not run).
# shellcheck shell=bash
PGRX_VERSION="0.18.0"
PG_CONFIG="/usr/bin/pg_config"
PG_BIN="$($PG_CONFIG --bindir 2>/dev/null || echo /usr/lib/postgresql/15/bin)"
# The unprivileged OS user that owns and runs every PostgreSQL cluster we start.
PG_OS_USER="${TVIEWS_PG_USER:-pgtviews}"
# Where clusters live: outside root-only folders so that user can reach them.
PG_WORK_ROOT="${TVIEWS_WORK_ROOT:-/var/tmp/pg_tviews}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

_phase_start=$SECONDS
phase() { printf '\n\033[1m==> %s\033[0m  (+%ss)\n' "$*" "$((SECONDS - _phase_start))"; }
note() { printf '    %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
# The user PostgreSQL runs as: the dedicated user when we are root, ourselves otherwise.
pg_server_user() { if [[ $EUID -eq 0 ]]; then echo "$PG_OS_USER"; else id -un; fi; }
as_pg() { if [[ $EUID -eq 0 ]]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi; }
