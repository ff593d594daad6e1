# Shell functions shared by scripts/test, scripts/soak and scripts/fuzz: sourced, not run.
# Everything they start listens on 127.0.0.1 only.

say() { printf '\n== %s\n' "$*"; }
in_ci() { [ "${CI:-}" = "true" ]; }

# Installs Debian packages when running as root; otherwise says what is missing.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $*"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $* (install them, or run as root so this script can)" >&2
    return 1
  fi
}

# PostgreSQL server binaries: the newest installed version's folder.
find_pg_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

# PostgreSQL refuses to run as root: run the cluster as the postgres user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The first port from $1 on that nothing listens on.
free_port() {
  local port
  for port in $(seq "$1" $(( $1 + 200 ))); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  return 1
}

# Starts a throwaway cluster from $PG_BIN on a free port from $1; sets PGTMP and PGPORT.
# `fast` as $2 trades durability for speed (tests); without it the cluster syncs (benchmarks).
start_pg() {
  PGTMP=$(mktemp -d /tmp/vaitio-pg.XXXXXX)
  chmod 755 "$PGTMP"
  [ "$(id -u)" = 0 ] && chown postgres "$PGTMP"
  PGPORT=$(free_port "$1")
  local options="-p $PGPORT -k $PGTMP -c listen_addresses=127.0.0.1 -c max_connections=400"
  [ "${2:-}" = fast ] && options="$options -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  as_pg "$PG_BIN/initdb" -D "$PGTMP/data" -U postgres --auth=trust -E UTF8 --no-locale >"$PGTMP/initdb.log"
  as_pg "$PG_BIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 60 -o "$options" start >/dev/null
}

# Stops and removes the cluster start_pg made, if any.
stop_pg() {
  if [ -n "${PGTMP:-}" ] && [ -d "$PGTMP/data" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  [ -n "${PGTMP:-}" ] && rm -rf "$PGTMP"
  PGTMP=""
}
