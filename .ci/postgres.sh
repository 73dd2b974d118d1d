# Sourced by .ci/run: start a throw-away PostgreSQL server on loopback for the storage tests and
# export DRLTUNE_TEST_POSTGRES_URL. Uses Debian's `postgresql` package (installed when missing and
# we are root). Never fatal: without a server the PostgreSQL tests skip and say why.
# Call pg_ci_stop to shut it down.

pg_ci_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$dir" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "ci: installing postgresql" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1; }
        dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    fi
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

pg_ci_start() {
    [ -n "${DRLTUNE_TEST_POSTGRES_URL:-}" ] && return 0
    local bindir port as
    bindir=$(pg_ci_bindir) || { echo "ci: no PostgreSQL available; its tests will skip" >&2; return 0; }
    PG_CI_DIR=$(mktemp -d /tmp/drltune-pg.XXXXXX)
    # initdb refuses to run as root: run the server as the package's postgres user then.
    as=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$PG_CI_DIR"
        as=(runuser -u postgres --)
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if "${as[@]}" "$bindir/initdb" -D "$PG_CI_DIR/data" -U drltune --auth=trust -E UTF8 >"$PG_CI_DIR/initdb.log" 2>&1 \
        && "${as[@]}" "$bindir/pg_ctl" -D "$PG_CI_DIR/data" -l "$PG_CI_DIR/server.log" -w -t 60 \
            -o "-h 127.0.0.1 -p $port -k $PG_CI_DIR -c max_connections=200 -c fsync=off" start >/dev/null \
        && "${as[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U drltune drltune_test; then
        PG_CI_STOP=("${as[@]}" "$bindir/pg_ctl" -D "$PG_CI_DIR/data" -m fast stop)
        export DRLTUNE_TEST_POSTGRES_URL="postgresql://drltune@127.0.0.1:$port/drltune_test"
        # The fault tests stop and restart this server mid-search: "$DRLTUNE_TEST_POSTGRES_CTL stop|start".
        export DRLTUNE_TEST_POSTGRES_CTL="${as[*]} $bindir/pg_ctl -D $PG_CI_DIR/data -l $PG_CI_DIR/server.log -w -t 60 -m fast -o '-h 127.0.0.1 -p $port -k $PG_CI_DIR -c max_connections=200 -c fsync=off'"
        echo "ci: PostgreSQL at $DRLTUNE_TEST_POSTGRES_URL" >&2
    else
        echo "ci: PostgreSQL did not start; its tests will skip. Logs:" >&2
        cat "$PG_CI_DIR"/*.log >&2 || true
    fi
}

pg_ci_stop() {
    if [ -n "${PG_CI_STOP:-}" ]; then "${PG_CI_STOP[@]}" >/dev/null 2>&1 || true; fi
    if [ -n "${PG_CI_DIR:-}" ]; then rm -rf "$PG_CI_DIR"; fi
}
