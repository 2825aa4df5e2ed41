#!/usr/bin/env bash
# pgtide vs PostgreSQL direct vs PgBouncer: pgbench throughput, pooler CPU per transaction,
# and pooler memory per idle client. First version of the comparison harness; results and how
# to read them: docs/benchmarks.md.
#
# Usage: benches/compare.sh [--quick | --full] [--out FILE]
#   --quick (default): 2 interleaved rounds x 10 s per cell, 2000 idle clients
#   --full:            3 interleaved rounds x 30 s per cell, 10000 idle clients
#   --out FILE:        also write the markdown report to FILE
#   COMPARE_ROUNDS, COMPARE_DURATION, COMPARE_IDLE_N (environment) override the mode's values
#   (COMPARE_ROUNDS=0: no pgbench rounds, only the idle-client test); KEEP_WORK=1 keeps logs.
#
# What it does, all on 127.0.0.1, every process started here stopped by PID at the end:
#  1. cargo build --release -p pgtide (CARGO_TARGET_DIR defaults to /var/cache/pgtide-target);
#  2. `pgtide demo --set pool.max_size=20` on a free port: a throwaway PostgreSQL 15 cluster
#     with pgtide (transaction mode, trust auth for clients) in front of it; pgtide is tuned in
#     no other way. The cluster's max_connections is raised to 300 (ALTER SYSTEM + restart,
#     before any pooler connects) so that 100 direct pgbench clients fit next to the 2 x 20
#     server connections the poolers keep open;
#  3. pgbench -i -s 1 directly;
#  4. PgBouncer (installed with apt-get if missing; skipped if that fails), run as the
#     `postgres` OS user on a free port: transaction mode, default_pool_size 20, trust auth;
#  5. interleaved rounds (direct, pgbouncer, pgtide, repeat) of pgbench -S -n -j 2 in
#     -M simple and -M extended at 10 and 100 clients; median tps per cell, pooler CPU
#     (utime+stime from /proc/PID/stat) per 10k transactions;
#  6. N idle clients (benches/idle_clients.py) to each pooler: (VmRSS after - before) / N.
# Needs root (runuser), PostgreSQL 15 in /usr/lib/postgresql/15/bin, pgbench, psql, python3.
set -euo pipefail

MODE=quick
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) MODE=quick ;;
        --full) MODE=full ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = full ]; then
    ROUNDS=3; DURATION=30; IDLE_N=10000
else
    ROUNDS=2; DURATION=10; IDLE_N=2000
fi
# Overrides, e.g. COMPARE_ROUNDS=0 COMPARE_IDLE_N=10000 for the idle-client test alone.
ROUNDS="${COMPARE_ROUNDS:-$ROUNDS}"
DURATION="${COMPARE_DURATION:-$DURATION}"
IDLE_N="${COMPARE_IDLE_N:-$IDLE_N}"
for v in "$ROUNDS" "$DURATION" "$IDLE_N"; do
    [[ "$v" =~ ^[0-9]+$ ]] || { echo "compare.sh: COMPARE_* values must be integers" >&2; exit 2; }
done
[ "$DURATION" -le 600 ] && [ "$ROUNDS" -le 10 ] && [ "$IDLE_N" -le 15000 ] \
    || { echo "compare.sh: at most 10 rounds of 600 s and 15000 idle clients" >&2; exit 2; }
CLIENT_COUNTS=(10 100)
QUERY_MODES=(simple extended prepared)
THREADS=2

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PGBIN=/usr/lib/postgresql/15/bin
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/pgtide-target}"
CLK_TCK="$(getconf CLK_TCK)"

