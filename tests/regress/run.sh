#!/usr/bin/env bash
# Runs PostgreSQL 15's own regression suite (pg_regress, parallel_schedule) twice against a
# throwaway PostgreSQL 15 cluster: once directly, once through pgtide in session mode. Prints
# which tests fail in each run and which fail only through pgtide. See docs/regression.md.
#
# Usage: tests/regress/run.sh [--out DIR] [--serial] [--timeout SECS] [--tests "t1 t2 ..."]
#
# Environment:
#   PGTIDE_BIN            pgtide binary (default ${CARGO_TARGET_DIR:-/var/cache/pgtide-target}/debug/pgtide)
#   PGTIDE_ARGS           extra arguments for pgtide, split on spaces, e.g. "--log-level debug"
#   ALLOWED_ONLY_PGTIDE   tests allowed to fail only through pgtide (default "guc temp stats")
#   REGRESS_CACHE         where the regress sources and regress.so are cached
#                         (default /var/cache/pgtide-regress)
#   PG_VERSION_DIR        PostgreSQL installation (default /usr/lib/postgresql/15)
#
# Exit status: 0 when the tests failing only through pgtide are all in ALLOWED_ONLY_PGTIDE;
# 1 when some other test fails only through pgtide; 2 when the harness itself failed (no
# sources, cluster or pgtide did not start, pg_regress could not run or timed out).
set -euo pipefail
umask 022

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

OUT=""
SERIAL=0
TIMEOUT=900
TESTS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#*=}"; shift ;;
        --serial) SERIAL=1; shift ;;
        --timeout) TIMEOUT="$2"; shift 2 ;;
        --timeout=*) TIMEOUT="${1#*=}"; shift ;;
        --tests) TESTS="$2"; shift 2 ;;
        --tests=*) TESTS="${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "regress: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

PG_VERSION_DIR="${PG_VERSION_DIR:-/usr/lib/postgresql/15}"
PG_BIN="$PG_VERSION_DIR/bin"
PG_LIB="$PG_VERSION_DIR/lib"
PG_REGRESS="$PG_LIB/pgxs/src/test/regress/pg_regress"
PGTIDE_BIN="${PGTIDE_BIN:-${CARGO_TARGET_DIR:-/var/cache/pgtide-target}/debug/pgtide}"
ALLOWED_ONLY_PGTIDE="${ALLOWED_ONLY_PGTIDE-guc temp stats}"
REGRESS_CACHE="${REGRESS_CACHE:-/var/cache/pgtide-regress}"
PGTIDE_ARGS="${PGTIDE_ARGS:-}"

