#!/usr/bin/env bash
# Builds the web console (console/) into console/dist, which the api crate
# embeds in the binary. Skipped when dist is newer than every source, so the
# scripts and api's build.rs may call it on every run. Installs Node.js and
# npm from Debian when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

dir=console
stamp=$dir/dist/index.html
if [ -f "$stamp" ] && [ -z "$(find $dir/src $dir/index.html $dir/package.json \
    $dir/package-lock.json $dir/vite.config.js scripts/console.sh -newer "$stamp" 2>/dev/null | head -n1)" ]; then
  exit 0
fi
command -v npm >/dev/null || need_packages nodejs npm
log "building the console into $dir/dist"
cd "$dir"
# package-lock.json pins every package; ci installs exactly that.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
fi
npx vite build --logLevel warn >&2
# Compressed once here, served as they are to clients that accept gzip.
find dist -type f \( -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.svg' \) \
  -exec gzip -9 -k -f {} +
# vite keeps the old mtime of a file it did not change; the stamp must be new.
touch dist/index.html