log() { printf '[compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in pgbench psql python3 runuser; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x "$PGBIN/pg_ctl" ] || die "PostgreSQL 15 binaries not found in $PGBIN"
[ "$(id -u)" = 0 ] || die "run as root (PgBouncer and PostgreSQL run as the postgres OS user)"
id postgres >/dev/null 2>&1 || die "no postgres OS user"

# Idle-client test needs one descriptor per client in the helper and in each pooler.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_N + 500)) ]; then
    die "ulimit -n is $(ulimit -n); need at least $((IDLE_N + 500)) for $IDLE_N idle clients"
fi

WORK="$(mktemp -d /tmp/pgtide-compare.XXXXXX)"
chmod 755 "$WORK"
RESULTS="$WORK/results.tsv"   # target mode clients round tps transactions cpu_seconds
: >"$RESULTS"

PGTIDE_PID=""
PGB_PID=""
PGB_RUNUSER_PID=""
HELPER_PID=""
PGDATA_DIR=""

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

# utime+stime of PID in clock ticks.
cpu_ticks() {
    # Fields after "(comm) ": state is 1st, utime the 12th, stime the 13th.
    sed -e 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

vmrss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- build
log "building pgtide (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$ROOT" && cargo build --release -p pgtide) >&2
PGTIDE_BIN="$CARGO_TARGET_DIR/release/pgtide"
[ -x "$PGTIDE_BIN" ] || die "no binary at $PGTIDE_BIN"

# ---------------------------------------------------------------- pgtide demo
PGTIDE_PORT="$(free_port)"
log "starting pgtide demo on 127.0.0.1:$PGTIDE_PORT (pool.max_size=20)"
"$PGTIDE_BIN" demo --listen "127.0.0.1:$PGTIDE_PORT" --set pool.max_size=20 \
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
log "raising max_connections to 300 (restart) so 100 direct clients fit beside the poolers"
su_psql 'ALTER SYSTEM SET max_connections = 300' >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$(dirname "$PGDATA_DIR")/postgres.log" \
    -m fast -w -t 60 restart >/dev/null
wait_port "$PG_PORT" 60 || die "PostgreSQL did not come back after the restart"
PG_VERSION="$(su_psql 'SHOW server_version')"

export PGPASSWORD=demo
log "pgbench -i -s 1 (direct)"
pgbench -h 127.0.0.1 -p "$PG_PORT" -U demo -i -s 1 -q demo >"$WORK/pgbench-init.log" 2>&1 \
    || die "pgbench -i failed: $(tail -n 5 "$WORK/pgbench-init.log")"

# ---------------------------------------------------------------- PgBouncer
PGB_PORT=""
PGB_VERSION="unavailable"
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
default_pool_size = 20
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
        PGB_VERSION="unavailable (did not start)"
    fi
fi

TARGETS=(direct)
[ -n "$PGB_PORT" ] && TARGETS+=(pgbouncer)
TARGETS+=(pgtide)

port_of() {
    case "$1" in
        direct) echo "$PG_PORT" ;;
        pgbouncer) echo "$PGB_PORT" ;;
        pgtide) echo "$PGTIDE_PORT" ;;
    esac
}
pid_of() {
    case "$1" in
        pgbouncer) echo "$PGB_PID" ;;
        pgtide) echo "$PGTIDE_PID" ;;
        *) echo "" ;;
    esac
}

# Vacuum once, directly (as the superuser), so every run can use -n.
psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d demo -c 'VACUUM ANALYZE' >/dev/null

# ---------------------------------------------------------------- pgbench rounds
# One warm-up run per pooler so each has its server connections open before measuring.
for t in "${TARGETS[@]}"; do
    pgbench -h 127.0.0.1 -p "$(port_of "$t")" -U demo -n -S -M simple -c 20 -j "$THREADS" -T 2 demo \
        >"$WORK/warmup-$t.log" 2>&1 || die "warm-up through $t failed: $(tail -n 5 "$WORK/warmup-$t.log")"
