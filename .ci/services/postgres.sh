# shellcheck shell=bash
# A throwaway PostgreSQL cluster for the tests, sourced by .ci/run (bash, set -euo pipefail).
#
# Installs PostgreSQL from Debian's packages when no server binaries are found, creates a
# cluster in a temporary directory owned by the `postgres` user, starts it on 127.0.0.1 on a
# free port with trust authentication for loopback only, and exports RGS_SHADOW_TEST_PG_URL.
# An EXIT trap (chained onto any trap already set) stops the cluster and removes the directory
# when the sourcing shell ends, so nothing outlives the CI run.
#
# A developer can run it by hand too:  bash -c '. .ci/services/postgres.sh; env | grep PG_URL; bash'
# If RGS_SHADOW_TEST_PG_URL is already set, the script leaves it alone and starts nothing.

_rgs_pg_bindir() {
  # Debian keeps the server binaries under /usr/lib/postgresql/<version>/bin; prefer the newest.
  local dir best=""
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && best="$dir"
  done
  if [ -z "$best" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    best="$(dirname "$(command -v pg_ctl)")"
  fi
  printf '%s' "$best"
}

_rgs_pg_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_rgs_pg_as_owner() {
  # initdb and postgres refuse to run as root: run them as the cluster's owner.
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

_rgs_pg_stop() {
  if [ -n "${_RGS_PG_DIR:-}" ] && [ -d "$_RGS_PG_DIR/data" ]; then
    _rgs_pg_as_owner "$_RGS_PG_BIN/pg_ctl" -D "$_RGS_PG_DIR/data" -m fast -w -t 30 stop \
      >/dev/null 2>&1 || true
    rm -rf "$_RGS_PG_DIR"
  fi
}

if [ -z "${RGS_SHADOW_TEST_PG_URL:-}" ]; then
  _RGS_PG_BIN="$(_rgs_pg_bindir)"
  if [ -z "$_RGS_PG_BIN" ]; then
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    _RGS_PG_BIN="$(_rgs_pg_bindir)"
    if [ -z "$_RGS_PG_BIN" ]; then
      echo "postgres.sh: PostgreSQL was installed but initdb/pg_ctl are not to be found" >&2
      exit 1
    fi
  fi
  _RGS_PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/rgs-shadow-pg.XXXXXX")"
  chmod 755 "$_RGS_PG_DIR"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$_RGS_PG_DIR"
  fi
  _rgs_pg_trap="$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")"
  # shellcheck disable=SC2064
  trap "_rgs_pg_stop; ${_rgs_pg_trap:-:}" EXIT
  _rgs_pg_as_owner "$_RGS_PG_BIN/initdb" -D "$_RGS_PG_DIR/data" -U postgres -E UTF8 \
    --locale=C --auth=trust --no-sync >"$_RGS_PG_DIR/initdb.log" 2>&1 \
    || { cat "$_RGS_PG_DIR/initdb.log" >&2; exit 1; }
  _RGS_PG_PORT="$(_rgs_pg_free_port)"
  # Throwaway cluster: the tests kill the wallet server, never PostgreSQL, so fsync buys nothing.
  _rgs_pg_as_owner "$_RGS_PG_BIN/pg_ctl" -D "$_RGS_PG_DIR/data" -l "$_RGS_PG_DIR/server.log" \
    -w -t 60 start -o "-c listen_addresses=127.0.0.1 -p $_RGS_PG_PORT \
      -c unix_socket_directories=$_RGS_PG_DIR -c max_connections=300 -c fsync=off \
      -c full_page_writes=off" >/dev/null \
    || { cat "$_RGS_PG_DIR/server.log" >&2; exit 1; }
  export RGS_SHADOW_TEST_PG_URL="postgresql://postgres@127.0.0.1:$_RGS_PG_PORT/postgres"
  echo "postgres.sh: PostgreSQL $("$_RGS_PG_BIN/pg_ctl" --version | awk '{print $3}') on" \
    "$RGS_SHADOW_TEST_PG_URL" >&2
fi
