#!/usr/bin/env bash
# Throwaway PostgreSQL, S3 (Garage) and NATS JetStream servers for the tests, started from
# nothing.
#
# Source it, then call:
#   services_start            # all three; exports the variables below
#   services_stop             # stops and deletes them (also runs on EXIT when sourced by test.sh)
#   pg_stop / pg_start        # stop and restart the PostgreSQL server (resilience test)
#   nats_stop / nats_start    # stop and restart the NATS server (its JetStream data is kept)
#
# Exports: OPENSPINE_TEST_DATABASE_URL (server URL, database `postgres`), PG_PORT, PG_DATA,
# OPENSPINE_TEST_BLOB_URL (s3://openspine-test), OPENSPINE_TEST_S3_ENDPOINT,
# OPENSPINE_TEST_S3_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, OPENSPINE_TEST_NATS_URL.
#
# NATS: Debian's nats-server (installed with apt-get when absent), `-js` with its store in the
# services directory, on a free loopback port.
#
# PostgreSQL: Debian's binaries (installed with apt-get when absent), initdb into a temporary
# directory, on a free loopback port; never a server that happens to be running already.
# Garage: `cargo install garage` from crates.io once, cached in $OPENSPINE_CACHE (default
# ~/.cache/openspine) so later runs start in a second; single node, replication factor 1.

OPENSPINE_CACHE=${OPENSPINE_CACHE:-$HOME/.cache/openspine}
GARAGE_VERSION=2.5.0
SERVICES_DIR=${SERVICES_DIR:-}

services_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pg_bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null && { dirname "$(readlink -f "$(command -v initdb)")"; return 0; }
  return 1
}

pg_install() {
  pg_bin_dir >/dev/null && return 0
  echo "PostgreSQL binaries not found: installing Debian's postgresql" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  # The package starts its own cluster on 5432; the tests never use it.
  pg_bin_dir >/dev/null
}

# Runs a PostgreSQL tool as an unprivileged user: initdb and postgres refuse to run as root.
pg_as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_start() {
  local bin; bin=$(pg_bin_dir) || return 1
  pg_as "$bin/pg_ctl" -D "$PG_DATA" -l "$SERVICES_DIR/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $SERVICES_DIR/pgsock -c listen_addresses=127.0.0.1" start >/dev/null
}

pg_stop() {
  local bin; bin=$(pg_bin_dir) || return 1
  pg_as "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
}

# Creates an empty database on the throwaway server and prints its URL.
pg_createdb() {
  local bin; bin=$(pg_bin_dir) || return 1
  "$bin/psql" -q -v ON_ERROR_STOP=1 "$OPENSPINE_TEST_DATABASE_URL" -c "CREATE DATABASE $1" >&2 || return 1
  echo "${OPENSPINE_TEST_DATABASE_URL%/*}/$1"
}

postgres_start() {
  pg_install || { echo "cannot install PostgreSQL" >&2; return 1; }
  local bin; bin=$(pg_bin_dir)
  PG_DATA=$SERVICES_DIR/pgdata
  PG_PORT=$(services_free_port)
  mkdir -p "$SERVICES_DIR/pgsock"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$SERVICES_DIR" "$SERVICES_DIR/pgsock"
  fi
  pg_as "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --no-sync >"$SERVICES_DIR/initdb.log" 2>&1 \
    || { cat "$SERVICES_DIR/initdb.log" >&2; return 1; }
  # Durable commits as in production (fsync on); generous connections for the cluster test.
  printf "max_connections = 300\nshared_buffers = 128MB\n" >>"$PG_DATA/postgresql.conf"
  pg_start || { cat "$SERVICES_DIR/postgres.log" >&2; return 1; }
  export PG_DATA PG_PORT
  export OPENSPINE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT" >&2
}

garage_bin() {
  local cached=$OPENSPINE_CACHE/garage-$GARAGE_VERSION/bin/garage
  if [ ! -x "$cached" ]; then
    echo "building Garage $GARAGE_VERSION from crates.io (once; cached in $OPENSPINE_CACHE)" >&2
    # A test server needs no release-grade optimisation: opt-level 1 and no debug info
    # build it in about a third of the time (4.5 min instead of 12 on two cores).
    CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_INCREMENTAL=false \
    CARGO_TARGET_DIR=$OPENSPINE_CACHE/garage-build cargo install garage --version "$GARAGE_VERSION" \
      --locked --no-default-features --features bundled-libs,sqlite \
      --root "$OPENSPINE_CACHE/garage-$GARAGE_VERSION" >&2 || return 1
    rm -rf "$OPENSPINE_CACHE/garage-build"
  fi
  echo "$cached"
}