done

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
TOTAL_RUNS=$((ROUNDS * ${#QUERY_MODES[@]} * ${#CLIENT_COUNTS[@]} * ${#TARGETS[@]}))
log "pgbench: $ROUNDS rounds x ${DURATION}s, $TOTAL_RUNS runs (about $((TOTAL_RUNS * (DURATION + 1) / 60 + 1)) min)"
run=0
for ((round = 1; round <= ROUNDS; round++)); do
    for qmode in "${QUERY_MODES[@]}"; do
        for clients in "${CLIENT_COUNTS[@]}"; do
            for t in "${TARGETS[@]}"; do
                run=$((run + 1))
                if [ "$qmode" = prepared ] && [ "$t" = pgbouncer ]; then
                    # PgBouncer 1.18 has no prepared statements in transaction mode (1.21 added
                    # them): record, once per client count, how pgbench -M prepared fares.
                    if [ "$round" = 1 ]; then
                        out="$WORK/pgbench-$t-$qmode-$clients.log"
                        if timeout 60 pgbench -h 127.0.0.1 -p "$PGB_PORT" -U demo -n -S -M prepared \
                            -c "$clients" -j "$THREADS" -T 3 demo >"$out" 2>&1; then
                            verdict="ran: $(sed -n 's/^tps = \([0-9.]*\).*/\1 tps/p' "$out" | head -n1), $(grep -c 'does not exist\|already exists' "$out") statement errors"
                        else
                            verdict="failed: $(grep -m1 -E 'does not exist|already exists|error' "$out" | sed 's/^pgbench: //')"
                        fi
                        printf '%s\t%s\n' "$clients" "$verdict" >>"$WORK/pgbouncer-prepared.tsv"
                        log "[$run/$TOTAL_RUNS] pgbouncer -M prepared -c $clients: $verdict"
                    fi
                    continue
                fi
                pid="$(pid_of "$t")"
                before=0
                [ -n "$pid" ] && before="$(cpu_ticks "$pid")"
                out="$WORK/pgbench-$t-$qmode-$clients-$round.log"
                if ! timeout $((DURATION + 120)) pgbench -h 127.0.0.1 -p "$(port_of "$t")" -U demo -n -S \
                    -M "$qmode" -c "$clients" -j "$THREADS" -T "$DURATION" demo >"$out" 2>&1; then
                    die "pgbench through $t ($qmode, $clients clients) failed: $(tail -n 5 "$out")"
                fi
                after=0
                [ -n "$pid" ] && after="$(cpu_ticks "$pid")"
                tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n1)"
                tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out" | head -n1)"
                [ -n "$tps" ] && [ -n "$tx" ] || die "cannot read pgbench output $out"
                cpu="$(awk -v a="$after" -v b="$before" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", (a - b) / hz }')"
                [ -n "$pid" ] || cpu="-"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$qmode" "$clients" "$round" "$tps" "$tx" "$cpu" >>"$RESULTS"
                log "[$run/$TOTAL_RUNS] round $round $t -M $qmode -c $clients: $tps tps, pooler CPU ${cpu}s"
            done
        done
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- idle clients
IDLE_RESULTS="$WORK/idle.tsv"   # target n_ok n_failed rss_before rss_after seconds
: >"$IDLE_RESULTS"
for t in pgtide pgbouncer; do
    pid="$(pid_of "$t")"
    [ -n "$pid" ] || continue
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
    [ -n "$ready" ] || die "idle client helper for $t did not finish: $(tail -n 5 "$WORK/idle-$t.err")"
    sleep 3
    rss_after="$(vmrss_kib "$pid")"
    read -r _ n_ok n_failed secs <<<"$ready"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$n_ok" "$n_failed" "$rss_before" "$rss_after" "$secs" >>"$IDLE_RESULTS"
    log "$t: $n_ok idle clients open ($n_failed failed) in ${secs}s; VmRSS after: $rss_after KiB"
    [ "$n_failed" = 0 ] || log "first failure: $(grep 'first failure' "$WORK/idle-$t.err" || true)"
    stop_pid "$HELPER_PID" TERM 30
    HELPER_PID=""
done

# ---------------------------------------------------------------- report
REPORT="$WORK/report.md"
python3 - "$RESULTS" "$IDLE_RESULTS" >"$REPORT" <<'PY'
import statistics, sys
from collections import defaultdict

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
tps = defaultdict(list)
cpu = defaultdict(lambda: [0.0, 0])
for target, mode, clients, _round, t, tx, c in rows:
    key = (mode, int(clients))
    tps[(target, key)].append(float(t))
    if c != "-":
        cpu[(target, key)][0] += float(c)
        cpu[(target, key)][1] += int(tx)
keys = sorted({(m, c) for (_, (m, c)) in tps}, key=lambda k: (["simple", "extended", "prepared"].index(k[0]), k[1]))
med = lambda t, k: statistics.median(tps[(t, k)]) if (t, k) in tps else None

if not keys:
    print("(no pgbench rounds)")
    print()
print("| pgbench -S | clients | direct tps | pgbouncer tps | pgtide tps | pgtide/direct | pgtide/pgbouncer |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k in keys:
    d, b, p = med("direct", k), med("pgbouncer", k), med("pgtide", k)
    fmt = lambda v: f"{v:,.0f}" if v is not None else "n/a"
    ratio = lambda a, z: f"{a / z:.2f}" if a is not None and z else "n/a"
    print(f"| -M {k[0]} | {k[1]} | {fmt(d)} | {fmt(b)} | {fmt(p)} | {ratio(p, d)} | {ratio(p, b)} |")
print()
print("Median of the rounds; each round's tps per cell:")
print()
for k in keys:
    cells = "; ".join(f"{t} " + ", ".join(f"{v:,.0f}" for v in tps[(t, k)])
                      for t in ("direct", "pgbouncer", "pgtide") if (t, k) in tps)
    print(f"- -M {k[0]}, {k[1]} clients: {cells}")
print()
print("| pooler CPU s per 10k transactions | clients | pgbouncer | pgtide | pgtide/pgbouncer |")
print("|---|---:|---:|---:|---:|")
for k in keys:
    per = {}
    for t in ("pgbouncer", "pgtide"):
        s, n = cpu.get((t, k), (0.0, 0))
        per[t] = s / n * 10_000 if n else None
    fmt = lambda v: f"{v:.3f}" if v is not None else "n/a"
    r = f"{per['pgtide'] / per['pgbouncer']:.2f}" if per["pgtide"] and per["pgbouncer"] else "n/a"
    print(f"| -M {k[0]} | {k[1]} | {fmt(per['pgbouncer'])} | {fmt(per['pgtide'])} | {r} |")
print()
prep = [k for k in keys if k[0] == "prepared"]
if prep:
    print("| pgtide -M prepared | clients | pgtide prepared tps | pgtide extended tps | prepared/extended (gain from not re-parsing) | pgtide prepared / direct prepared |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in prep:
        p, e, d = med("pgtide", k), med("pgtide", ("extended", k[1])), med("direct", k)
        ratio = lambda a, z: f"{a / z:.2f}" if a is not None and z else "n/a"
        print(f"| | {k[1]} | {p:,.0f} | {e:,.0f} | {ratio(p, e)} | {ratio(p, d)} |")
    print()
idle = [l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip()]
if idle:
    print("| idle clients | opened | failed | VmRSS before (KiB) | VmRSS after (KiB) | KiB per idle client |")
    print("|---|---:|---:|---:|---:|---:|")
    for t, ok, failed, before, after, secs in idle:
        per = (int(after) - int(before)) / int(ok) if int(ok) else float("nan")
        print(f"| {t} | {ok} | {failed} | {int(before):,} | {int(after):,} | {per:.2f} |")
PY

{
    echo "# pgtide comparison ($MODE mode: $ROUNDS rounds x ${DURATION}s, $IDLE_N idle clients)"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
    echo "- load average before/after the pgbench rounds: $LOAD_BEFORE / $LOAD_AFTER"
    echo "- $(rustc --version); PostgreSQL $PG_VERSION; $PGB_VERSION; $(pgbench --version)"
    echo "- pgbench -n -S -j $THREADS -T $DURATION, scale 1; pools: 20 server connections (pgtide pool.max_size, PgBouncer default_pool_size), transaction mode"
    echo
    cat "$REPORT"
    if [ -s "$WORK/pgbouncer-prepared.tsv" ]; then
        echo
        echo "PgBouncer with pgbench -M prepared (transaction mode, $PGB_VERSION):"
        echo
        while IFS=$'\t' read -r c v; do echo "- $c clients: $v"; done <"$WORK/pgbouncer-prepared.tsv"
    fi
} >"$WORK/full-report.md"
cat "$WORK/full-report.md"
if [ -n "$OUT" ]; then
    cp "$WORK/full-report.md" "$OUT"
    log "report written to $OUT"
fi
