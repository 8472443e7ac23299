#!/usr/bin/env bash
# Tools the benches need besides the database servers: wrk, the HTTP load
# generator of `cargo bench --bench exporter` (that bench skips its load part
# without it). Run as root, like scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_packages wrk
