#!/usr/bin/env bash
# Load test of a real `sigil serve` (release build), on SQLite and on PostgreSQL.
#
#   bench/load.sh                      # both backends
#   BACKENDS=sqlite bench/load.sh      # one backend
#
# Every figure is also given as a ratio to scenario (a), GET /healthz, measured in the same
# run on the same machine, so results from different machines compare.
#
# Scenarios (each for DURATION with THREADS wrk threads and CONNECTIONS connections):
#   a  GET /healthz                           bare route, no credential (baseline)
#   a-req GET /healthz with (b)'s headers     same route, request as big as (b)'s
#   b  GET /api/v1/authorize                  forward auth, one hot token
#   c  GET /api/v1/authorize                  TOKENS distinct tokens: cold pass (each token
#                                             once, every request a cache miss), then warm
#   d  GET /api/v1/users/me                   a token; the profile is cached
#   g  POST /api/v1/introspect                introspectToken (form), caller and token hot
#   e  POST /api/v1/tokens                    createToken with a tokens.create token
#   f  POST /api/v1/auth/login                argon2id-bound
# plus database statements during b and c-warm, and resident memory before and after
# caching TOKENS verifications.
#
# Settings (environment): BACKENDS ("sqlite postgres"), DURATION (10s), THREADS (2),
# CONNECTIONS (50), LAT_CONNECTIONS (32, for the latency runs a-lat and b-lat),
# LOGIN_CONNECTIONS (4: below the login throttle's 5 attempts in flight per user), PAIRS (7)
# and PAIR_DURATION (3s) for the alternating ratio checks of (b), (c) warm, (d) and (g)
# against (a), TOKENS (10000), PG_URL (postgres://postgres@127.0.0.1:5432), PG_OPTIONS
# (?sslmode=disable), RESULTS (bench/results), SKIP_BUILD=1 (use target/release/sigil as
# it is), PIN (1: on a machine with 2 or more CPUs, the server runs on CPU 0 and wrk on
# CPU 1, so that "one core" means one core; 0: no pinning). Needs curl, python3, psql
# (for PostgreSQL), taskset and wrk (installed with apt-get when missing). PostgreSQL, when
# used, shares the machine too: on a small box, expect run-to-run spread and compare
# ratios within one run.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BACKENDS=${BACKENDS:-"sqlite postgres"}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-50}
LAT_CONNECTIONS=${LAT_CONNECTIONS:-32}
LOGIN_CONNECTIONS=${LOGIN_CONNECTIONS:-4}
PAIRS=${PAIRS:-7}
PAIR_DURATION=${PAIR_DURATION:-3s}
TOKENS=${TOKENS:-10000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
# The database is on loopback: no TLS (Debian's PostgreSQL offers it, and sqlx takes it
# by default; it would add its cost to every statement of the cold path).
PG_OPTIONS=${PG_OPTIONS-?sslmode=disable}
RESULTS=${RESULTS:-$ROOT/bench/results}
PIN=${PIN:-1}
SERVER_CPU=()
WRK=(wrk)
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_CPU=(taskset -c 0)
  WRK=(taskset -c 1 wrk)
fi
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TENANT=bench
PASSWORD="bench-password-$RANDOM$RANDOM"

say() { printf '%s\n' "$*" >&2; }

# ---------------------------------------------------------------- prerequisites
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "== building the release binary"
  cargo build --release -p sigil
fi
BIN=$ROOT/target/release/sigil

if ! command -v wrk >/dev/null; then
  say "== installing wrk"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get install -y wrk || { $SUDO apt-get update && $SUDO apt-get install -y wrk; }
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null || { say "missing: $tool"; exit 1; }
done
mkdir -p "$RESULTS"

# ---------------------------------------------------------------- helpers
WORK=$(mktemp -d /tmp/sigil-load.XXXXXX)
SERVER_PID=
PG_DB=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "$PG_DB" ]; then psql "$PG_URL/postgres" -qAtc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

