#!/usr/bin/env bash
# Issue 20, item 7: throughput and server CPU per GiB at 1, 2, 4, 8 and 16 workers, the server
# pinned to cores 0..W-1 and the load generator (the leechers of benches/random_load.rs) to the
# cores above them, on the warm scenarios (500 leechers at 1-4 MB/s, 32 unlimited). One
# prepared script for a machine with 16 or more cores; on a smaller one it runs the worker
# counts that fit and says which it skipped (at W = all cores the generator shares them). Never
# run by CI.
#
#   bash benches/cores.sh [OUT_DIR]      (default target/cores; one log per worker count)
#
# Needs: a release build (it builds one), taskset (util-linux). URINGSEED_BENCH_SECS and the
# other random_load variables pass through (default here: 20 s per row after 5 s).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/cores}
mkdir -p "$out"
cores=$(nproc)
cargo build --release --bin uringseed --bench random_load
bin=$PWD/target/release/uringseed
export URINGSEED_BENCH_SECS=${URINGSEED_BENCH_SECS:-20}
export URINGSEED_BENCH_SCENARIOS=${URINGSEED_BENCH_SCENARIOS:-limited,unlimited}
echo "cores: $cores; server on 0..W-1, generator on W..$((cores - 1))"
for w in 1 2 4 8 16; do
  if [ "$w" -gt "$cores" ]; then
    echo "workers $w: skipped (this machine has $cores cores)"
    continue
  fi
  gen="$w-$((cores - 1))" note=""
  if [ "$w" -eq "$cores" ]; then
    gen="0-$((cores - 1))" note=" (no core left: the generator shares the server's)"
  fi
  log="$out/workers-$w.log"
  URINGSEED_BENCH_BIN=$bin URINGSEED_BENCH_WORKERS=$w URINGSEED_BENCH_SERVER_CPUS="0-$((w - 1))" \
    taskset -c "$gen" cargo bench --bench random_load >"$log" 2>&1
  echo "workers $w$note:"
  grep -E '^(500|32|[0-9]+ (unlimited )?leechers)' "$log" | sed 's/^/  /'
done
