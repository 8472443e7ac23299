#!/usr/bin/env bash
# Provision and start a local TimescaleDB (Apache edition) for gpuwatch.
#
# Debian 12 ships no TimescaleDB package; Debian 13 does. So we build a
# minimal Debian 13 root with debootstrap, install postgresql-17 and
# postgresql-17-timescaledb inside it, and run the server from the chroot on
# its own loopback port. The root is cached, so later runs only start the
# server. If something already answers on the port with timescaledb
# available, it is reused as is.
#
# Environment:
#   TIMESCALE_PORT   port to listen on (default 5433)
#   GPUWATCH_CACHE   where the Debian root lives (default ~/.cache/gpuwatch)
#   DEBIAN_MIRROR    Debian archive (default http://deb.debian.org/debian)
#
# Prints the connection URL on its last line.
set -euo pipefail

port="${TIMESCALE_PORT:-5433}"
cache="${GPUWATCH_CACHE:-$HOME/.cache/gpuwatch}"
root="$cache/trixie-timescaledb"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
url="postgres://postgres@127.0.0.1:${port}/postgres"

log() { echo "timescaledb.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"

if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p "$port"; then
  if psql -X -qAt "$url" -c "select 1 from pg_available_extensions where name='timescaledb'" 2>/dev/null | grep -q 1; then
    log "reusing the TimescaleDB already up on 127.0.0.1:$port"
    echo "$url"; exit 0
  fi
  die "something answers on 127.0.0.1:$port but has no timescaledb extension; set TIMESCALE_PORT to a free port"
fi

if [ ! -f "$root/.gpuwatch-ready" ]; then
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  }
  rm -rf "$root"; mkdir -p "$cache"
  log "building a Debian 13 root in $root (once; cached afterwards)"
  debootstrap --variant=minbase trixie "$root" "$mirror" >&2 \
    || die "debootstrap of Debian 13 from $mirror failed; check DEBIAN_MIRROR"
  # The chroot must not try to start services while packages install.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postgresql-17 postgresql-17-timescaledb >&2 \
    || die "installing postgresql-17-timescaledb inside $root failed"
  touch "$root/.gpuwatch-ready"
fi

data=/var/lib/gpuwatch/tsdb
if [ ! -f "$root$data/PG_VERSION" ]; then
  log "initialising the cluster in $root$data"
  mkdir -p "$root$data"
  chroot "$root" chown -R postgres:postgres /var/lib/gpuwatch
  chroot "$root" su postgres -s /bin/sh -c \
    "/usr/lib/postgresql/17/bin/initdb -D $data -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8" >&2
fi

# postgres itself needs no password (as on the plain server here); every other
# role must give its password, so tests can see what a wrong one looks like.
cat > "$root$data/pg_hba.conf" <<HBA
local all postgres trust
host  all postgres 127.0.0.1/32 trust
local all all scram-sha-256
host  all all 127.0.0.1/32 scram-sha-256
HBA

log "starting TimescaleDB on 127.0.0.1:$port"
# Timescale's telemetry would try the network; this machine has none.
chroot "$root" su postgres -s /bin/sh -c \
  "/usr/lib/postgresql/17/bin/pg_ctl -D $data -l $data/server.log -w -t 60 start -o \"-c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off -c dynamic_shared_memory_type=mmap -c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=/tmp -c max_connections=200 -c fsync=${TIMESCALE_FSYNC:-on}\"" >&2 \
  || { tail -n 20 "$root$data/server.log" >&2; die "pg_ctl start failed (log above)"; }
echo "$url"