metric() { # metric NAME: the sum of a Prometheus counter/gauge family on /metrics
  curl -fsS "$BASE/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat"; } # server user+system CPU
TICK_US=$((1000000 / $(getconf CLK_TCK)))
pg_stats() { # transactions, table scans, rows inserted, updated, deleted (Sigil's tables)
  # Table counters count statements' work only (not autovacuum's); the transaction count
  # includes autovacuum's and, once, the session that reads these counters.
  psql "$PG_URL/$PG_DB" -qAt -F' ' -c "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0), coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0) FROM pg_stat_user_tables"
}
pending_events() { # pending_events DATA_DIR: webhook events not yet dispatched
  local sql="SELECT count(*) FROM webhook_events WHERE dispatched_at IS NULL"
  if [ -n "$PG_DB" ]; then
    psql "$PG_URL/$PG_DB" -qAtc "$sql"
  else
    python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$1/sigil.db" "$sql"
  fi
}
to_ms() { # wrk duration (850.00us, 1.20ms, 2.00s, 1.00m) -> milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.3f", n }'
}

# run NAME ARGS...: wrk with --latency; keeps the raw output, sets RPS P50 P99 NON2XX
run() {
  local name=$1; shift
  local out="$WORK/wrk-$name.txt" t0
  t0=$(cpu_ticks)
  "${WRK[@]}" --latency --timeout 10s -t"$THREADS" -c"$CONNECTIONS" "$@" >"$out" 2>&1
  {
    echo "---- $name: wrk --latency --timeout 10s -t$THREADS -c$CONNECTIONS $*" | sed -E 's/Bearer [^ ]+/Bearer <token>/'
    cat "$out"
  } >>"$RAW"
  RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  NON2XX=$(awk '/Non-2xx/ { print $5 }' "$out"); NON2XX=${NON2XX:-0}
  ERRORS=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out"); ERRORS=${ERRORS:-0}
  server_cpu "$t0" "$(awk '/ requests in / { print $1 }' "$out")"
}

# server_cpu TICKS_BEFORE REQUESTS: sets CPU_US, the server's CPU time per request (µs)
server_cpu() {
  CPU_US=$(awk -v a="$1" -v b="$(cpu_ticks)" -v n="$2" -v t="$TICK_US" 'BEGIN { printf "%.1f", (n > 0 ? (b - a) * t / n : 0) }')
}

declare -A RR RC R99
row() { # row KEY LABEL
  RR[$1]=$RPS; RC[$1]=$CPU_US; R99[$1]=$P99
  printf '%-5s %-42s %10.1f %8.3f %8.3f %7.3f %9.1f %7.2f  %s\n' "$1" "$2" "$RPS" "$P50" "$P99" \
    "$(awk -v r="$RPS" -v a="${RR[a]}" 'BEGIN { printf "%.3f", r / a }')" "$CPU_US" \
    "$(awk -v c="$CPU_US" -v a="${RC[a]}" 'BEGIN { printf "%.2f", c / a }')" \
    "$( [ "$NON2XX$ERRORS" = 00 ] && echo ok || echo "non-2xx=$NON2XX socket-errors=$ERRORS")" >>"$SUMMARY"
}

# Extra wrk arguments of the reference request of pair_ratio (none: plain (a)).
PAIR_REF=()
# pair_ratio KEY LABEL WRK_ARGS...: scenario KEY against (a) in PAIRS alternating slices of
# PAIR_DURATION, so that a burst of other work on the machine hits both alike; records the
# median of the per-pair throughput ratios in MEDIAN[KEY].
declare -A MEDIAN
pair_ratio() {
  local key=$1 label=$2; shift 2
  local ratios=() ra rb
  for _ in $(seq 1 "$PAIRS"); do
    "${WRK[@]}" -t"$THREADS" -c"$CONNECTIONS" -d"$PAIR_DURATION" "${PAIR_REF[@]}" "$BASE/healthz" >"$WORK/pair-a.txt"
    "${WRK[@]}" -t"$THREADS" -c"$CONNECTIONS" -d"$PAIR_DURATION" "$@" >"$WORK/pair-x.txt"
    ra=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/pair-a.txt")
    rb=$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/pair-x.txt")
    ratios+=("$(awk -v a="$ra" -v b="$rb" 'BEGIN { printf "%.3f", b / a }')")
  done
  MEDIAN[$key]=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%.3f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
  echo "     $label / ${REF_LABEL:-(a)} in $PAIRS alternating pairs of $PAIR_DURATION: ${ratios[*]}; median ${MEDIAN[$key]}" >>"$SUMMARY"
}