garage_start() {
  local g; g=$(garage_bin) || { echo "cannot build Garage" >&2; return 1; }
  local dir=$SERVICES_DIR/garage rpc s3 admin
  mkdir -p "$dir/meta" "$dir/data"
  rpc=$(services_free_port); s3=$(services_free_port); admin=$(services_free_port)
  cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
  GARAGE_CONFIG_FILE=$dir/garage.toml RUST_LOG=warn "$g" server >"$dir/garage.log" 2>&1 &
  echo $! >"$dir/pid"
  export GARAGE_CONFIG_FILE=$dir/garage.toml
  local id="" i
  for i in $(seq 1 100); do
    id=$("$g" node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$id" ] && break
    sleep 0.2
  done
  [ -n "$id" ] || { echo "Garage did not start:" >&2; tail -20 "$dir/garage.log" >&2; return 1; }
  "$g" layout assign -z dc1 -c 1G "$id" >/dev/null &&
    "$g" layout apply --version 1 >/dev/null &&
    "$g" bucket create openspine-test >/dev/null || { tail -20 "$dir/garage.log" >&2; return 1; }
  local key
  key=$("$g" key create openspine-test) || return 1
  AWS_ACCESS_KEY_ID=$(echo "$key" | awk '/Key ID/ {print $NF; exit}')
  AWS_SECRET_ACCESS_KEY=$(echo "$key" | awk '/Secret key/ {print $NF; exit}')
  [ -n "$AWS_ACCESS_KEY_ID" ] && [ -n "$AWS_SECRET_ACCESS_KEY" ] || { echo "no key in: $key" >&2; return 1; }
  "$g" bucket allow --read --write --owner openspine-test --key openspine-test >/dev/null || return 1
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  export OPENSPINE_TEST_BLOB_URL=s3://openspine-test
  export OPENSPINE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3
  export OPENSPINE_TEST_S3_REGION=garage
  echo "Garage $GARAGE_VERSION S3 on 127.0.0.1:$s3" >&2
}

nats_install() {
  command -v nats-server >/dev/null && return 0
  [ -x /usr/sbin/nats-server ] && return 0
  echo "nats-server not found: installing Debian's nats-server" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server >/dev/null
}

nats_bin() {
  command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server
}

# Starts (or restarts, on the same port and store) the NATS server.
nats_start() {
  nats_install || return 1
  local dir=$SERVICES_DIR/nats
  mkdir -p "$dir/store"
  NATS_PORT=${NATS_PORT:-$(services_free_port)}
  "$(nats_bin)" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$dir/store" >"$dir/nats.log" 2>&1 &
  echo $! >"$dir/pid"
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; then
      export NATS_PORT OPENSPINE_TEST_NATS_URL=nats://127.0.0.1:$NATS_PORT
      echo "NATS JetStream on 127.0.0.1:$NATS_PORT" >&2
      return 0
    fi
    sleep 0.1
  done
  tail -20 "$dir/nats.log" >&2
  return 1
}

nats_stop() {
  local pid_file=$SERVICES_DIR/nats/pid
  [ -f "$pid_file" ] || return 0
  kill "$(cat "$pid_file")" 2>/dev/null || true
  # Not a child when called from another shell: wait by polling instead.
  wait "$(cat "$pid_file")" 2>/dev/null || true
  while kill -0 "$(cat "$pid_file")" 2>/dev/null; do sleep 0.1; done
  rm -f "$pid_file"
}

services_start() {
  SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/openspine-services.XXXXXX")
  chmod 755 "$SERVICES_DIR"
  export SERVICES_DIR
  postgres_start && garage_start && nats_start
}

services_stop() {
  [ -n "$SERVICES_DIR" ] && [ -d "$SERVICES_DIR" ] || return 0
  [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ] && pg_stop 2>/dev/null
  nats_stop 2>/dev/null
  if [ -f "$SERVICES_DIR/garage/pid" ]; then
    kill "$(cat "$SERVICES_DIR/garage/pid")" 2>/dev/null
    wait "$(cat "$SERVICES_DIR/garage/pid")" 2>/dev/null
  fi
  rm -rf "$SERVICES_DIR"
  SERVICES_DIR=""
}
if [ "${BASH_SOURCE[0]}" = "$0" ]; then set -e; "$@"; fi
