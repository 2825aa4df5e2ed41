#!/usr/bin/env bash
# pgtide vs PostgreSQL direct vs PgBouncer, in one run: pgbench throughput, latency at 1 client,
# pooler CPU per transaction and pooler memory per idle client. Results and how to read them:
# docs/benchmarks.md.
#
# Usage: benches/compare.sh [--quick | --full] [--out FILE] [--json FILE]
#   --quick (default): 1 round x 3 s per cell, 2000 idle clients (about 3 minutes; a first look,
#                      no medians: use --full for figures to quote)
#   --full:            3 interleaved rounds x 20 s per cell, 10000 idle clients (about 31 minutes)
#   --out FILE:        also write the markdown report (always printed to stdout) to FILE
#   --json FILE:       write the results as a JSON document to FILE
# Environment:
#   COMPARE_ROUNDS, COMPARE_DURATION, COMPARE_IDLE_N override the mode's rounds, seconds per cell
#     and idle clients (COMPARE_ROUNDS=0: no pgbench rounds, only the idle-client test);
#   PGTIDE_BIN=/path/to/pgtide: use that binary and skip the cargo build;
#   RELAY_FLOOR_BIN=/path/to/relay-floor: likewise for the floor relay;
#   COMPARE_PGTIDE_WORKERS=N: pass --set pgtide.workers=N to pgtide (shown in the report);
#   KEEP_WORK=1 keeps the work directory (logs, TSVs) even on success.
# The estimated duration is printed at the start. Exit status: 0, or 1 if a pooler cell failed
# (the report is written first) or setup failed.
#
# What it does, all on 127.0.0.1, every process started here stopped by PID at the end (trap):
#  1. cargo build --release -p pgtide (CARGO_TARGET_DIR defaults to /var/cache/pgtide-target),
#     unless PGTIDE_BIN is set;
#  2. `pgtide demo --set pool.max_size=20 --set pool.adaptive.enabled=false` on a free port: a
#     throwaway PostgreSQL 15 cluster with pgtide (transaction mode, trust auth for clients) in
#     front of it. Before any pooler connects the cluster is tuned for benchmarking (ALTER
#     SYSTEM + restart): fsync, synchronous_commit and full_page_writes off, max_connections 300
#     (enough for 100 direct clients next to the 2 x 20 server connections of the poolers, NOT
#     for 500: direct at 500 clients fails, which is the point of a pooler), and trust auth for
#     the demo user from 127.0.0.1, so all three targets authenticate clients the same way;
#  3. pgbench -i -s 1 directly;
#  4. PgBouncer (installed with apt-get if missing; skipped if that fails), run as the
#     `postgres` OS user on a free port: transaction mode, default_pool_size 20, trust auth;
#  4b. the floor (benches/relay_floor.rs, built here unless RELAY_FLOOR_BIN is set): a 1:1 epoll
#     byte relay in front of PostgreSQL, the cheapest proxy the kernel allows, measured in the
#     scenarios with no more clients than the pool size (where pooling changes nothing): what
#     any pooler must pay for the extra hop, beside what pgtide and PgBouncer pay;
#  5. N idle clients (benches/idle_clients.py) to each pooler, right after a warm-up and before
#     the pgbench rounds (so no memory freed by earlier clients is reused): (VmRSS after -
#     before) / N;
#  6. interleaved rounds: in each round every scenario runs against direct, pgbouncer, pgtide
#     in turn (pgbench -n -T DURATION, -j 2, each bounded by timeout):
#       -S -M simple and -S -M extended at 10, 100, 500 clients;
#       -S -M prepared at 10 and 100 clients (direct and pgtide; PgBouncer 1.18 has no prepared
#         statements in transaction mode: it is tried once per client count, the verdict shown);
#       -N -M simple at 50 clients (pgbench's built-in simple-update, TPC-B-like writes);
#       -C -S -M simple at 20 clients (connection churn: a new connection per transaction);
#       -S -M simple -c 1 -j 1 --log: average and p50/p90/p99/p99.9 latency in microseconds
#         from the per-transaction log, and the latency each pooler adds to direct;
#     median tps per cell; pooler CPU (utime+stime from /proc/PID/stat) per 10k transactions
#     (for -C, per 10k connections: one per transaction); machine CPU (every process: busy time
#     in /proc/stat) per transaction, which is what bounds throughput on a CPU-bound machine. A failing pgbench is recorded as the
#     cell's "failed: <first error line>" and the run goes on;
#  7. the report (benches/report.py): markdown tables (throughput with pgtide/direct and
#     pgtide/pgbouncer ratios, CPU, latency, prepared, idle memory) and the JSON document.
# Needs root (runuser), PostgreSQL 15 in /usr/lib/postgresql/15/bin, pgbench, psql, python3.
set -euo pipefail