quiet() { sleep 5; } # lets the 2 s usage flush and PostgreSQL's 1 s stats flush pass

# ---------------------------------------------------------------- one backend
bench_backend() {
  local backend=$1
  RAW="$RESULTS/$STAMP-$backend.txt"
  SUMMARY="$WORK/summary-$backend.txt"
  cat "$WORK/machine.txt" >"$RAW"; : >"$SUMMARY"
  local data="$WORK/$backend"
  mkdir -p "$data"
  export SIGIL_DATA_DIR="$data" SIGIL_LISTEN=127.0.0.1:0
  unset SIGIL_DATABASE_URL
  PG_DB=
  if [ "$backend" = postgres ]; then
    PG_DB="sigil_load_$(date +%s)_$$"
    psql "$PG_URL/postgres" -qAtc "CREATE DATABASE $PG_DB" >/dev/null
    export SIGIL_DATABASE_URL="$PG_URL/$PG_DB$PG_OPTIONS"
  fi

  say "== [$backend] seeding tenant '$TENANT'"
  printf '%s' "$PASSWORD" | "$BIN" tenant create "$TENANT" --init --admin-password-stdin >"$data/tenant.json"

  "${SERVER_CPU[@]}" "$BIN" serve --plugin examples/plugins/platform.json >"$data/stdout" 2>"$data/stderr" &
  SERVER_PID=$!
  local addr=
  for _ in $(seq 1 300); do
    addr=$(sed -nE 's/.*listening on ([0-9.:]+).*/\1/p' "$data/stdout" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$data/stderr" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$addr" ] || { say "the server did not start"; exit 1; }
  BASE="http://$addr"
  say "== [$backend] sigil serve (pid $SERVER_PID) on $BASE"

  python3 bench/seed.py "$BASE" "$TENANT" "$PASSWORD" "$data" "$TOKENS" | tee -a "$RAW" >&2
  # Minting wrote a webhook event per token; the dispatcher turns them into deliveries in
  # the background. Measure after it has, so that it does not share the core with (b).
  say "== [$backend] waiting for the webhook outbox to drain"
  local pending=
  for _ in $(seq 1 240); do
    pending=$(pending_events "$data")
    [ "$pending" = 0 ] && break
    sleep 0.5
  done
  echo "webhook events still undispatched before measuring: ${pending:-?}" | tee -a "$RAW" >&2
  local hot me minter introspector expires
  hot=$(cat "$data/hot.token"); me=$(cat "$data/me.token"); minter=$(cat "$data/minter.token")
  introspector=$(cat "$data/introspector.token")
  expires=$(date -u -d '+7 days' +%Y-%m-%dT%H:%M:%SZ)
  local authz=(-H "X-Original-Method: GET" -H "X-Original-URI: /1.0/environment/control/rest/stopenv?envName=x")
  # Every scenario's request must succeed; check once before measuring.
  curl -fsS -o /dev/null "${authz[@]}" -H "Authorization: Bearer $hot" "$BASE/api/v1/authorize"
  curl -fsS -o /dev/null -H "Authorization: Bearer $me" "$BASE/api/v1/users/me"
  curl -fsS -o /dev/null -H "Authorization: Bearer $introspector" --data-urlencode "token=$hot" "$BASE/api/v1/introspect"

  {
    echo "Sigil load test, backend $backend, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION; $TOKENS distinct tokens; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "req/s, p50/p99 latency and server CPU per request (user+system time of the sigil process"
    echo "over the run / requests); 'x (a)' and 'cpu x (a)' are ratios to scenario (a) of this run."
    printf '%-5s %-42s %10s %8s %8s %7s %9s %7s  %s\n' id scenario "req/s" "p50 ms" "p99 ms" "x (a)" "cpu us" "cpu x(a)" check
  } >>"$SUMMARY"

  say "== [$backend] (a) GET /healthz"
  run a -d"$DURATION" "$BASE/healthz"
  row a "GET /healthz (baseline)"
  # Latency at moderate concurrency: with CONNECTIONS requests always in flight on a
  # saturated box, latency is CONNECTIONS / throughput (Little's law), whatever the code.
  THREADS=1 CONNECTIONS=$LAT_CONNECTIONS run a-lat -d"$DURATION" "$BASE/healthz"
  row a-lat "GET /healthz, 1 thread, $LAT_CONNECTIONS connections"

  say "== [$backend] (b) forward auth, one hot token"
  quiet
  local m0 f0 ft0 miss0 pg0="" m1 f1 ft1 miss1 pg1=""
  f0=$(metric sigil_usage_flush_batches_total); ft0=$(metric sigil_usage_flushed_tokens_total)
  miss0=$(metric sigil_verification_cache_misses_total)
  [ -n "$PG_DB" ] && pg0=$(pg_stats)
  run b -d"$DURATION" "${authz[@]}" -H "Authorization: Bearer $hot" "$BASE/api/v1/authorize"
  row b "GET /api/v1/authorize, 1 hot token"
  quiet
  f1=$(metric sigil_usage_flush_batches_total); ft1=$(metric sigil_usage_flushed_tokens_total)
  miss1=$(metric sigil_verification_cache_misses_total)
  [ -n "$PG_DB" ] && pg1=$(pg_stats)
  db_report b "$pg0" "$pg1" $((f1 - f0)) $((ft1 - ft0)) $((miss1 - miss0))
  THREADS=1 CONNECTIONS=$LAT_CONNECTIONS run b-lat -d"$DURATION" "${authz[@]}" -H "Authorization: Bearer $hot" "$BASE/api/v1/authorize"
  row b-lat "authorize, 1 hot token, 1 thr, $LAT_CONNECTIONS conns"
  pair_ratio b "(b)" "${authz[@]}" -H "Authorization: Bearer $hot" "$BASE/api/v1/authorize"
  # The same against /healthz sent with (b)'s request headers (a 700-byte credential and
  # the forward-auth headers, which /healthz ignores): what verifying and answering
  # cost, without the cost of carrying a bigger request.
  run a-req -d"$DURATION" "${authz[@]}" -H "Authorization: Bearer $hot" "$BASE/healthz"
  row a-req "GET /healthz with (b)'s request headers"
  PAIR_REF=("${authz[@]}" -H "Authorization: Bearer $hot")
  REF_LABEL="(a-req)" pair_ratio b-req "(b)" "${authz[@]}" -H "Authorization: Bearer $hot" "$BASE/api/v1/authorize"
  PAIR_REF=()

  say "== [$backend] (c) forward auth, $TOKENS distinct tokens, cold then warm"
  quiet
  local rss0 rss1 entries
  rss0=$(rss_kib)
  mkdir -p "$WORK/done-$backend"
  miss0=$(metric sigil_verification_cache_misses_total)
  TOKENS_FILE="$data/tokens.txt" THREADS=$THREADS MODE=cold DONE_DIR="$WORK/done-$backend" \
    run_cold "$BASE"
  miss1=$(metric sigil_verification_cache_misses_total)
  echo "     cache misses during the cold pass: $((miss1 - miss0)) (expected $TOKENS)" >>"$SUMMARY"
  quiet
  f0=$(metric sigil_usage_flush_batches_total); ft0=$(metric sigil_usage_flushed_tokens_total)
  miss0=$(metric sigil_verification_cache_misses_total)
  [ -n "$PG_DB" ] && pg0=$(pg_stats)
  TOKENS_FILE="$data/tokens.txt" THREADS=$THREADS MODE=warm \
    run c-warm -d"$DURATION" -s bench/wrk/authorize_many.lua "$BASE"
  row c-w "GET /api/v1/authorize, $TOKENS tokens, warm"
  quiet
  f1=$(metric sigil_usage_flush_batches_total); ft1=$(metric sigil_usage_flushed_tokens_total)
  miss1=$(metric sigil_verification_cache_misses_total)
  [ -n "$PG_DB" ] && pg1=$(pg_stats)
  db_report c-warm "$pg0" "$pg1" $((f1 - f0)) $((ft1 - ft0)) $((miss1 - miss0))
  TOKENS_FILE="$data/tokens.txt" THREADS=$THREADS MODE=warm \
    pair_ratio c-w "(c) warm" -s bench/wrk/authorize_many.lua "$BASE"
  rss1=$(rss_kib)
  entries=$(metric sigil_verification_cache_entries)
  awk -v b="$rss0" -v a="$rss1" -v n="$entries" -v t="$TOKENS" 'BEGIN {
    per = (a - b) * 1024 / t
    printf "     memory: VmRSS %.1f MiB before, %.1f MiB after caching %d verifications (cache entries now %d): %.0f bytes each,\n", b / 1024, a / 1024, t, n, per
    printf "     allocator and table growth of a small cache included (1,000,000 entries: cargo bench -p sigil-token --bench cache_memory)\n"
  }' >>"$SUMMARY"

  say "== [$backend] (d) GET /api/v1/users/me"
  run d -d"$DURATION" -H "Authorization: Bearer $me" "$BASE/api/v1/users/me"
  row d "GET /api/v1/users/me"
  pair_ratio d "(d)" -H "Authorization: Bearer $me" "$BASE/api/v1/users/me"

  say "== [$backend] (g) POST /api/v1/introspect"
  CALLER=$introspector TOKEN=$hot run g -d"$DURATION" -s bench/wrk/introspect.lua "$BASE/api/v1/introspect"
  row g "POST /api/v1/introspect (form), hot tokens"
  CALLER=$introspector TOKEN=$hot pair_ratio g "(g)" -s bench/wrk/introspect.lua "$BASE/api/v1/introspect"

  say "== [$backend] (e) POST /api/v1/tokens"
  TOKEN=$minter OWNERS_FILE="$data/mint_owners.txt" EXPIRES_AT=$expires \
    run e -d"$DURATION" -s bench/wrk/create_token.lua "$BASE/api/v1/tokens"
  row e "POST /api/v1/tokens (createToken)"

  say "== [$backend] (f) POST /api/v1/auth/login"
  # One user signing in: the login throttle reserves a slot per attempt in flight (so
  # parallel guesses cannot outrun it), and the tenant's default allows 5 (more
  # connections measure its 429s, not argon2id).
  CONNECTIONS=$LOGIN_CONNECTIONS TENANT=$TENANT PASSWORD=$PASSWORD run f -d"$DURATION" -s bench/wrk/login.lua "$BASE/api/v1/auth/login"
  row f "POST /api/v1/auth/login (argon2id), $LOGIN_CONNECTIONS conns"
  verdict "$backend"

  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
  if [ -n "$PG_DB" ]; then
    psql "$PG_URL/postgres" -qAtc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null; PG_DB=
  fi
  { echo; echo "==== summary"; cat "$SUMMARY"; } >>"$RAW"
  echo; cat "$SUMMARY"; echo "raw: $RAW"
}

