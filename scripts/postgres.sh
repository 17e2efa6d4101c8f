#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for the scale-out tests and benchmarks.
# `eval "$(scripts/postgres.sh start)"` exports MLC_TEST_PG_URL; `stop` stops it.
set -euo pipefail
PORT="${MLC_PG_PORT:-55432}"
DIR="${MLC_PG_DIR:-/tmp/mlc-pgdata-$PORT}"
DB=mlc_test

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_pg() {
  echo "installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

run_as_pg() {
  if [ "$(id -u)" = "0" ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "${1:-start}" in
  start)
    BIN="$(find_bin || true)"
    if [ -z "$BIN" ]; then install_pg; BIN="$(find_bin)"; fi
    if ! run_as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
      if [ ! -f "$DIR/PG_VERSION" ]; then
        rm -rf "$DIR"; mkdir -p "$DIR"
        [ "$(id -u)" = "0" ] && chown postgres:postgres "$DIR"
        run_as_pg "$BIN/initdb" -D "$DIR" -U postgres -A trust --no-sync >/dev/null
      fi
      run_as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w \
        -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
    fi
    run_as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" \
      | grep -q 1 || run_as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
    echo "export MLC_TEST_PG_URL=postgresql://postgres@127.0.0.1:$PORT/$DB"
    ;;
  stop)
    BIN="$(find_bin)"
    run_as_pg "$BIN/pg_ctl" -D "$DIR" -m fast stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
