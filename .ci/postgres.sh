# Sourced by .ci/run: start throw-away PostgreSQL servers on loopback for the storage tests. Uses
# Debian's `postgresql` package (installed when missing and we are root). Never fatal: without a
# server the PostgreSQL tests skip and say why. Call pg_ci_stop to shut them down.
#   DRLTUNE_TEST_POSTGRES_URL   the server the storage tests share
#   DRLTUNE_TEST_POSTGRES2_URL  a second one, for the tests that stop and restart their server
#                               mid-search ("$DRLTUNE_TEST_POSTGRES2_CTL stop|start"), so that no
#                               other test waits while it is down

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
    local bindir
    bindir=$(pg_ci_bindir) || { echo "ci: no PostgreSQL available; its tests will skip" >&2; return 0; }
    PG_CI_DIRS=() PG_CI_STOPS=()
    pg_ci_server "$bindir" "" && pg_ci_server "$bindir" 2
}

# pg_ci_server BINDIR SUFFIX: start one server, export DRLTUNE_TEST_POSTGRES${SUFFIX}_URL and _CTL.
pg_ci_server() {
    local bindir=$1 suffix=$2 dir port as ctl
    dir=$(mktemp -d /tmp/drltune-pg.XXXXXX)
    PG_CI_DIRS+=("$dir")
    # initdb refuses to run as root: run the server as the package's postgres user then.
    as=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$dir"
        as=(runuser -u postgres --)
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    ctl="${as[*]} $bindir/pg_ctl -D $dir/data -l $dir/server.log -w -t 60 -m fast -o '-h 127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off'"
    if "${as[@]}" "$bindir/initdb" -D "$dir/data" -U drltune --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        && eval "$ctl start" >/dev/null \
        && "${as[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U drltune drltune_test; then
        PG_CI_STOPS+=("$ctl stop")
        export "DRLTUNE_TEST_POSTGRES${suffix}_URL=postgresql://drltune@127.0.0.1:$port/drltune_test"
        export "DRLTUNE_TEST_POSTGRES${suffix}_CTL=$ctl"
        echo "ci: PostgreSQL${suffix:+ $suffix} at postgresql://drltune@127.0.0.1:$port/drltune_test" >&2
    else
        echo "ci: PostgreSQL${suffix:+ $suffix} did not start; its tests will skip or share. Logs:" >&2
        cat "$dir"/*.log >&2 || true
        return 1
    fi
}

pg_ci_stop() {
    local cmd dir
    for cmd in "${PG_CI_STOPS[@]}"; do eval "$cmd" >/dev/null 2>&1 || true; done
    for dir in "${PG_CI_DIRS[@]}"; do rm -rf "$dir"; done
    PG_CI_STOPS=() PG_CI_DIRS=()
}