MODE=quick
OUT=""
JSON_OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --full) MODE=full ;;
        --out|--json)
            [ $# -ge 2 ] || { echo "compare.sh: $1 needs a file name" >&2; exit 2; }
            if [ "$1" = --out ]; then OUT="$2"; else JSON_OUT="$2"; fi
            shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = full ]; then
    ROUNDS=3; DURATION=20; IDLE_N=10000
else
    ROUNDS=1; DURATION=3; IDLE_N=2000
fi
# Overrides, e.g. COMPARE_ROUNDS=0 COMPARE_IDLE_N=10000 for the idle-client test alone.
ROUNDS="${COMPARE_ROUNDS:-$ROUNDS}"
DURATION="${COMPARE_DURATION:-$DURATION}"
IDLE_N="${COMPARE_IDLE_N:-$IDLE_N}"
WORKERS="${COMPARE_PGTIDE_WORKERS:-}"
for v in "$ROUNDS" "$DURATION" "$IDLE_N" ${WORKERS:+"$WORKERS"}; do
    [[ "$v" =~ ^[0-9]+$ ]] || { echo "compare.sh: COMPARE_* values must be integers" >&2; exit 2; }
done
[ "$DURATION" -ge 1 ] && [ "$DURATION" -le 600 ] && [ "$ROUNDS" -le 10 ] && [ "$IDLE_N" -le 15000 ] \
    || { echo "compare.sh: 1 to 600 s per cell, at most 10 rounds and 15000 idle clients" >&2; exit 2; }

POOL_SIZE=20
MAX_CONNECTIONS=300
SUPERUSER_RESERVED=3   # PostgreSQL's default superuser_reserved_connections
# Connections direct pgbench clients can get: the poolers keep up to POOL_SIZE each.
DIRECT_SLOTS=$((MAX_CONNECTIONS - SUPERUSER_RESERVED - 2 * POOL_SIZE))
THREADS=2

# Scenarios, in the order they run within a round: id, pgbench flags, clients, kind
# (tps | prepared | churn | latency).
SC_IDS=()
declare -A SC_FLAGS SC_CLIENTS SC_KIND
add_scenario() {
    SC_IDS+=("$1")
    SC_FLAGS[$1]="$2"
    SC_CLIENTS[$1]="$3"
    SC_KIND[$1]="$4"
}
for qmode in simple extended; do
    for clients in 10 100 500; do
        add_scenario "S-$qmode-$clients" "-S -M $qmode" "$clients" tps
    done
done
for clients in 10 100; do
    add_scenario "S-prepared-$clients" "-S -M prepared" "$clients" prepared
done
add_scenario "N-simple-50" "-N -M simple" 50 tps
add_scenario "C-S-simple-20" "-C -S -M simple" 20 churn
add_scenario "latency-S-simple-1" "-S -M simple" 1 latency
MAX_CLIENTS=0
for id in "${SC_IDS[@]}"; do
    if [ "${SC_CLIENTS[$id]}" -gt "$MAX_CLIENTS" ]; then MAX_CLIENTS="${SC_CLIENTS[$id]}"; fi
done
threads_for() { if [ "$1" -lt "$THREADS" ]; then echo "$1"; else echo "$THREADS"; fi; }

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
CLK_TCK="$(getconf CLK_TCK)"

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Estimate, from measured runs: setup about 20 s; a cell takes DURATION plus about 0.5 s, except
# the two direct cells at 500 clients (they fail at once) and PgBouncer's -M prepared (tried once
# per client count, 3 s); the idle-client test about 6 s plus N/2000 s per pooler.
FLOOR_SCENARIOS=0
for id in "${SC_IDS[@]}"; do
    if [ "${SC_CLIENTS[$id]}" -le "$POOL_SIZE" ] && [ "${SC_KIND[$id]}" != churn ]; then
        FLOOR_SCENARIOS=$((FLOOR_SCENARIOS + 1))
    fi
