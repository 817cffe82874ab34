#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine (run as root, safe to rerun).
# Installs the PostgreSQL 15 build dependencies, cargo-pgrx at the pinned
# version, initialises pgrx against the system PostgreSQL, and creates the
# unprivileged OS user that runs every PostgreSQL server we start.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(postgresql-15 postgresql-client-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo pgbouncer tmux git python3-venv)

need_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  phase "apt: installing ${need_apt[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's postgresql package may start a cluster on 5432; we never use it.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
  note "a Debian-managed cluster is running; leaving it alone (our clusters use their own ports and sockets)"
fi

if [[ "$(cargo pgrx --version 2>/dev/null | awk '{print $2}')" != "$PGRX_VERSION" ]]; then
  phase "cargo install cargo-pgrx $PGRX_VERSION (a few minutes, once)"
  cargo install --locked cargo-pgrx --version "$PGRX_VERSION" --force
fi

if ! grep -q "pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
  phase "cargo pgrx init --pg15 $PG_CONFIG"
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

if [[ $EUID -eq 0 ]]; then
  if ! id "$PG_OS_USER" >/dev/null 2>&1; then
    phase "creating OS user $PG_OS_USER (PostgreSQL refuses to run as root)"
    useradd --system --create-home --home-dir "/var/lib/$PG_OS_USER" --shell /bin/bash "$PG_OS_USER"
  fi
  mkdir -p "$PG_WORK_ROOT"
  chown "$PG_OS_USER" "$PG_WORK_ROOT"
  chmod 0755 "$PG_WORK_ROOT"
else
  mkdir -p "$PG_WORK_ROOT"
fi
note "setup ok: cargo-pgrx $PGRX_VERSION, $(pg_config --version), server user $(pg_server_user)"
