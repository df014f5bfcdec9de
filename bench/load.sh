#!/usr/bin/env bash
# Load benchmark of `bt-trace seed` on loopback: LEECHERS leechers at once (the load generator of
# tests/it/load.rs, run as examples/load.rs) download one deterministic torrent made by
# `bt-trace create`; then the same with ten abusive leechers mixed in (request flood, a request
# past the end of a piece, an oversized request, a `have` flood, garbage after the handshake,
# two of each). Prints per run the time until all leechers completed and the seeder's upload
# rate, and at the end the seeder's peak RSS (VmHWM). Every piece is SHA-1-checked by each
# leecher. Release build.
#
#   bench/load.sh                         # 200 leechers, 4 MiB in 32 KiB pieces, 3 rounds
#   LEECHERS=500 SIZE_MIB=8 bench/load.sh
#
# Environment:
#   LEECHERS=200   leechers per run
#   SIZE_MIB=4     torrent size in MiB
#   PIECE_KIB=32   piece length in KiB (16 KiB blocks)
#   ROUNDS=3       rounds (each: one run without abusers, one with)
#
# A report, not a test: it exits 1 only when a leecher failed or an abuser was not dropped.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
cargo build --release --quiet --bin bt-trace --example load
exec target/release/examples/load \
  --leechers "${LEECHERS:-200}" \
  --size-mib "${SIZE_MIB:-4}" \
  --piece-kib "${PIECE_KIB:-32}" \
  --rounds "${ROUNDS:-3}" \
  --bt-trace target/release/bt-trace