done
CELLS_PER_ROUND=$((${#SC_IDS[@]} * 3 - 4 + FLOOR_SCENARIOS))
EST_SECONDS=$((20 + ROUNDS * (CELLS_PER_ROUND * (2 * DURATION + 1) / 2 + 1) + 12 + 2 * (6 + IDLE_N / 2000)))
log "$MODE mode: $ROUNDS round(s) x ${DURATION}s per cell, ${#SC_IDS[@]} scenarios x 3 targets (+ the floor relay in $FLOOR_SCENARIOS), $IDLE_N idle clients;" \
    "estimated duration about $((EST_SECONDS / 60)) min $((EST_SECONDS % 60)) s (plus the build)"

for tool in pgbench psql python3 runuser timeout; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL 15 binaries not found in $PGBIN"
[ "$(id -u)" = 0 ] || die "run as root (PgBouncer and PostgreSQL run as the postgres OS user)"
id postgres >/dev/null 2>&1 || die "no postgres OS user"

# The idle-client test needs one descriptor per client in the helper and in each pooler; pgbench
# needs one per client (500 here; it uses poll(), so more than 1024 would work too, given fds).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NEED_FDS=$((IDLE_N + 500))
[ "$NEED_FDS" -lt $((MAX_CLIENTS + 200)) ] && NEED_FDS=$((MAX_CLIENTS + 200))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$NEED_FDS" ]; then
    die "ulimit -n is $(ulimit -n); need at least $NEED_FDS ($IDLE_N idle clients, $MAX_CLIENTS pgbench clients)"
fi

WORK="$(mktemp -d /tmp/pgtide-compare.XXXXXX)"
chmod 755 "$WORK"
# scenario target round status tps transactions cpu_seconds machine_cpu_seconds
#   avg_connection_ms lat_avg lat_p50 lat_p90 lat_p99 lat_p999 lat_n failure  ("-" when empty)
RESULTS="$WORK/results.tsv"
IDLE_RESULTS="$WORK/idle.tsv"   # target n_ok n_failed rss_before rss_after seconds note
META="$WORK/meta.tsv"           # key value
: >"$RESULTS"
: >"$IDLE_RESULTS"
: >"$META"
: >"$WORK/pgbouncer-prepared.tsv"
for id in "${SC_IDS[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$id" "${SC_FLAGS[$id]}" "${SC_CLIENTS[$id]}" "${SC_KIND[$id]}" \
        "$(threads_for "${SC_CLIENTS[$id]}")"
done >"$WORK/scenarios.tsv"
meta() { printf '%s\t%s\n' "$1" "$(tr '\t\n' '  ' <<<"$2" | sed 's/ *$//')" >>"$META"; }

PGTIDE_PID=""
PGB_PID=""
PGB_RUNUSER_PID=""
RELAY_PID=""
RELAY_PORT=""
HELPER_PID=""
PGDATA_DIR=""
POOLER_FAILURES=0

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# Sends $2 to PID $1, waits up to $3 seconds, then SIGKILL.
stop_pid() {
    local pid="$1" sig="$2" secs="$3" i
    alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    log "PID $pid still alive after SIG$sig and ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$HELPER_PID" TERM 10
    stop_pid "$RELAY_PID" TERM 5
    stop_pid "$PGB_PID" TERM 10
    stop_pid "$PGB_RUNUSER_PID" TERM 5
    if alive "$PGTIDE_PID"; then
        # SIGINT: pgtide demo drains, stops and removes its cluster.
        stop_pid "$PGTIDE_PID" INT 60
    fi
    # If pgtide had to be killed, its cluster may still run: stop it by its data directory.
    if [ -n "$PGDATA_DIR" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        log "stopping the leftover cluster in $PGDATA_DIR"
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -t 30 stop >/dev/null 2>&1 || true
    fi
    if [ "$rc" = 0 ] && [ -z "${KEEP_WORK:-}" ]; then
        rm -rf "$WORK"
    else
        log "logs kept in $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits (at most $2 seconds) until 127.0.0.1:$1 accepts TCP connections.
wait_port() {
    local port="$1" secs="$2" i
    for ((i = 0; i < secs * 10; i++)); do
        if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# utime+stime of PID in clock ticks; empty if the process is gone.
cpu_ticks() {
    # Fields after "(comm) ": state is 1st, utime the 12th, stime the 13th.
    sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }' || true
}

# Busy time of the whole machine (user, nice, system, irq, softirq of every CPU; not idle,
# iowait or steal) in clock ticks, from /proc/stat.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

vmrss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# ---------------------------------------------------------------- build
if [ -n "${PGTIDE_BIN:-}" ]; then
    # pgtide reads PGTIDE_* environment variables as config keys: keep this one to ourselves.
    export -n PGTIDE_BIN
    [ -x "$PGTIDE_BIN" ] || die "PGTIDE_BIN=$PGTIDE_BIN is not an executable file"
    PGTIDE_BUILD="binary from PGTIDE_BIN=$PGTIDE_BIN"
    log "using $PGTIDE_BIN (PGTIDE_BIN set: no build)"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/pgtide-target}"
    log "building pgtide (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    (cd "$ROOT" && cargo build --release -p pgtide) >&2
    PGTIDE_BIN="$CARGO_TARGET_DIR/release/pgtide"
    [ -x "$PGTIDE_BIN" ] || die "no binary at $PGTIDE_BIN"
    PGTIDE_BUILD="built here with $(rustc --version 2>/dev/null || echo 'rustc (version unknown)')"
fi
PGTIDE_VERSION="$("$PGTIDE_BIN" --version 2>/dev/null | head -n1 || true)"
if [ -n "${RELAY_FLOOR_BIN:-}" ]; then
    [ -x "$RELAY_FLOOR_BIN" ] || die "RELAY_FLOOR_BIN=$RELAY_FLOOR_BIN is not an executable file"
else
    log "building the floor relay (benches/relay_floor.rs)"
    (cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/pgtide-target}" \
        cargo build --release -p pgtide-benches --bin relay-floor) >&2
    RELAY_FLOOR_BIN="${CARGO_TARGET_DIR:-/var/cache/pgtide-target}/release/relay-floor"
    [ -x "$RELAY_FLOOR_BIN" ] || die "no binary at $RELAY_FLOOR_BIN"
fi

# ---------------------------------------------------------------- pgtide demo
PGTIDE_PORT="$(free_port)"
# Same client limit as PgBouncer's max_client_conn below, so both take the idle clients.
PGTIDE_SETS=(--set "pool.max_size=$POOL_SIZE" --set pool.adaptive.enabled=false
    --set "pgtide.max_client_conn=$((IDLE_N + 1000))")
[ -n "$WORKERS" ] && PGTIDE_SETS+=(--set "pgtide.workers=$WORKERS")
log "starting pgtide demo on 127.0.0.1:$PGTIDE_PORT (${PGTIDE_SETS[*]})"
"$PGTIDE_BIN" demo --listen "127.0.0.1:$PGTIDE_PORT" "${PGTIDE_SETS[@]}" \
    >"$WORK/pgtide.out" 2>"$WORK/pgtide.err" &
PGTIDE_PID=$!
DIRECT_URL=""
for ((i = 0; i < 1200; i++)); do
    DIRECT_URL="$(sed -n 's/^ *PostgreSQL (direct): *//p' "$WORK/pgtide.out" | head -n1)"
    [ -n "$DIRECT_URL" ] && break
    alive "$PGTIDE_PID" || die "pgtide demo exited: $(tail -n 20 "$WORK/pgtide.err")"
    sleep 0.1
done
[ -n "$DIRECT_URL" ] || die "pgtide demo printed no direct URL in 120 s"
wait_port "$PGTIDE_PORT" 60 || die "pgtide does not accept on $PGTIDE_PORT"
# postgres://demo:demo@127.0.0.1:PORT/demo
PG_PORT="$(sed -E 's|^.*@127\.0\.0\.1:([0-9]+)/.*$|\1|' <<<"$DIRECT_URL")"
[[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "cannot parse the port of $DIRECT_URL"
log "PostgreSQL on 127.0.0.1:$PG_PORT ($DIRECT_URL); pgtide PID $PGTIDE_PID, $(grep 'Max open files' "/proc/$PGTIDE_PID/limits" | awk '{ print "open files limit " $4 }')"

su_psql() { psql -X -q -A -t -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "$1"; }
PGDATA_DIR="$(su_psql 'SHOW data_directory')"
[ -d "$PGDATA_DIR" ] || die "cannot find the data directory ($PGDATA_DIR)"
HBA_FILE="$(su_psql 'SHOW hba_file')"
[ -f "$HBA_FILE" ] || die "cannot find pg_hba.conf ($HBA_FILE)"
log "tuning PostgreSQL for benchmarking (fsync off, max_connections $MAX_CONNECTIONS, trust for demo) and restarting"
for setting in "max_connections = $MAX_CONNECTIONS" "fsync = off" "synchronous_commit = off" "full_page_writes = off"; do
    su_psql "ALTER SYSTEM SET $setting" >/dev/null
done
# The demo cluster wants SCRAM from ordinary users; the poolers take clients with trust. Trust the
# demo user first, so that connection churn costs the same authentication on all three targets.
{ echo "host all demo 127.0.0.1/32 trust   # benches/compare.sh"; cat "$HBA_FILE"; } >"$WORK/pg_hba.conf"
cat "$WORK/pg_hba.conf" >"$HBA_FILE"   # keeps the file's owner and mode
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$(dirname "$PGDATA_DIR")/postgres.log" \
    -m fast -w -t 60 restart >/dev/null
wait_port "$PG_PORT" 60 || die "PostgreSQL did not come back after the restart"
PG_VERSION="$(su_psql 'SHOW server_version')"
[ "$(su_psql "SELECT auth_method FROM pg_hba_file_rules WHERE 'demo' = ANY(user_name) ORDER BY line_number LIMIT 1")" = trust ] \
    || die "the trust line for demo is not in effect in $HBA_FILE"
PG_SETTINGS="$(su_psql "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')")"
[ "$(su_psql 'SHOW max_connections')" = "$MAX_CONNECTIONS" ] || die "max_connections is not $MAX_CONNECTIONS after the restart"

export PGPASSWORD=demo
log "pgbench -i -s 1 (direct)"
pgbench -h 127.0.0.1 -p "$PG_PORT" -U demo -i -s 1 -q demo >"$WORK/pgbench-init.log" 2>&1 \
    || die "pgbench -i failed: $(tail -n 5 "$WORK/pgbench-init.log")"

# ---------------------------------------------------------------- PgBouncer
PGB_PORT=""
PGB_VERSION="PgBouncer unavailable"
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    log "installing PgBouncer (apt-get)"
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer) >"$WORK/apt.log" 2>&1; then
        log "PgBouncer could not be installed; continuing without it (see $WORK/apt.log)"
    fi
fi
PGB_BIN="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
if [ -x "$PGB_BIN" ]; then
    PGB_VERSION="$("$PGB_BIN" --version | head -n1)"
    PGB_PORT="$(free_port)"
    PGB_DIR="$WORK/pgbouncer"
    mkdir -p "$PGB_DIR"
    # PgBouncer 1.18 needs an auth_file even with auth_type = trust.
    echo '"demo" ""' >"$PGB_DIR/userlist.txt"
    cat >"$PGB_DIR/pgbouncer.ini" <<EOF
[databases]
demo = host=127.0.0.1 port=$PG_PORT dbname=demo user=demo password=demo

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $PGB_DIR/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $((IDLE_N + 1000))
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
EOF
    chown -R postgres: "$PGB_DIR"
    log "starting PgBouncer on 127.0.0.1:$PGB_PORT (as postgres)"
    # runuser's PAM session resets the soft descriptor limit (1024 here): raise it again inside.
    runuser -u postgres -- bash -c 'ulimit -n "$1" || true; exec "$2" "$3"' pgbouncer-launch \
        "$(ulimit -n)" "$PGB_BIN" "$PGB_DIR/pgbouncer.ini" >"$WORK/pgbouncer.out" 2>&1 &
    PGB_RUNUSER_PID=$!
    for ((i = 0; i < 300; i++)); do
        if [ -s "$PGB_DIR/pgbouncer.pid" ]; then
            PGB_PID="$(tr -d '[:space:]' <"$PGB_DIR/pgbouncer.pid")"
            break
        fi
        alive "$PGB_RUNUSER_PID" || break
        sleep 0.1
    done
    if [ -n "$PGB_PID" ] && wait_port "$PGB_PORT" 30; then
        log "PgBouncer PID $PGB_PID ($PGB_VERSION), $(grep 'Max open files' "/proc/$PGB_PID/limits" | awk '{ print "open files limit " $4 }')"
    else
        log "PgBouncer did not start; continuing without it: $(tail -n 5 "$WORK/pgbouncer.out" "$PGB_DIR/pgbouncer.log" 2>/dev/null)"
        stop_pid "$PGB_PID" TERM 5
        stop_pid "$PGB_RUNUSER_PID" TERM 5
        PGB_PID=""
        PGB_PORT=""
        PGB_VERSION="PgBouncer unavailable (did not start)"
    fi
fi

# ---------------------------------------------------------------- the floor relay
RELAY_PORT="$(free_port)"
"$RELAY_FLOOR_BIN" "127.0.0.1:$RELAY_PORT" "127.0.0.1:$PG_PORT" >"$WORK/relay.out" 2>&1 &
RELAY_PID=$!
if wait_port "$RELAY_PORT" 10 && alive "$RELAY_PID"; then
    log "floor relay on 127.0.0.1:$RELAY_PORT, PID $RELAY_PID"
else
    log "the floor relay did not start; continuing without it: $(tail -n 3 "$WORK/relay.out")"
    stop_pid "$RELAY_PID" TERM 5
    RELAY_PID=""
    RELAY_PORT=""
fi

TARGETS=(direct)
[ -n "$PGB_PORT" ] && TARGETS+=(pgbouncer)
TARGETS+=(pgtide)
[ -n "$RELAY_PORT" ] && TARGETS+=(floor)

# The floor relay pairs each client with a server connection of its own: it is measured only
# where pooling changes nothing (no more clients than the pool size; not -C, where it would pay
# PostgreSQL's connection setup as direct does).
measured_on() {
    local id="$1" t="$2"
    [ "$t" != floor ] || { [ "${SC_CLIENTS[$id]}" -le "$POOL_SIZE" ] && [ "${SC_KIND[$id]}" != churn ]; }
}

port_of() {
    case "$1" in
        direct) echo "$PG_PORT" ;;
        pgbouncer) echo "$PGB_PORT" ;;
        pgtide) echo "$PGTIDE_PORT" ;;
        floor) echo "$RELAY_PORT" ;;
    esac
}
pid_of() {
    case "$1" in
        pgbouncer) echo "$PGB_PID" ;;
        pgtide) echo "$PGTIDE_PID" ;;
        floor) echo "$RELAY_PID" ;;
        *) echo "" ;;
    esac
}