START=$SECONDS
DEADLINE=$((SECONDS + TIMEOUT))
log() { printf 'regress: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
# Sets LEFT to the seconds left of the --timeout budget; fails when none are.
LEFT=0
need_time() { LEFT=$((DEADLINE - SECONDS)); [ "$LEFT" -gt 0 ] || die "time limit of ${TIMEOUT}s reached"; }
as_pg() { runuser -u postgres -- "$@"; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL runs as the postgres user through runuser)"
id postgres >/dev/null 2>&1 || die "no postgres OS user (install postgresql-15)"
[ -x "$PG_BIN/postgres" ] || die "no $PG_BIN/postgres (install postgresql-15)"
[ -x "$PG_REGRESS" ] || die "no $PG_REGRESS (shipped by postgresql-15)"
[ -x "$PGTIDE_BIN" ] || die "no pgtide binary at $PGTIDE_BIN (set PGTIDE_BIN)"

# ---------------------------------------------------------------- cleanup, always
WORK=""
APT_TMP=""
PGDATA_DIR=""
PGTIDE_PID=""
REGRESS_PID=""
TAIL_PID=""
cleanup() {
    set +e
    for pid in "$REGRESS_PID" "$TAIL_PID"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    stop_pgtide
    stop_cluster
    [ -n "$WORK" ] && [ -d "$WORK" ] && rm -rf "$WORK"
    [ -n "$APT_TMP" ] && [ -d "$APT_TMP" ] && rm -rf "$APT_TMP"
}
stop_pgtide() {
    [ -n "$PGTIDE_PID" ] || return 0
    if kill -0 "$PGTIDE_PID" 2>/dev/null; then
        kill -TERM "$PGTIDE_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$PGTIDE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PGTIDE_PID" 2>/dev/null || true
    fi
    wait "$PGTIDE_PID" 2>/dev/null || true
    PGTIDE_PID=""
}
stop_cluster() {
    [ -n "$PGDATA_DIR" ] && [ -f "$PGDATA_DIR/postmaster.pid" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null 2>&1 ||
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null 2>&1
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- regress sources (cached)
PGVER="$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null)" || die "postgresql-15 is not installed"
SRC_ROOT="$REGRESS_CACHE/$PGVER"
SRC="$SRC_ROOT/regress"
DLPATH="$SRC_ROOT/lib"

fetch_source() {
    local apt codename
    APT_TMP="$(mktemp -d /tmp/pgtide-regress-apt.XXXXXX)"
    apt="$APT_TMP"
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/src"
    local kr="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
    cat >"$apt/sources.list" <<EOF
deb-src $kr http://deb.debian.org/debian $codename main
deb-src $kr http://deb.debian.org/debian $codename-updates main
deb-src $kr http://deb.debian.org/debian-security $codename-security main
EOF
    # A private apt configuration: the system's sources, lists and cache are left alone.
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
    log "fetching the postgresql-15 source package (private apt config in $apt)"
    need_time
    timeout "$LEFT" apt-get -q "${opts[@]}" update >"$apt/update.log" 2>&1 ||
        { cat "$apt/update.log" >&2; die "apt-get update (deb-src) failed: is deb.debian.org reachable?"; }
    local versions pick="" v
    versions="$(apt-cache "${opts[@]}" showsrc postgresql-15 | awk '/^Version:/ {print $2}' | sort -u)"
    if grep -qxF "$PGVER" <<<"$versions"; then
        pick="$PGVER"
    else
        # Closest: the newest version below the installed one, else the oldest above it.
        for v in $versions; do
            if dpkg --compare-versions "$v" lt "$PGVER"; then
                if [ -z "$pick" ] || dpkg --compare-versions "$v" gt "$pick"; then pick="$v"; fi
            fi
        done
        if [ -z "$pick" ]; then
            for v in $versions; do
                if [ -z "$pick" ] || dpkg --compare-versions "$v" lt "$pick"; then pick="$v"; fi
            done
        fi
        [ -n "$pick" ] || die "no postgresql-15 source package found"
        log "WARNING: installed $PGVER has no source package; using the closest, $pick"
    fi
    need_time
    (cd "$apt/src" && timeout "$LEFT" apt-get -q "${opts[@]}" source --download-only \
        "postgresql-15=$pick" >"$apt/source.log" 2>&1) ||
        { cat "$apt/source.log" >&2; die "apt-get source postgresql-15=$pick failed"; }
    (cd "$apt/src" && dpkg-source -q -x ./*.dsc pg >"$apt/extract.log" 2>&1) ||
        { cat "$apt/extract.log" >&2; die "dpkg-source -x failed"; }
    rm -rf "$SRC_ROOT.tmp"
    mkdir -p "$SRC_ROOT.tmp"
    cp -a "$apt/src/pg/src/test/regress" "$SRC_ROOT.tmp/regress"
    echo "$pick" >"$SRC_ROOT.tmp/SOURCE_VERSION"
    rm -rf "$SRC_ROOT"
    mv "$SRC_ROOT.tmp" "$SRC_ROOT"
    rm -rf "$apt"
    APT_TMP=""
    log "cached $SRC (source version $pick)"
}

# regress.so is not shipped by Debian: build it from regress.c with the pgxs of
# postgresql-server-dev-15 (installed with apt-get when missing). autoinc.so and refint.so
# (contrib/spi) are shipped; pg_regress wants all three in one --dlpath directory.
build_regress_so() {
    local b
    if [ ! -x "$PG_BIN/pg_config" ] || [ ! -f "$PG_LIB/pgxs/src/makefiles/pgxs.mk" ]; then
        log "installing postgresql-server-dev-15 (to build regress.so)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            postgresql-server-dev-15 >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                  postgresql-server-dev-15 >/dev/null 2>&1; } ||
            { log "WARNING: could not install postgresql-server-dev-15: tests that need regress.so will fail in both runs"; return 0; }
    fi
    b="$(mktemp -d /tmp/pgtide-regress-build.XXXXXX)"
    cp "$SRC/regress.c" "$b/"
    printf 'MODULES = regress\nPG_CONFIG = %s\nPGXS := $(shell $(PG_CONFIG) --pgxs)\ninclude $(PGXS)\n' \
        "$PG_BIN/pg_config" >"$b/Makefile"
    if make -s -C "$b" with_llvm=no >"$b/build.log" 2>&1; then
        install -m 0755 "$b/regress.so" "$DLPATH/regress.so"
        log "built $DLPATH/regress.so"
    else
        cat "$b/build.log" >&2
        log "WARNING: building regress.so failed: tests that need it will fail in both runs"
    fi
    rm -rf "$b"
}

mkdir -p "$REGRESS_CACHE"
exec 9>"$REGRESS_CACHE/.lock"
flock 9
[ -f "$SRC/parallel_schedule" ] || fetch_source
mkdir -p "$DLPATH"
for so in autoinc refint; do
    if [ -f "$PG_LIB/$so.so" ]; then ln -sfn "$PG_LIB/$so.so" "$DLPATH/$so.so"; fi
done
if [ -f "$PG_LIB/regress.so" ]; then
    ln -sfn "$PG_LIB/regress.so" "$DLPATH/regress.so"
elif [ ! -f "$DLPATH/regress.so" ]; then
    build_regress_so
fi
flock -u 9
log "regress sources: $SRC (source package $(cat "$SRC_ROOT/SOURCE_VERSION"), installed $PGVER)"

# ---------------------------------------------------------------- work dir, ports, cluster
WORK="$(mktemp -d /tmp/pgtide-regress.XXXXXX)"
chmod 755 "$WORK"
chown postgres: "$WORK"
if [ -z "$OUT" ]; then
    OUT="$(mktemp -d /tmp/pgtide-regress-out.XXXXXX)"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
mkdir -p "$OUT/logs"
log "output: $OUT"

USED_PORTS=" "
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if [ -z "$(ss -Htln "( sport = :$p )" 2>/dev/null)" ]; then
            USED_PORTS="$USED_PORTS$p "
            echo "$p"
            return
        fi
    done
}
PG_PORT="$(free_port)"
TIDE_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"

as_pg mkdir -p "$WORK/sock"
log "initdb (postgres on 127.0.0.1:$PG_PORT)"
as_pg "$PG_BIN/initdb" -D "$WORK/pristine" -U postgres -A trust -E UTF8 --locale=C --no-sync \
    >"$OUT/logs/initdb.log" 2>&1 || { cat "$OUT/logs/initdb.log" >&2; die "initdb failed"; }
# The settings pg_regress gives its own temporary instance (make check), plus what the two runs need.
cat >>"$WORK/pristine/postgresql.conf" <<EOF

# tests/regress/run.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/sock'
max_connections = 300
max_prepared_transactions = 2
fsync = off
log_autovacuum_min_duration = 0
log_checkpoints = on
log_line_prefix = '%m %b[%p] %q%a '
log_lock_waits = on
log_temp_files = 128kB
EOF
cat >"$WORK/pristine/pg_hba.conf" <<EOF
local all all trust
host  all all 127.0.0.1/32 trust
EOF

start_cluster() { # $1: name of the run
    PGDATA_DIR="$WORK/data-$1"
    as_pg cp -a "$WORK/pristine" "$PGDATA_DIR"
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/postgres-$1.log" -w -t 60 start >/dev/null 2>&1 ||
        { cat "$WORK/postgres-$1.log" >&2; die "PostgreSQL did not start"; }
}

finish_cluster() { # $1: name of the run
    stop_cluster
    cp "$WORK/postgres-$1.log" "$OUT/logs/" 2>/dev/null || true
    rm -rf "$PGDATA_DIR"
    PGDATA_DIR=""
}

# ---------------------------------------------------------------- one pg_regress run
SCHEDULE_ARGS=()
if [ -n "$TESTS" ]; then
    read -r -a SCHEDULE_ARGS <<<"$TESTS"
    ALL_TESTS="$TESTS"
else
    SCHEDULE_ARGS=(--schedule="$SRC/parallel_schedule")
    if [ "$SERIAL" = 1 ]; then SCHEDULE_ARGS+=(--max-connections=1); fi
    ALL_TESTS="$(sed -n 's/^test://p' "$SRC/parallel_schedule" | tr -s ' \t' '\n' | sed '/^$/d' | tr '\n' ' ')"
fi
N_TESTS="$(wc -w <<<"$ALL_TESTS")"

declare -A RC ELAPSED
run_regress() { # $1: name of the run, $2: port to connect to
    local name="$1" port="$2" dir="$WORK/run-$1" t0=$SECONDS rc=0
    as_pg mkdir -p "$dir"
    need_time
    : >"$dir/pg_regress.log"
    log "pg_regress $name: 127.0.0.1:$port (time left ${LEFT}s)"
    # Not --use-existing: like `make installcheck`, pg_regress drops and creates the database
    # `regression` (with its ALTER DATABASE ... SET lc_messages etc.) through the connection.
    (cd "$dir" && exec runuser -u postgres -- timeout -k 10 "$LEFT" "$PG_REGRESS" \
        --bindir="$PG_BIN" --inputdir="$SRC" --outputdir="$dir" --dlpath="$DLPATH" \
        --host=127.0.0.1 --port="$port" --user=postgres --max-concurrent-tests=20 \
        "${SCHEDULE_ARGS[@]}") >"$dir/pg_regress.log" 2>&1 &
    REGRESS_PID=$!
    tail -n +1 -f --pid="$REGRESS_PID" "$dir/pg_regress.log" &
    TAIL_PID=$!
    wait "$REGRESS_PID" || rc=$?
    REGRESS_PID=""
    wait "$TAIL_PID" 2>/dev/null || true
    TAIL_PID=""
    [ -z "$(tail -c 1 "$dir/pg_regress.log")" ] || echo
    RC[$name]=$rc
    ELAPSED[$name]=$((SECONDS - t0))
    mkdir -p "$OUT/$name"
    cp -a "$dir/." "$OUT/$name/"
    # The work dir goes away: point the copies' paths at the output dir.
    for f in pg_regress.log regression.diffs regression.out; do
        if [ -f "$OUT/$name/$f" ]; then sed -i "s|$dir|$OUT/$name|g" "$OUT/$name/$f"; fi
    done
    # One diff file per failed test, from regression.diffs.
    mkdir -p "$OUT/$name/diffs"
    if [ -f "$OUT/$name/regression.diffs" ]; then
        awk -v d="$OUT/$name/diffs" '
            /^diff / { f = $NF; sub(/.*\//, "", f); sub(/\.out$/, "", f); out = d "/" f ".diff" }
            out != "" { print > out }' "$OUT/$name/regression.diffs"
    fi
    log "pg_regress $name: exit $rc after ${ELAPSED[$name]}s"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then log "pg_regress $name timed out"; fi
    return 0
}

# Statuses from pg_regress's output: "test NAME ... ok|FAILED|failed (ignored)" (serial) and
# "     NAME ... ok|FAILED|failed (ignored)" (parallel group member).
failed_tests() { # $1: name of the run; prints the tests not "ok" (FAILED or never reported)
    local logf="$OUT/$1/pg_regress.log" t st
    declare -A status=()
    while read -r t st; do status[$t]="$st"; done < <(
        sed -n 's/^\(test \)\{0,1\} *\([^ ]*\) *\.\.\. \(ok\|FAILED\|failed (ignored)\).*/\2 \3/p' "$logf" |
            sed 's/failed (ignored)/ignored/')
    for t in $ALL_TESTS; do
        case "${status[$t]:-missing}" in
            ok|ignored) ;;
            FAILED) echo "$t" ;;
            *) echo "$t(not run)" ;;
        esac
    done
}

