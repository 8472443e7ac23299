#!/usr/bin/env bash
# Runs every test of gpuwatch against real servers: plain PostgreSQL on
# 127.0.0.1:5432 (DATABASE_URL), TimescaleDB from scripts/timescaledb.sh
# (TIMESCALE_URL) and MariaDB on 127.0.0.1:3306 (MYSQL_URL, the DLWorkspace
# tests' cluster database), all started here when they are not up. Extra arguments
# go to `cargo test` (e.g. scripts/test.sh --test suite -- cli::).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_postgres
ensure_mariadb
# node_exporter is the reference the host source is checked against; curl
# and the PostgreSQL server binaries serve the outage tests; prometheus (with
# promtool) scrapes and checks /metrics; aiosmtpd is the real SMTP server the
# alerter's e-mail tests deliver to; pg_auto_failover (pg_autoctl) runs the
# three-node cluster the failover test kills primaries of; Alertmanager (two
# replicas) is the alerter's alertmanager channel's receiver; chromium is the
# browser the console's tests drive.
need_packages prometheus-node-exporter curl prometheus python3-aiosmtpd postgresql-15-auto-failover prometheus-alertmanager chromium
# schemathesis fuzzes the API from its OpenAPI document (api::schemathesis_…);
# the test skips, saying so, where it cannot be installed.
if ! command -v schemathesis >/dev/null 2>&1; then
  python3 -m pip install --quiet 'schemathesis>=4.32,<5' || log "schemathesis not installed; its test will skip"
fi
# The console's assets (api's build.rs builds them too; here a failure shows).
scripts/console.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export TIMESCALE_URL="${TIMESCALE_URL:-$(scripts/timescaledb.sh | tail -n1)}"
export MYSQL_URL="${MYSQL_URL:-mysql://root@127.0.0.1:3306}"
log "plain PostgreSQL: $DATABASE_URL, TimescaleDB: $TIMESCALE_URL, MariaDB: $MYSQL_URL"
out=$(mktemp)
set +e
cargo test --workspace "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
# The package and the manifests, on a whole run only (extra arguments pick
# some tests, and the package check has nothing to do with them).
if [ $# -eq 0 ]; then
  scripts/package-check.sh 2>&1 | tee -a "$out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
fi
set -e
# One closing line for the whole workspace (cargo ends on a doc-test crate's "0 passed").
awk '/^test result:/ { p += $4; f += $6 } /^packaging: / { p += $2; f += $4 } END { printf "tests: %d passed, %d failed\n", p, f }' "$out"
rm -f "$out"
exit "$rc"