# Vacuum once, directly (as the superuser), so every run can use -n.
psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d demo -c 'VACUUM ANALYZE' >/dev/null

# ---------------------------------------------------------------- pgbench rounds
# The first line of a failed pgbench's output that says what went wrong, one line, no tabs.
first_error() {
    local out="$1" rc="$2" line
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "timed out (pgbench killed by timeout)"
        return
    fi
    line="$(grep -m1 -iE 'error|fatal|abort' "$out" || true)"
    [ -n "$line" ] || line="$(tail -n1 "$out")"
    [ -n "$line" ] || line="exit status $rc, no output"
    sed -e 's/^pgbench: //' <<<"$line" | tr '\t' ' ' | cut -c1-300
}

# Runs one cell: scenario $1 against target $2 in round $3; appends a row to $RESULTS.
run_cell() {
    local id="$1" t="$2" round="$3"
    local flags="${SC_FLAGS[$id]}" clients="${SC_CLIENTS[$id]}" kind="${SC_KIND[$id]}"
    local threads pid before after m_before m_after out rc=0 tps tx cpu="-" mcpu="-" conn_ms lat="- - - - - -" detail="-" status=ok
    local extra=() latdir=""
    threads="$(threads_for "$clients")"
    out="$WORK/pgbench-$id-$t-$round.log"
    if [ "$kind" = latency ]; then
        latdir="$WORK/latency-$t-$round"
        mkdir -p "$latdir"
        extra=(--log "--log-prefix=$latdir/lat")
    fi
    pid="$(pid_of "$t")"
    before=""
    [ -n "$pid" ] && before="$(cpu_ticks "$pid")"
    m_before="$(machine_ticks)"
    # shellcheck disable=SC2086  # $flags is split into pgbench options on purpose
    timeout -k 10 $((DURATION + 120)) pgbench -h 127.0.0.1 -p "$(port_of "$t")" -U demo -n $flags \
        -c "$clients" -j "$threads" -T "$DURATION" "${extra[@]}" demo >"$out" 2>&1 || rc=$?
    m_after="$(machine_ticks)"
    after=""
    [ -n "$pid" ] && after="$(cpu_ticks "$pid")"
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n1)"
    tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | head -n1)"
    conn_ms="$(sed -n 's/^average connection time = \([0-9.]*\) ms.*/\1/p' "$out" | head -n1)"
    if [ "$rc" != 0 ] || [ -z "$tps" ] || [ -z "$tx" ]; then
        status=failed
        detail="$(first_error "$out" "$rc")"
        [ "$rc" != 0 ] || detail="cannot read pgbench's output: $detail"
    fi
    if [ -n "$before" ] && [ -n "$after" ]; then
        cpu="$(awk -v a="$after" -v b="$before" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (a - b) / hz }')"
    fi
    mcpu="$(awk -v a="$m_after" -v b="$m_before" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (a - b) / hz }')"
    if [ "$status" = ok ] && [ -n "$latdir" ]; then
        if ! lat="$(python3 "$HERE/report.py" latency "$latdir"/lat.* 2>>"$out")"; then
            status=failed
            detail="no per-transaction latency log in $latdir"
            lat="- - - - - -"
        fi
    fi
    if [ "$status" = failed ] && [ "$t" != direct ] && [ "$t" != floor ]; then
        POOLER_FAILURES=$((POOLER_FAILURES + 1))
    fi
    local -a lat_fields
    read -r -a lat_fields <<<"$lat"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$t" "$round" "$status" \
        "${tps:--}" "${tx:--}" "$cpu" "$mcpu" "${conn_ms:--}" "${lat_fields[@]}" "$detail" >>"$RESULTS"
    if [ "$status" = ok ]; then
        local cpu_note=""
        [ "$cpu" = - ] || cpu_note=", $t CPU ${cpu}s"
        cpu_note="$cpu_note, machine CPU ${mcpu}s"
        log "round $round $t $flags -c $clients: $tps tps$cpu_note${latdir:+, latency avg/p50/p99 µs: ${lat_fields[0]}/${lat_fields[1]}/${lat_fields[3]}}"
    else
        log "round $round $t $flags -c $clients: FAILED: $detail"
    fi
}

