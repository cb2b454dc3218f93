#!/usr/bin/env bash
# Make sure the real services the test suite needs are reachable, starting
# throwaway ones when they are not.
#
#   eval "$(scripts/services.sh env)"   # prints `export VAR=...` lines on stdout
#   scripts/services.sh stop            # stops only what this script started
#   scripts/services.sh status          # lists what this script started
#
# stdout carries nothing but the export lines (printed at the very end, only if
# every service came up), so a failure never leaves a half-evaluated environment.
# All progress goes to stderr.
#
# Exports: DATABASE_URL, REDIS_URL, CELERY_BROKER_URL, CHROMIUM_PATH, S3_ENDPOINT_URL
# (and installs the prometheus package, whose binaries the metrics tests run)
# (and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION test values when the
# endpoint is moto's server started here).
#
# For each service the order is:
#   1. the URL already in the environment, if it answers;
#   2. the default URL (overridable with PG_DEFAULT_URL / REDIS_DEFAULT_URL, so
#      the fallback path can be exercised without stopping the system services);
#   3. a throwaway server this script started earlier, if it still runs
#      (its URL is recorded in var/services/<name>.url);
#   4. a new throwaway server on a free loopback port, recorded in
#      var/services/started so that `stop` stops it, and nothing else.
#
# Adding a service (Prometheus, S3, ...): write ensure_<name> that sets its
# variables with add_export, and stop_<name> that `stop` calls for the lines
# "<name> ..." in var/services/started; then list it in cmd_env and cmd_stop.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$ROOT/var/services"
STARTED_FILE="$STATE_DIR/started"

PG_DEFAULT_URL="${PG_DEFAULT_URL:-postgres://postgres@127.0.0.1:5432/opsportal}"
REDIS_DEFAULT_URL="${REDIS_DEFAULT_URL:-redis://127.0.0.1:6379/0}"
CHROMIUM_BIN=/usr/lib/chromium/chromium

# Never hang on a server that accepts the TCP connection but does not answer.
export PGCONNECT_TIMEOUT=5

EXPORTS=()

# ---------------------------------------------------------------- helpers ---

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

add_export() { EXPORTS+=("$(printf 'export %s=%q' "$1" "$2")"); }

# url_part URL (path|dbname|port|scheme)  /  url_with_path URL PATH
# Python rather than bash pattern matching: URLs may carry users, passwords,
# query strings.
url_part() {
    python3 - "$1" "$2" <<'EOF'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
what = sys.argv[2]
if what == "path":
    print(p.path)
elif what == "dbname":
    print(u.unquote(p.path.lstrip("/")))
elif what == "port":
    print(p.port or "")
elif what == "scheme":
    print(p.scheme)
EOF
}
url_with_path() {
    python3 - "$1" "$2" <<'EOF'
import sys, urllib.parse as u
print(u.urlsplit(sys.argv[1])._replace(path=sys.argv[2]).geturl())
EOF
}

# A free TCP port on loopback (the kernel picks it; there is a small race
# between closing this socket and the server binding it, acceptable here).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

APT_UPDATED=0
apt_install() {
    local apt=(apt-get)
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install $*"
        apt=(sudo -n apt-get)
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        "${apt[@]}" update >&2
        APT_UPDATED=1
    fi
    log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "$@" >&2
}

# Record "<name> <args...>" in the started file, replacing an older entry.
record_started() {
    local name=$1; shift
    forget_started "$name"
    printf '%s %s\n' "$name" "$*" >>"$STARTED_FILE"
}
forget_started() {
    [ -f "$STARTED_FILE" ] || return 0
    local tmp
    tmp=$(mktemp "$STATE_DIR/started.XXXXXX")
    grep -v "^$1 " "$STARTED_FILE" >"$tmp" || true
    mv "$tmp" "$STARTED_FILE"
}
started_entry() {
    [ -f "$STARTED_FILE" ] || return 1
    grep -m1 "^$1 " "$STARTED_FILE"
}

# ------------------------------------------------------------- PostgreSQL ---

# Run a command as the cluster owner. initdb refuses to run as root, so as root
# we use the `postgres` system user; as anyone else we run it as ourselves.
as_pg_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        # cd /: the postgres user may not be able to enter our working directory.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

PG_BIN=""
find_pg_bin() {
    local d
    # Prefer the newest versioned directory; Debian does not put initdb on PATH.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then PG_BIN=$d; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        PG_BIN=$(dirname "$(command -v initdb)"); return 0
    fi
    return 1
}

# Does a database at URL accept a query? (-w: never prompt for a password.)
pg_query_ok() {
    psql -w -X -Atq -d "$1" -c 'select 1' >/dev/null 2>&1
}

