#!/usr/bin/env bash
# The quick start: provisions a database when none is configured (TimescaleDB
# via scripts/timescaledb.sh, database "gpuwatch"), builds gpuwatch, and runs
# `gpuwatch all` with the simulated fleet, so rows arrive every interval.
# Set DATABASE_URL to use a database of your own instead. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

if [ -z "${DATABASE_URL:-}" ]; then
  command -v psql >/dev/null || need_packages postgresql-client
  server=$(scripts/timescaledb.sh | tail -n1)
  if ! psql -X -qAt "$server" -c "select 1 from pg_database where datname = 'gpuwatch'" | grep -q 1; then
    psql -X -q "$server" -c "create database gpuwatch"
  fi
  export DATABASE_URL="${server%/*}/gpuwatch"
fi
log "database: $DATABASE_URL"
log "watch rows arrive with: psql '$DATABASE_URL' -c 'select host_id, count(*), max(collected_at) from gpu_metrics group by 1'"
# The web console served at / is embedded in the binary: its assets first.
scripts/console.sh
cargo build --release --quiet
# Where cargo put it: CARGO_TARGET_DIR, build.target-dir of a cargo config,
# or ./target; cargo itself says which.
target_dir=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
# The simulated control plane bills the day from midnight UTC; the meter
# runs every minute here (not at ten past each hour) so the money shows at
# once: gpuwatch report usage --from "$(date -u +%F)" --to "$(date -u -d tomorrow +%F)"
export GPUWATCH_BILLING__SCHEDULE="${GPUWATCH_BILLING__SCHEDULE:-0 * * * * *}"
exec "${target_dir:-target}/release/gpuwatch" all "$@"
