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

# MariaDB on 127.0.0.1:3306 where root connects over TCP without a password,
# as on this machine kind: the DLWorkspace tests' stand-in for a cluster's
# MySQL. Started if installed and down, installed (and root opened to
# loopback TCP) if absent. A test server only: never point it elsewhere.
ensure_mariadb() {
  command -v mariadb-admin >/dev/null || need_packages mariadb-client
  if mariadb-admin -h 127.0.0.1 -P 3306 -u root status >/dev/null 2>&1; then return 0; fi
  [ -x /usr/sbin/mariadbd ] || need_packages mariadb-server
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >&2
  log "starting MariaDB on 127.0.0.1:3306"
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 --skip-name-resolve \
    >/var/log/gpuwatch-mariadb.log 2>&1 < /dev/null &
  for _ in $(seq 30); do
    if mariadb-admin -u root status >/dev/null 2>&1; then
      # Debian's root authenticates by Unix socket only; the tests connect
      # over TCP as root with no password.
      mariadb -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" >&2
      mariadb-admin -h 127.0.0.1 -P 3306 -u root status >/dev/null 2>&1 && return 0
    fi
    sleep 1
  done
  log "error: MariaDB did not come up on 127.0.0.1:3306 (see /var/log/gpuwatch-mariadb.log)"; return 1
}
