#!/usr/bin/env bash
# Builds the fuzz targets (all, or those named) with libFuzzer and SanitizerCoverage on the stable
# toolchain: the flags `cargo fuzz build --sanitizer none` passes, with no cargo-fuzz to install.
# The explicit --target keeps RUSTFLAGS off build scripts and proc macros (they are not fuzzed).
set -euo pipefail
cd "$(dirname "$0")"
host=$(rustc -vV | sed -n 's/^host: //p')
flags=(
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  --cfg fuzzing
)
bins=()
for t in "$@"; do bins+=(--bin "$t"); done
RUSTFLAGS="${flags[*]}" cargo build --release --locked --target "$host" "${bins[@]}"