# ---------------------------------------------------------------- run 1: direct
start_cluster direct
run_regress direct "$PG_PORT"
finish_cluster direct
case "${RC[direct]}" in 0|1) ;; *) die "pg_regress (direct) exited ${RC[direct]}: see $OUT/direct/pg_regress.log" ;; esac

# ---------------------------------------------------------------- run 2: through pgtide
start_cluster pgtide
cat >"$WORK/pgtide.toml" <<EOF
# tests/regress/run.sh: pgtide in session mode in front of the throwaway cluster
[pgtide]
listen = ["127.0.0.1:$TIDE_PORT"]
auth_type = "trust"
max_client_conn = 1000

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[pool]
mode = "session"
# Above the largest parallel group (20 tests, each one psql) with slack.
max_size = 40
acquire_timeout = "60s"
# Fixed sizing: the pools grow on demand up to max_size, so connection-rate limits of the
# adaptive controller cannot show up as test failures.
[pool.adaptive]
enabled = false

# pg_regress connects to postgres (DROP/CREATE DATABASE regression) and to regression.
[databases.postgres]
host = "127.0.0.1"
port = $PG_PORT

[databases.regression]
host = "127.0.0.1"
port = $PG_PORT

[databases.template1]
host = "127.0.0.1"
port = $PG_PORT

