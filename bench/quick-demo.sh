#!/usr/bin/env bash
# A thin wrapper kept for old instructions: the main job is now `bt-trace demo`, which needs
# nothing outside bt-trace (docs/demo.md). Arguments are passed on, e.g.
#   bash bench/quick-demo.sh --size 64M --force
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -- demo "$@"
