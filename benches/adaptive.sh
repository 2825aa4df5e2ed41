#!/usr/bin/env bash
# The phased benchmark of adaptive sizing (docs/adaptive.md, issue 17): the same phased workload
# through pgtide with the adaptive controller and with fixed pool sizes, one after another
# against the same throwaway PostgreSQL (`pgtide demo`), per phase: throughput, latency p50/p99,
# failed transactions (acquire timeouts), and the server connection-seconds pgtide held.
#
# Usage: benches/adaptive.sh [--out DIR] [--phase-secs N] [--sizings "adaptive fixed-5 ..."]
#   defaults: a temporary DIR (printed), 10 s per busy phase, adaptive fixed-5 fixed-20 fixed-40
#   (pgtide's log of each sizing is kept as DIR/SIZING.log: the controller's target changes)
# Environment: PGTIDE_BIN=/path/to/pgtide skips the build (release build otherwise).
# Needs root (the demo runs PostgreSQL as the postgres OS user), pgbench and psql, python3.
# Writes DIR/results.md (the table), DIR/series.csv (pool connections every 0.5 s, per
# sizing) and DIR/connections.svg (the chart). Takes about 4 minutes at 10 s per phase.
#
# The phases (the same for every sizing):
#   idle    5 s   1 client, 20 transactions/s of `select 1`
#   io      N s   40 clients in `select pg_sleep(0.02)` transactions (I/O-bound: waiting)
#   cpu     N s   16 clients of a CPU-bound query (generate_series count)
#   mixed   N s   24 clients, half of each
#   idle    5 s   as the first
set -euo pipefail

OUT=""
PHASE=10
SIZINGS_ARG="adaptive fixed-5 fixed-20 fixed-40"
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift ;;
        --phase-secs) PHASE="$2"; shift ;;
        --sizings) SIZINGS_ARG="$2"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "adaptive.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$OUT" ] || OUT="$(mktemp -d /tmp/pgtide-adaptive.XXXXXX)"
mkdir -p "$OUT"
log() { printf '[adaptive %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cd "$(dirname "$0")/.."
if [ -z "${PGTIDE_BIN:-}" ]; then
    log "building pgtide (release)"
    cargo build --release -q -p pgtide
    PGTIDE_BIN="${CARGO_TARGET_DIR:-target}/release/pgtide"
fi
command -v pgbench >/dev/null || die "pgbench not found"
# pgtide reads every PGTIDE_* variable as configuration: keep the binary's path out of its
# environment.
BIN="$PGTIDE_BIN"
unset PGTIDE_BIN

WORK="$(mktemp -d /tmp/pgtide-adaptive-work.XXXXXX)"
chmod 755 "$WORK"
PID=""
cleanup() {
    local rc=$?
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -INT "$PID" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$WORK/select1.sql" <<'EOF'
select 1;
EOF
cat >"$WORK/io.sql" <<'EOF'
select pg_sleep(0.02);
EOF
cat >"$WORK/cpu.sql" <<'EOF'
select count(*) from generate_series(1, 40000);
EOF

# sizing label -> pgtide --set flags
read -r -a SIZINGS <<<"$SIZINGS_ARG"
flags_for() {
    case "$1" in
        adaptive) echo "--set pool.max_size=40 --set pool.adaptive.enabled=true --set pool.adaptive.shrink_after=5s" ;;
        fixed-*) echo "--set pool.max_size=${1#fixed-} --set pool.adaptive.enabled=false" ;;
    esac
}