[log]
level = "info"
EOF
cp "$WORK/pgtide.toml" "$OUT/logs/pgtide.toml"
# pgtide reads PGTIDE_* environment variables as configuration (PGTIDE_BIN would be the key
# `bin`): run it without any, so the file above is the whole configuration.
TIDE_ENV=(env)
while read -r v; do TIDE_ENV+=(-u "$v"); done < <(compgen -e | grep '^PGTIDE_' || true)
"${TIDE_ENV[@]}" "$PGTIDE_BIN" check-config "$WORK/pgtide.toml" >"$OUT/logs/pgtide-check-config.log" 2>&1 ||
    { cat "$OUT/logs/pgtide-check-config.log" >&2; die "pgtide check-config rejected the config"; }
# shellcheck disable=SC2086
"${TIDE_ENV[@]}" "$PGTIDE_BIN" --config "$WORK/pgtide.toml" $PGTIDE_ARGS >"$OUT/logs/pgtide.log" 2>&1 &
PGTIDE_PID=$!
log "pgtide (pid $PGTIDE_PID) on 127.0.0.1:$TIDE_PORT, session mode"
for i in $(seq 100); do
    kill -0 "$PGTIDE_PID" 2>/dev/null || { cat "$OUT/logs/pgtide.log" >&2; die "pgtide exited at start"; }
    if "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$TIDE_PORT" -U postgres -d postgres \
        -c 'select 1' >/dev/null 2>&1; then break; fi
    [ "$i" = 100 ] && { cat "$OUT/logs/pgtide.log" >&2; die "pgtide did not accept connections in 10s"; }
    sleep 0.1
