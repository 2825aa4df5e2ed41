#!/usr/bin/env bash
# pgtide's user-space instructions per transaction, counted by valgrind's callgrind: a figure
# that does not move with the machine's load, unlike CPU time, so a hot-path change of a few
# percent can be measured before and after (docs/benchmarks.md, "Profile and changes").
#
# Usage: benches/instructions.sh [--clients N] [--transactions T] [--mode simple|extended|prepared]
#   defaults: 10 clients, 10000 transactions, -M simple (pgbench -S, select-only)
# Environment: PGTIDE_BIN=/path/to/pgtide skips the build; KEEP_WORK=1 keeps the callgrind file.
#
# What it does: starts `pgtide demo` (a throwaway PostgreSQL and pgtide in front of it) under
# callgrind with instrumentation off, initialises pgbench's tables directly, warms the pool up
# through pgtide, then counts only while `pgbench -S -t` runs through pgtide, and prints the
# instructions per transaction, in total and by function (code inlined into a function is
# counted in it). Counts cover pgtide's process only (user space, its libc calls included; not
# the kernel). The server connections are open before counting starts; pgbench's own logins
# (one per client) are counted. Needs root (the demo runs PostgreSQL as the postgres OS user)
# and valgrind (installed with apt-get if missing). Takes about a minute.
set -euo pipefail

CLIENTS=10
TRANSACTIONS=10000
QMODE=simple
while [ $# -gt 0 ]; do
    case "$1" in
        --clients) CLIENTS="$2"; shift ;;
        --transactions) TRANSACTIONS="$2"; shift ;;
        --mode) QMODE="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "instructions.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[[ "$CLIENTS" =~ ^[0-9]+$ && "$TRANSACTIONS" =~ ^[0-9]+$ && "$CLIENTS" -ge 1 && "$CLIENTS" -le 200 ]] \
    || { echo "instructions.sh: --clients 1..200 and --transactions must be integers" >&2; exit 2; }
case "$QMODE" in simple|extended|prepared) ;; *) echo "instructions.sh: --mode simple|extended|prepared" >&2; exit 2 ;; esac
PER_CLIENT=$(( (TRANSACTIONS + CLIENTS - 1) / CLIENTS ))
THREADS=$(( CLIENTS < 2 ? CLIENTS : 2 ))

log() { printf '[instructions %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the demo runs PostgreSQL as the postgres OS user)"
for tool in pgbench psql python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
if ! command -v callgrind_control >/dev/null; then
    log "installing valgrind"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind) >&2 \
        || die "valgrind is not installed and apt-get could not install it"
fi

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
if [ -z "${PGTIDE_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/pgtide-target}"
    (cd "$ROOT" && cargo build --release -p pgtide) >&2
    PGTIDE_BIN="$CARGO_TARGET_DIR/release/pgtide"
fi
export -n PGTIDE_BIN   # pgtide reads PGTIDE_* variables as config keys
[ -x "$PGTIDE_BIN" ] || die "no pgtide binary at $PGTIDE_BIN"

WORK="$(mktemp -d /tmp/pgtide-instructions.XXXXXX)"
PID=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -INT "$PID" 2>/dev/null || true   # the demo stops and removes its cluster
        for _ in $(seq 1 600); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    if [ "$rc" = 0 ] && [ -z "${KEEP_WORK:-}" ]; then rm -rf "$WORK"; else log "files kept in $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log "starting pgtide demo under callgrind on 127.0.0.1:$PORT"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/callgrind.out" \
    "$PGTIDE_BIN" demo --listen "127.0.0.1:$PORT" --set pool.max_size=20 --set pool.adaptive.enabled=false \
    >"$WORK/pgtide.out" 2>"$WORK/pgtide.err" &
PID=$!
DIRECT_PORT=""
for _ in $(seq 1 1800); do
    DIRECT_PORT="$(sed -n 's|^ *PostgreSQL (direct): *.*@127\.0\.0\.1:\([0-9]*\)/.*$|\1|p' "$WORK/pgtide.out" | head -n1)"
    [ -n "$DIRECT_PORT" ] && break
    kill -0 "$PID" 2>/dev/null || die "pgtide demo exited: $(tail -n 20 "$WORK/pgtide.err")"
    sleep 0.1
done
[ -n "$DIRECT_PORT" ] || die "pgtide demo printed no direct URL in 180 s"
export PGPASSWORD=demo
for _ in $(seq 1 600); do
    psql -X -q -h 127.0.0.1 -p "$PORT" -U demo -d demo -c 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
done
pgbench -h 127.0.0.1 -p "$DIRECT_PORT" -U demo -i -s 1 -q demo >"$WORK/init.log" 2>&1 \
    || die "pgbench -i failed: $(tail -n 5 "$WORK/init.log")"
run_pgbench() {
    pgbench -h 127.0.0.1 -p "$PORT" -U demo -n -S -M "$QMODE" -c "$CLIENTS" -j "$THREADS" -t "$1" demo
}
run_pgbench 200 >"$WORK/warmup.log" 2>&1 || die "warm-up failed: $(tail -n 5 "$WORK/warmup.log")"
callgrind_control -i on "$PID" >/dev/null 2>&1
run_pgbench "$PER_CLIENT" >"$WORK/pgbench.log" 2>&1 || die "pgbench failed: $(tail -n 5 "$WORK/pgbench.log")"
callgrind_control -i off "$PID" >/dev/null 2>&1
TX="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/pgbench.log")"
[ -n "$TX" ] && [ "$TX" -gt 0 ] || die "cannot read pgbench's transaction count"
kill -INT "$PID"
wait "$PID" || true
PID=""

echo "pgbench -S -M $QMODE -c $CLIENTS -j $THREADS: $TX transactions through pgtide ($("$PGTIDE_BIN" --version | head -n1))"
callgrind_annotate --inclusive=no --auto=no "$WORK/callgrind.out" 2>/dev/null \
    | grep -E '^ *[0-9,]+ \(' | grep -v 'PROGRAM TOTALS' | sed -e 's/ (.*%)  / /; s/,//g' \
    | awk -v tx="$TX" '{
        n = $1; $1 = ""; sub(/^ [^:]*:/, ""); sub(/ \[.*\]$/, ""); by[$0] += n; total += n
      } END {
        printf "%8.0f instructions per transaction (user space, pgtide process)\n", total / tx
        for (f in by) printf "%8.0f %s\n", by[f] / tx, f
      }' | { read -r first; echo "$first"; sort -rn | awk 'NR <= 30'; }   # not head: under pipefail its early exit fails the run