# The cold pass: each token once; the script stops its threads and writes done files; we
# then interrupt wrk (it would otherwise sleep out -d).
run_cold() {
  local base=$1 out="$WORK/wrk-c-cold.txt"
  rm -f "$DONE_DIR"/done-*
  local t0
  t0=$(cpu_ticks)
  "${WRK[@]}" --latency --timeout 10s -t"$THREADS" -c"$CONNECTIONS" -d120s -s bench/wrk/authorize_many.lua "$base" >"$out" 2>&1 &
  local wrk_pid=$!
  while [ "$(find "$DONE_DIR" -type f -name 'done-*' | wc -l)" -lt "$THREADS" ] && kill -0 "$wrk_pid" 2>/dev/null; do
    sleep 0.05
  done
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" || true
  server_cpu "$t0" "$TOKENS"
  { echo "---- c-cold: wrk --latency -t$THREADS -c$CONNECTIONS -s bench/wrk/authorize_many.lua (MODE=cold)"; cat "$out"; } >>"$RAW"
  RPS=$(awk '/^cold:/ { print $8 }' "$out")
  P50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$out")")
  P99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out")")
  NON2XX=$(awk '/^cold:/ { print $10 }' "$out"); NON2XX=${NON2XX:-?}
  ERRORS=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out"); ERRORS=${ERRORS:-0}
  row c-c "GET /api/v1/authorize, $TOKENS tokens, cold"
}

