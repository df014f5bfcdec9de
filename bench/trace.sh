#!/usr/bin/env bash
# The cost of --trace: the same download from an aria2c seeder on loopback, without and
# with tracing (full frames, then --trace-snaplen 96), alternated ROUNDS times in one run.
# Prints each wall and CPU time, the median ratios traced/untraced, and the trace sizes.
#
#   bench/trace.sh [SIZE_MIB (256)] [ROUNDS (3)]
#
# Needs aria2c and mktorrent; builds bt-trace in release mode. Everything stays on
# 127.0.0.1; all files go to a temporary directory that is removed at the end.
set -euo pipefail
SIZE_MIB=${1:-256}
ROUNDS=${2:-3}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/bt-trace
WORK=$(mktemp -d /tmp/bt-trace-bench-trace.XXXXXX)
ARIA_PID=
cleanup() { [ -n "$ARIA_PID" ] && kill "$ARIA_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

mkdir -p "$WORK/seed"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/seed/data.bin"
mktorrent -d -l 18 -a http://127.0.0.1:9/announce -o "$WORK/data.torrent" "$WORK/seed/data.bin" >/dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
OURPORT=$(free_port)
aria2c --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --bt-require-crypto=false \
  --bt-min-crypto-level=plain --file-allocation=none --disable-ipv6=true --seed-ratio=0.0 \
  --check-integrity=true --bt-tracker-interval=3600 --console-log-level=error --summary-interval=0 \
  --listen-port="$PORT" --dir="$WORK/seed" "$WORK/data.torrent" >/dev/null 2>&1 &
ARIA_PID=$!
# aria2c hashes the data before it serves it.
for _ in $(seq 1 600); do
  if "$BIN" handshake "$WORK/data.torrent" "127.0.0.1:$PORT" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
sleep 2

# run NAME [extra args...] -> prints "wall_seconds cpu_seconds" (cpu: user + system of
# bt-trace alone, from bash's `times` in a subshell; the steadier number on a machine
# shared with other jobs)
run() {
  local out="$WORK/out-$1.bin"; shift
  rm -f "$out"; rm -rf "$WORK/traces"
  local t0 t1 cpu
  t0=$(date +%s.%N)
  cpu=$( ( "$BIN" download -q --port "$OURPORT" -o "$out" "$WORK/data.torrent" \
      --peer "127.0.0.1:$PORT" "$@" >/dev/null 2>&1; times ) | tail -1 |
    awk '{ split($1,u,"m"); split($2,s,"m"); sub("s","",u[2]); sub("s","",s[2]); print u[1]*60+u[2]+s[1]*60+s[2] }')
  t1=$(date +%s.%N)
  cmp -s "$out" "$WORK/seed/data.bin" || { echo "download $out differs" >&2; exit 1; }
  rm -f "$out"
  echo "$(echo "$t1 - $t0" | bc -l) $cpu"
}

declare -a PW PC FW FC CW CC
for r in $(seq 1 "$ROUNDS"); do
  read -r w c <<<"$(run plain)"; PW+=("$w"); PC+=("$c")
  read -r w c <<<"$(run full --trace "$WORK/traces")"; FW+=("$w"); FC+=("$c")
  FULL_SIZE=$(du -b "$WORK"/traces/*.pcapng | cut -f1)
  JSONL_SIZE=$(du -b "$WORK"/traces/*.jsonl | cut -f1)
  read -r w c <<<"$(run cut --trace "$WORK/traces" --trace-snaplen 96)"; CW+=("$w"); CC+=("$c")
  CUT_SIZE=$(du -b "$WORK"/traces/*.pcapng | cut -f1)
  printf 'round %d (wall/cpu): plain %.2f/%.2f s, --trace %.2f/%.2f s, --trace-snaplen 96 %.2f/%.2f s\n' \
    "$r" "${PW[-1]}" "${PC[-1]}" "${FW[-1]}" "${FC[-1]}" "${CW[-1]}" "${CC[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
P=$(median "${PW[@]}"); F=$(median "${FW[@]}"); C=$(median "${CW[@]}")
PCPU=$(median "${PC[@]}"); FCPU=$(median "${FC[@]}"); CCPU=$(median "${CC[@]}")
printf '\n%d MiB, median of %d: plain %.2f s (%.0f MiB/s), CPU %.2f s\n' "$SIZE_MIB" "$ROUNDS" "$P" \
  "$(echo "$SIZE_MIB / $P" | bc -l)" "$PCPU"
printf '  --trace            %.2f s, ratio %.3f; CPU %.2f s, ratio %.3f; pcapng %.1f MiB, jsonl %.1f MiB\n' \
  "$F" "$(echo "$F / $P" | bc -l)" "$FCPU" "$(echo "$FCPU / $PCPU" | bc -l)" \
  "$(echo "$FULL_SIZE / 1048576" | bc -l)" "$(echo "$JSONL_SIZE / 1048576" | bc -l)"
printf '  --trace-snaplen 96 %.2f s, ratio %.3f; CPU %.2f s, ratio %.3f; pcapng %.1f MiB\n' \
  "$C" "$(echo "$C / $P" | bc -l)" "$CCPU" "$(echo "$CCPU / $PCPU" | bc -l)" \
  "$(echo "$CUT_SIZE / 1048576" | bc -l)"