echo "sizing,t,connections" >"$OUT/series.csv"
: >"$WORK/rows"
export PGPASSWORD=demo
for sizing in "${SIZINGS[@]}"; do
    PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    log "$sizing: starting pgtide demo on 127.0.0.1:$PORT"
    # shellcheck disable=SC2046
    "$BIN" demo --listen "127.0.0.1:$PORT" --set pool.acquire_timeout=5s $(flags_for "$sizing") \
        >"$WORK/demo.out" 2>"$OUT/$sizing.log" &
    PID=$!
    DIRECT=""
    for _ in $(seq 1 1200); do
        DIRECT="$(sed -n 's|^ *PostgreSQL (direct): *.*@127\.0\.0\.1:\([0-9]*\)/.*$|\1|p' "$WORK/demo.out" | head -n1)"
        [ -n "$DIRECT" ] && break
        kill -0 "$PID" 2>/dev/null || die "demo exited: $(tail -n 20 "$OUT/$sizing.log")"
        sleep 0.1
    done
    [ -n "$DIRECT" ] || die "no direct URL"
    for _ in $(seq 1 600); do
        psql -X -q -h 127.0.0.1 -p "$PORT" -U demo -d demo -c 'select 1' >/dev/null 2>&1 && break
        sleep 0.1
    done
    # Sample pgtide's server connections (the demo user's backends) every 0.5 s.
    start_ns=$(date +%s%N)
    (
        while kill -0 "$PID" 2>/dev/null; do
            n="$(psql -X -A -t -q -h 127.0.0.1 -p "$DIRECT" -U demo -d demo -c \
                "select count(*) - 1 from pg_stat_activity where usename = 'demo' and backend_type = 'client backend'" 2>/dev/null || echo)"
            [ -n "$n" ] && echo "$sizing,$(( ($(date +%s%N) - start_ns) / 1000000 )),$n"
            sleep 0.5
        done
    ) >>"$OUT/series.csv" &
    SAMPLER=$!
    phase() { # name secs clients script-args...
        local name="$1" secs="$2" clients="$3"; shift 3
        local t0; t0=$(( ($(date +%s%N) - start_ns) / 1000000 ))
        pgbench -h 127.0.0.1 -p "$PORT" -U demo -n -c "$clients" -j "$clients" -T "$secs" \
            --log --log-prefix="$WORK/$sizing-$name" "$@" demo >"$WORK/$sizing-$name.out" 2>&1 || true
        local t1; t1=$(( ($(date +%s%N) - start_ns) / 1000000 ))
        python3 - "$WORK" "$sizing" "$name" "$t0" "$t1" "$OUT/series.csv" >>"$WORK/rows" <<'PY'
import glob, re, sys
work, sizing, name, t0, t1, series = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
lat = []
for f in glob.glob(f"{work}/{sizing}-{name}.*"):
    if f.endswith(".out"):
        continue
    for line in open(f):
        p = line.split()
        if len(p) >= 3 and p[2].isdigit():
            lat.append(int(p[2]) / 1000.0)
text = open(f"{work}/{sizing}-{name}.out").read()
tps = re.search(r"tps = ([0-9.]+)", text)
failed = re.search(r"number of failed transactions: (\d+)", text)
lat.sort()
q = lambda x: lat[min(len(lat) - 1, int(len(lat) * x))] if lat else 0.0
# connection-seconds over the phase, from the 0.5 s samples
conns = [(int(t), int(n)) for s, t, n in (l.strip().split(",") for l in open(series) if not l.startswith("sizing")) if s == sizing]
inside = [n for t, n in conns if t0 <= t <= t1]
conn_s = (sum(inside) / len(inside) if inside else 0) * (t1 - t0) / 1000.0
print(f"{name}|{sizing}|{float(tps.group(1)) if tps else 0:.0f}|{q(0.5):.1f}|{q(0.99):.1f}|{int(failed.group(1)) if failed else 0}|{conn_s:.0f}|{max(inside) if inside else 0}")
PY
    }
    phase idle1 5 1 -R 20 -f "$WORK/select1.sql"
    phase io "$PHASE" 40 -f "$WORK/io.sql"
    phase cpu "$PHASE" 16 -f "$WORK/cpu.sql"
    phase mixed "$PHASE" 24 -f "$WORK/io.sql@1" -f "$WORK/cpu.sql@1"
    phase idle2 5 1 -R 20 -f "$WORK/select1.sql"
    kill -INT "$PID"
    wait "$PID" || true
    PID=""
    wait "$SAMPLER" 2>/dev/null || true
done

python3 - "$WORK/rows" "$OUT" "$("$BIN" --version | head -n1)" "$(nproc)" <<'PY'
import sys, collections
rows = [l.strip().split("|") for l in open(sys.argv[1]) if l.strip()]
out, version, cores = sys.argv[2], sys.argv[3], sys.argv[4]
by_phase = collections.OrderedDict()
for name, sizing, tps, p50, p99, failed, conn_s, peak in rows:
    by_phase.setdefault(name, []).append((sizing, float(tps), float(p50), float(p99), int(failed), float(conn_s), int(peak)))
md = [f"Phased benchmark ({version}, {cores} cores, one PostgreSQL 15 from `pgtide demo`).", "",
      "| phase | sizing | tps | p50 ms | p99 ms | failed | server conn·s | peak conns |", "|---|---|---:|---:|---:|---:|---:|---:|"]
for name, items in by_phase.items():
    for s, tps, p50, p99, failed, cs, peak in items:
        md.append(f"| {name} | {s} | {tps:.0f} | {p50:.1f} | {p99:.1f} | {failed} | {cs:.0f} | {peak} |")
total = collections.defaultdict(float)
for name, items in by_phase.items():
    for s, *_rest in items:
        total[s] += _rest[4]
md += ["", "Server connection-seconds over the whole run: " + ", ".join(f"{s} {v:.0f}" for s, v in total.items())]
open(f"{out}/results.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
# The chart: pool connections over time, one line per sizing.
series = collections.defaultdict(list)
for l in open(f"{out}/series.csv"):
    if l.startswith("sizing"):
        continue
    s, t, n = l.strip().split(",")
    series[s].append((int(t) / 1000.0, int(n)))
w, h, pad = 900, 360, 40
tmax = max((t for v in series.values() for t, _ in v), default=1)
nmax = max((n for v in series.values() for _, n in v), default=1) or 1
colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
       f'<rect width="{w}" height="{h}" fill="white"/>',
       f'<text x="{pad}" y="20">server connections held by pgtide over time (s), per sizing</text>',
       f'<line x1="{pad}" y1="{h-pad}" x2="{w-10}" y2="{h-pad}" stroke="black"/>',
       f'<line x1="{pad}" y1="{h-pad}" x2="{pad}" y2="30" stroke="black"/>',
       f'<text x="5" y="40">{nmax}</text><text x="{w-60}" y="{h-10}">{tmax:.0f} s</text>']
for i, (s, pts) in enumerate(series.items()):
    xy = " ".join(f"{pad + t / tmax * (w - pad - 10):.1f},{h - pad - n / nmax * (h - pad - 40):.1f}" for t, n in pts)
    c = colors[i % len(colors)]
    svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{xy}"/>')
    svg.append(f'<text x="{w - 150}" y="{45 + 15 * i}" fill="{c}">{s}</text>')
svg.append("</svg>")
open(f"{out}/connections.svg", "w").write("\n".join(svg))
PY
log "results in $OUT (results.md, series.csv, connections.svg)"