# PgBouncer 1.18 has no prepared statements in transaction mode (1.21 added them): record, once
# per client count, how pgbench -M prepared fares.
prepared_verdict_pgbouncer() {
    local clients="$1" out verdict
    out="$WORK/pgbench-pgbouncer-prepared-$clients.log"
    if timeout -k 10 60 pgbench -h 127.0.0.1 -p "$PGB_PORT" -U demo -n -S -M prepared \
        -c "$clients" -j "$(threads_for "$clients")" -T 3 demo >"$out" 2>&1; then
        verdict="ran: $(sed -n 's/^tps = \([0-9.]*\).*/\1 tps/p' "$out" | head -n1), $(grep -c 'does not exist\|already exists' "$out" || true) statement errors"
    else
        verdict="failed: $(grep -m1 -E 'does not exist|already exists|error' "$out" | sed 's/^pgbench: //' || true)"
    fi
    printf '%s\t%s\n' "$clients" "$(tr '\t' ' ' <<<"$verdict")" >>"$WORK/pgbouncer-prepared.tsv"
    log "pgbouncer -M prepared -c $clients: $verdict"
}

# One warm-up run per target so each pooler has its server connections open before measuring.
for t in "${TARGETS[@]}"; do
    pgbench -h 127.0.0.1 -p "$(port_of "$t")" -U demo -n -S -M simple -c "$POOL_SIZE" -j "$THREADS" -T 2 demo \
        >"$WORK/warmup-$t.log" 2>&1 || die "warm-up through $t failed: $(tail -n 5 "$WORK/warmup-$t.log")"