done
run_regress pgtide "$TIDE_PORT"
stop_pgtide
finish_cluster pgtide
case "${RC[pgtide]}" in 0|1) ;; *) die "pg_regress (through pgtide) exited ${RC[pgtide]}: see $OUT/pgtide/pg_regress.log" ;; esac

# ---------------------------------------------------------------- summary
mapfile -t F_DIRECT < <(failed_tests direct)
mapfile -t F_TIDE < <(failed_tests pgtide)
declare -A IN_DIRECT=() IN_TIDE=() ALLOWED=()
for t in "${F_DIRECT[@]}"; do IN_DIRECT[$t]=1; done
for t in "${F_TIDE[@]}"; do IN_TIDE[$t]=1; done
for t in $ALLOWED_ONLY_PGTIDE; do ALLOWED[$t]=1; done
ONLY_TIDE=() ONLY_DIRECT=() NOT_ALLOWED=()
for t in "${F_TIDE[@]}"; do
    [ -n "${IN_DIRECT[$t]:-}" ] && continue
    ONLY_TIDE+=("$t")
    [ -n "${ALLOWED[$t]:-}" ] || NOT_ALLOWED+=("$t")
done
for t in "${F_DIRECT[@]}"; do [ -n "${IN_TIDE[$t]:-}" ] || ONLY_DIRECT+=("$t"); done

mkdir -p "$OUT/only-pgtide"
for t in "${ONLY_TIDE[@]}"; do
    if [ -f "$OUT/pgtide/diffs/$t.diff" ]; then cp "$OUT/pgtide/diffs/$t.diff" "$OUT/only-pgtide/"; fi
done

join() { local out="" t; for t in "$@"; do out="${out:+$out, }$t"; done; echo "$out"; }
{
    echo "PostgreSQL regression suite ($N_TESTS tests, source package $(cat "$SRC_ROOT/SOURCE_VERSION"), installed $PGVER)"
    echo "pgtide: $PGTIDE_BIN ($("$PGTIDE_BIN" --version 2>/dev/null || echo '?')), session mode"
    echo "direct: ${#F_DIRECT[@]} of $N_TESTS failed ($(join "${F_DIRECT[@]}")) in ${ELAPSED[direct]}s"
    echo "pgtide: ${#F_TIDE[@]} of $N_TESTS failed ($(join "${F_TIDE[@]}")) in ${ELAPSED[pgtide]}s"
    echo "only through pgtide: [$(join "${ONLY_TIDE[@]}")] (allowed: $ALLOWED_ONLY_PGTIDE)"
    echo "only direct: [$(join "${ONLY_DIRECT[@]}")]"
    echo "diffs of the tests failing only through pgtide: $OUT/only-pgtide/"
    echo "total time: $((SECONDS - START))s"
} | tee "$OUT/summary.txt"

if [ "${#NOT_ALLOWED[@]}" -gt 0 ]; then
    echo "RESULT: FAIL: failing only through pgtide and not allowed: $(join "${NOT_ALLOWED[@]}")" | tee -a "$OUT/summary.txt"
    exit 1
fi
echo "RESULT: OK" | tee -a "$OUT/summary.txt"
exit 0
