#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster (trust auth, 127.0.0.1, socket in its own temp dir).
#   source .ci/postgres.sh   -> exports HERALD_TEST_POSTGRES_URL, PG_TMP; call pg_stop when done
#   bash .ci/postgres.sh     -> leaves the cluster running, prints the URL and the stop command
# Needs Debian's postgresql package (initdb under /usr/lib/postgresql/*/bin). PGPORT picks the port.

pg_start() {
    local bin port as=()
    bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n1)")
    port=${PGPORT:-55432}
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    PG_TMP=$(mktemp -d /tmp/herald-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_TMP"; as=(runuser -u postgres --); fi
    PG_CTL=("${as[@]}" "$bin/pg_ctl")
    "${as[@]}" "$bin/initdb" -D "$PG_TMP/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$PG_TMP/initdb.log"
    "${as[@]}" "$bin/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/server.log" -w start \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PG_TMP -c fsync=off" >/dev/null
    export PG_TMP HERALD_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

pg_stop() {
    [ -n "${PG_TMP:-}" ] || return 0
    "${PG_CTL[@]}" -D "$PG_TMP/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_TMP"
    PG_TMP=
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    pg_start
    echo "HERALD_TEST_POSTGRES_URL=$HERALD_TEST_POSTGRES_URL"
    echo "stop with: ${PG_CTL[*]} -D $PG_TMP/data stop && rm -rf $PG_TMP" >&2
fi
