#!/usr/bin/env bash
# Every benchmark in one run, each figure beside a baseline measured in the same run:
#   1. criterion micro-benchmarks: scope registry (contains, route, lookup) and token
#      verification (cache hit, cache miss, mint), each group with its baseline;
#   2. resident memory of 1,000,000 cached verifications (CACHE_ENTRIES to change);
#   3. the load test (bench/load.sh) on SQLite and on PostgreSQL.
# Results go to bench/results/<UTC stamp>/ (summary.txt first); BENCHMARKS.md summarises
# one such run. Release builds only; takes about 15 minutes on 2 cores.
#
#   bench/run.sh
#   BACKENDS=sqlite CACHE_ENTRIES=200000 bench/run.sh     # a shorter run
set -euo pipefail
cd "$(dirname "$0")/.."

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-bench/results/$STAMP}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
say() { printf '%s\n' "$*" >&2; }

{
  echo "Sigil benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "machine: $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
  echo "rustc: $(rustc --version)"
  echo
} >"$SUMMARY"

say "== building"
cargo build --release -p sigil

say "== criterion: scope registry"
cargo bench -p sigil-scope-registry --bench registry 2>&1 | tee "$OUT/criterion-registry.txt" >&2
say "== criterion: verification"
cargo bench -p sigil-token --bench verify 2>&1 | tee "$OUT/criterion-verify.txt" >&2
{
  echo "== criterion (median time; ratio to the group's baseline)"
  cat "$OUT/criterion-registry.txt" "$OUT/criterion-verify.txt" | python3 bench/criterion_summary.py
  echo
} >>"$SUMMARY"

say "== verification cache memory"
SIGIL_BENCH_CACHE_ENTRIES=${CACHE_ENTRIES:-1000000} \
  cargo bench -p sigil-token --bench cache_memory 2>&1 | tee "$OUT/cache-memory.txt" >&2
{
  echo "== verification cache memory (cargo bench -p sigil-token --bench cache_memory)"
  grep -E '^(stored|verified|cache:|baseline:|1,000,000)' "$OUT/cache-memory.txt"
  awk '/bytes per cached verification/ {
    for (i = 1; i <= NF; i++) if ($(i + 1) == "bytes" && $(i + 2) == "per") v = $i
    printf "     target bytes per cached verification %10s <= 512      %s\n", v, (v <= 512 ? "met" : "MISSED")
  }' "$OUT/cache-memory.txt"
  echo
} >>"$SUMMARY"

say "== load test"
SKIP_BUILD=1 RESULTS=$OUT bash bench/load.sh | tee "$OUT/load.txt"
{
  echo "== load test (bench/load.sh; raw wrk output in $OUT/*-sqlite.txt, *-postgres.txt)"
  grep -v '^raw: ' "$OUT/load.txt"
} >>"$SUMMARY"
say "summary: $SUMMARY"
cat "$SUMMARY"