done

# ---------------------------------------------------------------- idle clients
# Before the pgbench rounds, right after the warm-up: once 500 pgbench clients have come and gone,
# each pooler's allocator reuses their freed memory for idle clients and the growth measured
# here would be too small.
for t in pgtide pgbouncer; do
    pid="$(pid_of "$t")"
    [ -n "$pid" ] || continue
    if ! alive "$pid"; then
        printf '%s\t0\t%s\t0\t0\t-\t%s\n' "$t" "$IDLE_N" "not measured: the $t process is gone" >>"$IDLE_RESULTS"
        POOLER_FAILURES=$((POOLER_FAILURES + 1))
        continue
    fi
    sleep 2
    rss_before="$(vmrss_kib "$pid")"
    log "opening $IDLE_N idle clients to $t (VmRSS before: $rss_before KiB)"
    helper_out="$WORK/idle-$t.out"
    python3 "$HERE/idle_clients.py" 127.0.0.1 "$(port_of "$t")" "$IDLE_N" --max-seconds 300 --hold 900 \
        >"$helper_out" 2>"$WORK/idle-$t.err" &
    HELPER_PID=$!
    ready=""
    for ((i = 0; i < 3300; i++)); do
        ready="$(grep '^ready ' "$helper_out" || true)"
        [ -n "$ready" ] && break
        alive "$HELPER_PID" || break
        sleep 0.1
    done
    if [ -z "$ready" ]; then
        note="idle client helper did not finish: $(tail -n 1 "$WORK/idle-$t.err" | tr '\t' ' ')"
        log "$t: $note"
        printf '%s\t0\t%s\t%s\t%s\t-\t%s\n' "$t" "$IDLE_N" "${rss_before:-0}" "${rss_before:-0}" "$note" >>"$IDLE_RESULTS"
        POOLER_FAILURES=$((POOLER_FAILURES + 1))
    else
        sleep 3
        rss_after="$(vmrss_kib "$pid")"
        read -r _ n_ok n_failed secs <<<"$ready"
        note="-"
        if [ "$n_failed" != 0 ]; then
            note="$(grep -m1 'first failure' "$WORK/idle-$t.err" | sed 's/^idle_clients: //' | tr '\t' ' ' || true)"
            log "first failure: $note"
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$n_ok" "$n_failed" "${rss_before:-0}" "${rss_after:-0}" "$secs" "${note:--}" >>"$IDLE_RESULTS"
        log "$t: $n_ok idle clients open ($n_failed failed) in ${secs}s; VmRSS after: $rss_after KiB"
    fi
    stop_pid "$HELPER_PID" TERM 30
    HELPER_PID=""
