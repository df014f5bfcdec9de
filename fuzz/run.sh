#!/usr/bin/env bash
# Fuzzes one target: fuzz/run.sh TARGET [libFuzzer options...], e.g.
#   fuzz/run.sh bencode -runs=10000000
# Builds it (fuzz/build.sh), writes the seeds (fuzz/seeds.py), then runs libFuzzer on
# fuzz/corpus/TARGET with the project's limits: 1 s per input, 64 MiB of Rust heap (enforced by
# the targets' allocator, fuzz/src/lib.rs), 2 GiB RSS. Crashes go to fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [libFuzzer options...]}
shift
./build.sh "$target"
python3 seeds.py
mkdir -p "artifacts/$target"
host=$(rustc -vV | sed -n 's/^host: //p')
exec "target/$host/release/$target" "corpus/$target" \
  -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=64 \
  -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
