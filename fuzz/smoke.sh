#!/usr/bin/env bash
# CI smoke: builds every fuzz target and runs each for FUZZ_SMOKE_SECS seconds (default 8) from
# its seeds, with the limits of fuzz/run.sh. Fails on the first crash, hang or heap overrun.
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SMOKE_SECS:-8}
./build.sh
python3 seeds.py
host=$(rustc -vV | sed -n 's/^host: //p')
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^bt-trace-fuzz$')
for t in $targets; do
  mkdir -p "artifacts/$t"
  echo "fuzz smoke: $t (${secs}s)"
  "target/$host/release/$t" "corpus/$t" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=64 \
    -max_total_time="$secs" -artifact_prefix="artifacts/$t/" \
    -print_final_stats=1 2>"artifacts/$t/smoke.log" \
    || { tail -40 "artifacts/$t/smoke.log"; echo "fuzz smoke: $t FAILED"; exit 1; }
  grep -h '^stat::number_of_executed_units' "artifacts/$t/smoke.log" | sed "s/^/  /"
done
echo "fuzz smoke: all targets passed"