# Does the server behind URL answer to its credentials? Checked through the
# `postgres` maintenance database, since the URL's own database need not exist.
pg_server_ok() {
    pg_isready -q -t 5 -d "$1" >/dev/null 2>&1 || return 1
    pg_query_ok "$1" || pg_query_ok "$(url_with_path "$1" /postgres)"
}

# Create the URL's database when missing. Best effort: Django's test runner only
# needs the server (it creates test_<name> itself).
pg_ensure_database() {
    local url=$1 db
    db=$(url_part "$url" dbname)
    [ -n "$db" ] || return 0
    pg_query_ok "$url" && return 0
    log "postgres: creating database $db"
    createdb -w --maintenance-db="$(url_with_path "$url" /postgres)" "$db" >&2 \
        || log "postgres: could not create database $db (continuing)"
}

# Is the throwaway cluster we recorded still running?
pg_throwaway_running() {
    local entry root bindir
    entry=$(started_entry postgres) || return 1
    read -r _ root bindir <<<"$entry"
    [ -d "$root/data" ] && as_pg_owner "$bindir/pg_ctl" status -D "$root/data" >/dev/null 2>&1
}

# Where the throwaway cluster lives: var/services/postgres, owned by postgres,
# unless that user cannot reach it (a parent not traversable) or the socket path
# would exceed the ~107 byte limit of a Unix socket; then a directory under /tmp.
pg_make_root() {
    local root="$STATE_DIR/postgres"
    rm -rf "$root"
    mkdir -p "$root"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$root"; fi
    chmod 700 "$root"
    if [ ${#root} -gt 80 ] || ! as_pg_owner test -w "$root" -a -x "$root"; then
        rm -rf "$root"
        root=$(mktemp -d /tmp/opsportal-pg.XXXXXX)
        if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$root"; fi
        log "postgres: $STATE_DIR is out of the postgres user's reach; using $root"
    fi
    printf '%s\n' "$root"
}

pg_start_throwaway() {
    local dbname=$1 root data port url entry
    find_pg_bin || { apt_install postgresql; find_pg_bin; } || die "no initdb/pg_ctl even after installing postgresql"

    # A stale cluster (its server gone) is throwaway data: start over.
    if entry=$(started_entry postgres); then
        log "postgres: discarding stale throwaway cluster"
        stop_postgres "$entry"
    fi

    root=$(pg_make_root)
    data="$root/data"
    port=$(free_port)
    log "postgres: initdb in $data ($PG_BIN)"
    # -N: skip fsync of the new files (throwaway data).
    if ! as_pg_owner "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale -N \
        >"$STATE_DIR/initdb.log" 2>&1; then
        cat "$STATE_DIR/initdb.log" >&2
        die "postgres: initdb failed"
    fi

    # Loopback only, socket inside the data dir (never touches /var/run/postgresql
    # of the system server); durability off, it is throwaway test data.
    as_pg_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF

# --- added by scripts/services.sh (throwaway test cluster) ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    # Recorded before starting so that `stop` can clean up a half-started one.
    record_started postgres "$root" "$PG_BIN"
    log "postgres: starting on 127.0.0.1:$port"
    if ! as_pg_owner "$PG_BIN/pg_ctl" start -w -t 60 -D "$data" -l "$root/postgres.log" >&2; then
        cat "$root/postgres.log" >&2 || true
        die "postgres: throwaway server did not start"
    fi
    url="postgres://postgres@127.0.0.1:$port/$dbname"
    printf '%s\n' "$url" >"$STATE_DIR/postgres.url"
    PG_URL=$url
}

stop_postgres() {  # stop_postgres "<started line>"
    local root bindir
    read -r _ root bindir <<<"$1"
    if [ -d "$root/data" ] && as_pg_owner "$bindir/pg_ctl" status -D "$root/data" >/dev/null 2>&1; then
        log "postgres: stopping throwaway cluster in $root"
        as_pg_owner "$bindir/pg_ctl" stop -D "$root/data" -m fast -w >&2 || true
    fi
    # Only ever remove the directories this script creates.
    case "$root" in
        "$STATE_DIR/postgres"|/tmp/opsportal-pg.*) rm -rf "$root" ;;
    esac
    rm -f "$STATE_DIR/postgres.url" "$STATE_DIR/initdb.log"
    forget_started postgres
}

ensure_postgres() {
    local url="" dbname
    PG_URL=""
    if [ -n "${DATABASE_URL:-}" ]; then
        if pg_server_ok "$DATABASE_URL"; then
            url=$DATABASE_URL; log "postgres: using DATABASE_URL"
        else
            log "postgres: DATABASE_URL does not answer; looking further"
        fi
    fi
    if [ -z "$url" ] && pg_server_ok "$PG_DEFAULT_URL"; then
        url=$PG_DEFAULT_URL; log "postgres: using $url"
    fi
    if [ -z "$url" ] && [ -f "$STATE_DIR/postgres.url" ] && pg_throwaway_running \
        && pg_server_ok "$(cat "$STATE_DIR/postgres.url")"; then
        url=$(cat "$STATE_DIR/postgres.url"); log "postgres: reusing throwaway server $url"
    fi
    if [ -z "$url" ]; then
        dbname=$(url_part "$PG_DEFAULT_URL" dbname)
        pg_start_throwaway "${dbname:-opsportal}"
        url=$PG_URL
        pg_server_ok "$url" || die "postgres: throwaway server does not answer at $url"
    fi
    pg_ensure_database "$url"
    add_export DATABASE_URL "$url"
}

# ------------------------------------------------------------------ Redis ---

redis_ok() {
    [ "$(timeout 5 redis-cli --no-auth-warning -u "$1" ping 2>/dev/null)" = PONG ]
}

redis_throwaway_running() {
    local entry pidfile pid
    entry=$(started_entry redis) || return 1
    read -r _ _ pidfile <<<"$entry"
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

redis_start_throwaway() {
    local db=$1 dir="$STATE_DIR/redis" port url i entry
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    if entry=$(started_entry redis); then
        log "redis: discarding stale throwaway server"
        stop_redis "$entry"
    fi
    mkdir -p "$dir"
    port=$(free_port)
    url="redis://127.0.0.1:$port/$db"
    log "redis: starting on 127.0.0.1:$port"
    # Nothing kept on disk: --save "" and no AOF.
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" >&2
    record_started redis "$url" "$dir/redis.pid"
    # --daemonize returns before the server listens.
    for i in $(seq 50); do
        redis_ok "$url" && break
        sleep 0.2
    done
    redis_ok "$url" || { cat "$dir/redis.log" >&2 || true; die "redis: throwaway server does not answer"; }
    printf '%s\n' "$url" >"$STATE_DIR/redis.url"
    REDIS_STARTED_URL=$url
}

stop_redis() {  # stop_redis "<started line>"
    local url pidfile pid
    read -r _ url pidfile <<<"$1"
    log "redis: stopping throwaway server $url"
    if ! redis-cli --no-auth-warning -u "$url" shutdown nosave >/dev/null 2>&1; then
        # Not answering: signal the process we started, by its recorded pid.
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" || true; fi
    fi
    rm -f "$STATE_DIR/redis.url"
    [ "$pidfile" != "$STATE_DIR/redis/redis.pid" ] || rm -rf "$STATE_DIR/redis"
    forget_started redis
}

ensure_redis() {
    local url="" broker db
    if [ -n "${REDIS_URL:-}" ]; then
        if redis_ok "$REDIS_URL"; then
            url=$REDIS_URL; log "redis: using REDIS_URL"
        else
            log "redis: REDIS_URL does not answer; looking further"
        fi
    fi
    if [ -z "$url" ] && redis_ok "$REDIS_DEFAULT_URL"; then
        url=$REDIS_DEFAULT_URL; log "redis: using $url"
    fi
    if [ -z "$url" ] && [ -f "$STATE_DIR/redis.url" ] && redis_throwaway_running \
        && redis_ok "$(cat "$STATE_DIR/redis.url")"; then
        url=$(cat "$STATE_DIR/redis.url"); log "redis: reusing throwaway server $url"
    fi
    if [ -z "$url" ]; then
        db=$(url_part "$REDIS_DEFAULT_URL" path); db=${db#/}
        redis_start_throwaway "${db:-0}"
        url=$REDIS_STARTED_URL
    fi
    add_export REDIS_URL "$url"

    # The Celery broker gets its own database (15) on the same server, so that
    # flushing the cache in tests never drops queued tasks, and vice versa.
    broker=""
    if [ -n "${CELERY_BROKER_URL:-}" ]; then
        if [ "$(url_part "$CELERY_BROKER_URL" scheme)" = redis ] && redis_ok "$CELERY_BROKER_URL"; then
            broker=$CELERY_BROKER_URL; log "redis: using CELERY_BROKER_URL"
        else
            log "redis: CELERY_BROKER_URL is not a Redis URL that answers; replacing it"
        fi
    fi
    [ -n "$broker" ] || broker=$(url_with_path "$url" /15)
    add_export CELERY_BROKER_URL "$broker"
}

# --------------------------------------------------------------- Chromium ---

ensure_chromium() {
    # Playwright drives the distribution's Chromium; it cannot download its own.
    if [ ! -x "$CHROMIUM_BIN" ]; then
        apt_install chromium
        [ -x "$CHROMIUM_BIN" ] || die "chromium installed but $CHROMIUM_BIN is missing"
    fi
    add_export CHROMIUM_PATH "$CHROMIUM_BIN"
}

# ----------------------------------------------------------------------- S3 ---

# moto's standalone S3 server (from the dev dependencies) on loopback, unless
# S3_ENDPOINT_URL names an endpoint that answers. Objects live in its memory.
MOTO_SERVER="$ROOT/.venv/bin/moto_server"

# Does anything answer HTTP at URL? (Any status: an S3 endpoint says 403 to an
# anonymous request.)
http_ok() {
    python3 - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=5)
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
EOF
}

s3_throwaway_running() {
    local entry pidfile pid
    entry=$(started_entry s3) || return 1
    read -r _ _ pidfile <<<"$entry"
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

s3_start_throwaway() {
    local dir="$STATE_DIR/s3" port url i entry
    [ -x "$MOTO_SERVER" ] || die "s3: $MOTO_SERVER is missing: run make install (moto[server] is a dev dependency)"
    if entry=$(started_entry s3); then
        log "s3: discarding stale throwaway server"
        stop_s3 "$entry"
    fi
    mkdir -p "$dir"
    port=$(free_port)
    url="http://127.0.0.1:$port"
    log "s3: starting moto's server on 127.0.0.1:$port"
    # setsid + nohup: it outlives this script, like the other throwaway servers.
    setsid nohup "$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$dir/moto.pid"
    record_started s3 "$url" "$dir/moto.pid"
    for i in $(seq 100); do
        http_ok "$url/moto-api/" && break
        sleep 0.2
    done
    http_ok "$url/moto-api/" || { cat "$dir/moto.log" >&2 || true; die "s3: moto's server does not answer"; }
    printf '%s\n' "$url" >"$STATE_DIR/s3.url"
    S3_STARTED_URL=$url
}

stop_s3() {  # stop_s3 "<started line>"
    local url pidfile pid
    read -r _ url pidfile <<<"$1"
    log "s3: stopping moto's server $url"
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid" || true; fi
    rm -f "$STATE_DIR/s3.url"
    [ "$pidfile" != "$STATE_DIR/s3/moto.pid" ] || rm -rf "$STATE_DIR/s3"
    forget_started s3
}

ensure_s3() {
    local url=""
    if [ -n "${S3_ENDPOINT_URL:-}" ]; then
        if http_ok "$S3_ENDPOINT_URL"; then
            log "s3: using S3_ENDPOINT_URL"
            add_export S3_ENDPOINT_URL "$S3_ENDPOINT_URL"
            return 0
        fi
        log "s3: S3_ENDPOINT_URL does not answer; looking further"
    fi
    if [ -f "$STATE_DIR/s3.url" ] && s3_throwaway_running \
        && http_ok "$(cat "$STATE_DIR/s3.url")/moto-api/"; then
        url=$(cat "$STATE_DIR/s3.url"); log "s3: reusing moto's server $url"
    fi
    if [ -z "$url" ]; then
        s3_start_throwaway
        url=$S3_STARTED_URL
    fi
    add_export S3_ENDPOINT_URL "$url"
    # moto accepts any keys: test values, so that real credentials never go near it.
    add_export AWS_ACCESS_KEY_ID testing
    add_export AWS_SECRET_ACCESS_KEY testing
    add_export AWS_DEFAULT_REGION us-east-1
}

# --------------------------------------------------------------- commands ---

ensure_prometheus() {
    # The metrics tests start their own Prometheus servers (tests/support/prometheus.py), each
    # on a free loopback port over the series the test wrote: only the binaries are needed.
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        apt_install prometheus
    fi
    command -v promtool >/dev/null 2>&1 || die "prometheus: promtool is missing after installing the package"
}

cmd_env() {
    mkdir -p "$STATE_DIR"
    ensure_postgres
    ensure_redis
    ensure_chromium
    ensure_prometheus
    ensure_s3
    printf '%s\n' "${EXPORTS[@]}"
}

cmd_stop() {
    local entry name
    [ -f "$STARTED_FILE" ] || { log "nothing started by this script"; return 0; }
    # Copy first: stop_* rewrite the started file.
    while read -r entry; do
        [ -n "$entry" ] || continue
        name=${entry%% *}
        case "$name" in
            postgres) stop_postgres "$entry" ;;
            redis) stop_redis "$entry" ;;
            s3) stop_s3 "$entry" ;;
            *) log "unknown entry in $STARTED_FILE: $entry" ;;
        esac
    done < <(cat "$STARTED_FILE")
    [ -s "$STARTED_FILE" ] || rm -f "$STARTED_FILE"
}

cmd_status() {
    if [ -s "$STARTED_FILE" ]; then cat "$STARTED_FILE"; else echo "nothing started by this script"; fi
}

case "${1:-}" in
    env) cmd_env ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 env|stop|status   (eval \"\$($0 env)\")" >&2; exit 2 ;;
esac