# verdict BACKEND: each target of the benchmark issue against this run's figures.
verdict() {
  local backend=$1
  check() { # check LABEL VALUE OP LIMIT
    local ok
    ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN { print ((op == ">=" ? v >= l : v < l) ? "met" : "MISSED") }')
    printf '     target %-52s %10s %s %-8s %s\n' "$1" "$2" "$3" "$4" "$ok" >>"$SUMMARY"
  }
  {
    echo
    echo "targets ($backend):"
  } >>"$SUMMARY"
  check "(b) / (a) throughput, median of pairs" "${MEDIAN[b]}" ">=" 0.85
  echo "     (for reference: (b) / (a-req), same request headers on both sides: ${MEDIAN[b-req]})" >>"$SUMMARY"
  check "(b) p99 ms at $LAT_CONNECTIONS connections (b-lat)" "${R99[b-lat]}" "<" 2
  check "(g) introspect / (a) throughput, median of pairs" "${MEDIAN[g]}" ">=" 0.85
  check "(d) getCurrentUser / (a) throughput, median of pairs" "${MEDIAN[d]}" ">=" 0.70
  check "(c) warm / (a) throughput, median of pairs" "${MEDIAN[c-w]}" ">=" 0.70
  check "(c) cold verifications/s (server on one core)" "${RR[c-c]}" ">=" 10000
  check "(e) createToken tokens/s" "${RR[e]}" ">=" 2000
}

