#!/usr/bin/env bash
# The benchmark (docs/PERFORMANCE.md): builds and installs a release build of
# pg_tviews, then measures it against its baselines; small scale unless
# --scale medium|large. Also: --runs N --out DIR --no-install --seed N.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run --release -p tviews-benches -- "$@"
