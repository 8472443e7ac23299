# Shared by the project's scripts: make sure the database servers run.
# Sourced, not executed.

log() { echo "gpuwatch: $*" >&2; }

# Installs Debian packages once, quietly.
need_packages() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# Plain PostgreSQL on 127.0.0.1:5432 with trust auth for postgres: started
# if installed and down, installed (and trust configured) if absent.
ensure_postgres() {
  command -v pg_isready >/dev/null || need_packages postgresql-client
  if pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    need_packages postgresql
    local conf; conf=$(ls -d /etc/postgresql/*/main | head -n1)
    # Tests connect as postgres over loopback without a password, as on this machine kind.
    sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(local\s+all\s+postgres\s+)\S+/\1trust/' "$conf/pg_hba.conf"
  fi
  local ver; ver=$(ls /etc/postgresql | sort -n | tail -n1)
  log "starting PostgreSQL $ver on 127.0.0.1:5432"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
  log "error: PostgreSQL did not come up on 127.0.0.1:5432"; return 1
}