# db_report SCENARIO PG_BEFORE PG_AFTER FLUSH_BATCHES FLUSHED_TOKENS CACHE_MISSES
db_report() {
  local name=$1 before=$2 after=$3 batches=$4 flushed=$5 misses=$6
  echo "     db during $name: verification cache misses $misses; usage flush: $batches batches updating $flushed token rows" >>"$SUMMARY"
  if [ -n "$before" ] && [ -n "$after" ]; then
    read -r x0 s0 i0 u0 d0 <<<"$before"
    read -r x1 s1 i1 u1 d1 <<<"$after"
    local writes=$(( (i1 - i0) + (u1 - u0) + (d1 - d0) ))
    echo "     db during $name (pg_stat_user_tables): $((s1 - s0)) table scans, rows inserted $((i1 - i0)) updated $((u1 - u0)) deleted $((d1 - d0)); rows written besides the usage flush: $((writes - flushed)); $((x1 - x0 - 1)) transactions (pg_stat_database, autovacuum included)" >>"$SUMMARY"
  fi
}

{
  echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
  echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'), sigil: $("$BIN" --version)"
  if [ ${#SERVER_CPU[@]} -gt 0 ]; then echo "pinned: sigil on CPU 0, wrk on CPU 1 (PIN=0 to turn off)"; else echo "not pinned"; fi
} | tee "$WORK/machine.txt" >&2

for backend in $BACKENDS; do
  case $backend in
    sqlite|postgres) ;;
    *) say "unknown backend $backend"; exit 2 ;;
  esac
  bench_backend "$backend"
done