done

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START_SECONDS=$SECONDS
log "pgbench: $ROUNDS round(s) x ${#SC_IDS[@]} scenarios x ${#TARGETS[@]} targets, ${DURATION}s per cell"
for ((round = 1; round <= ROUNDS; round++)); do
    for id in "${SC_IDS[@]}"; do
        for t in "${TARGETS[@]}"; do
            if [ "${SC_KIND[$id]}" = prepared ] && [ "$t" = pgbouncer ]; then
                [ "$round" = 1 ] && prepared_verdict_pgbouncer "${SC_CLIENTS[$id]}"
                continue
            fi
            measured_on "$id" "$t" || continue
            run_cell "$id" "$t" "$round"
        done
    done
    log "round $round done ($((SECONDS - START_SECONDS)) s so far)"
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- report
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta cpus "$(nproc)"
meta cpu_model "$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
meta mem_gib "$(awk '/MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
meta load_before "$LOAD_BEFORE"
meta load_after "$LOAD_AFTER"
meta pgtide_version "${PGTIDE_VERSION:-pgtide (version unknown)}"
meta pgtide_build "$PGTIDE_BUILD"
meta postgresql "$PG_VERSION"
meta pgbouncer "$PGB_VERSION"
meta pgbench "$(pgbench --version)"
meta floor "${RELAY_PORT:+relay-floor (benches/relay_floor.rs), 1:1, one thread, epoll}"
meta mode "$MODE"
meta rounds "$ROUNDS"
meta duration "$DURATION"
meta idle_n "$IDLE_N"
meta pool_size "$POOL_SIZE"
meta workers "$WORKERS"
meta threads "$THREADS"
meta max_connections "$MAX_CONNECTIONS"
meta direct_slots "$DIRECT_SLOTS"
meta pg_settings "$PG_SETTINGS"
meta pgtide_sets "${PGTIDE_SETS[*]}"

REPORT="$WORK/report.md"
python3 "$HERE/report.py" report "$WORK" --md "$REPORT" ${JSON_OUT:+--json "$WORK/report.json"} \
    || die "report generation failed"
cat "$REPORT"
if [ -n "$OUT" ]; then
    cp "$REPORT" "$OUT"
    log "report written to $OUT"
fi
if [ -n "$JSON_OUT" ]; then
    cp "$WORK/report.json" "$JSON_OUT"
    log "JSON written to $JSON_OUT"
fi
log "done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
if [ "$POOLER_FAILURES" -gt 0 ]; then
    die "$POOLER_FAILURES pooler cell(s) failed (see the report's Failures section)"
fi
