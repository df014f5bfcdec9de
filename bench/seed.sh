#!/usr/bin/env bash
# Seeding benchmark on loopback: the same libtorrent leecher (Debian's python3-libtorrent) downloads
# one deterministic torrent from a bt-trace seeder and from an aria2c seeder, one seeder at a time,
# alternating, BENCH_RUNS rounds each. Prints each round, then for each seeder the median MiB/s and
# the seeder's median CPU seconds, and the ratio bt-trace / aria2c (above 1: bt-trace serves faster).
# Every download is hash-checked piece by piece by libtorrent, and its file's SHA-1 on disk too.
#
#   bench/seed.sh                # 256 MiB
#   SIZE=1G bench/seed.sh
#   SIZE=64M BENCH_RUNS=1 bench/seed.sh   # quick check
#
# Environment:
#   SIZE=256M            torrent size (suffix K, M or G; powers of 1024)
#   BENCH_PIECE=256K     piece length
#   BENCH_RUNS=3         rounds (each seeder once a round); the median is reported
#   BENCH_DIR            work directory (default: a new one under /tmp, removed at the end)
#   BENCH_KEEP=1         keep the work directory (logs)
#   BT_TRACE=path        bt-trace binary (default: cargo build --release, target/release/bt-trace)
#
# The rate is the leecher's own clock (tests/support/lt_leech.py): from adding the torrent to the
# last verified piece, so Python's start-up is not counted. Each seeder has checked (bt-trace) or
# been told to trust (aria2c, --bt-seed-unverified) its data before the leecher starts; the torrent
# has no tracker, the leecher dials the seeder. This is a report, not a test: nothing passes or
# fails on speed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${SIZE:-256M}
BENCH_PIECE=${BENCH_PIECE:-256K}
BENCH_RUNS=${BENCH_RUNS:-3}
PY=/usr/bin/python3 # Debian's python3, the one with the libtorrent module
SUPPORT=$ROOT/tests/support

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

bytes_of() { # 256M -> 268435456
  local n=${1%[KkMmGg]} unit=${1##*[0-9]}
  [[ $n =~ ^[0-9]+$ ]] || die "SIZE must be a number with an optional K, M or G suffix, not $1"
  case $unit in
    K | k) echo $((n << 10)) ;;
    M | m) echo $((n << 20)) ;;
    G | g) echo $((n << 30)) ;;
    *) echo "$n" ;;
  esac
}
BYTES=$(bytes_of "$SIZE")
MIB=$(awk -v b="$BYTES" 'BEGIN { printf "%.3f", b / 1048576 }')

# ---------------------------------------------------------------------------------------------
# Tools
command -v aria2c >/dev/null || die "aria2c is not installed (apt-get install aria2)"
"$PY" -c 'import libtorrent' 2>/dev/null || die "$PY cannot import libtorrent (apt-get install python3-libtorrent)"
if [[ -z ${BT_TRACE:-} ]]; then
  log "building bt-trace (cargo build --release)"
  (cd "$ROOT" && cargo build --release --quiet --bin bt-trace)
  BT_TRACE=$ROOT/target/release/bt-trace
fi
[[ -x $BT_TRACE ]] || die "no bt-trace binary at $BT_TRACE"

# ---------------------------------------------------------------------------------------------
# Work directory and cleanup (we stop only the processes we started, by pid)
WORK=${BENCH_DIR:-$(mktemp -d /tmp/bt-seed-bench.XXXXXX)}
mkdir -p "$WORK"
SEEDER_PID=""
cleanup() {
  if [[ -n $SEEDER_PID ]]; then
    kill "$SEEDER_PID" 2>/dev/null || true
    wait "$SEEDER_PID" 2>/dev/null || true
  fi
  if [[ -n ${BENCH_KEEP:-} || -n ${BENCH_DIR:-} ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cpu_seconds() { # pid: user + system time so far
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# ---------------------------------------------------------------------------------------------
# Data and torrent (deterministic: the same SIZE gives the same info hash)
SRC=$WORK/src
mkdir -p "$SRC"
NAME=seed-bench-$SIZE.bin
log "making $SIZE of data"
"$PY" - "$SRC/$NAME" "$BYTES" <<'PYEOF'
import random, sys
path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261205)
with open(path, "wb") as f:
    while size > 0:
        n = min(size, 1 << 20)
        f.write(rng.randbytes(n))
        size -= n
PYEOF
SRC_SHA1=$(sha1sum "$SRC/$NAME" | cut -d' ' -f1)
TORRENT=$WORK/seed-bench.torrent
"$BT_TRACE" create "$SRC/$NAME" --piece-length "$BENCH_PIECE" --no-date -q -o "$TORRENT" >"$WORK/create.log" 2>&1 ||
  die "bt-trace create failed: $(cat "$WORK/create.log")"
log "torrent: $(grep 'Info Hash' "$WORK/create.log")"

# ---------------------------------------------------------------------------------------------
# Seeders: one at a time, each on a fresh free port, stopped after its round.
start_bt_trace() { # port
  "$BT_TRACE" seed "$TORRENT" --data "$SRC/$NAME" --port "$1" -q >"$WORK/bt-trace-seed.log" 2>&1 &
  SEEDER_PID=$!
  # it checks every piece before it listens
  wait_port "$1" "the bt-trace seeder" "$SEEDER_PID"
}

start_aria2c() { # port
  aria2c --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --bt-require-crypto=false --bt-min-crypto-level=plain --file-allocation=none --disable-ipv6=true \
    --interface=127.0.0.1 --summary-interval=0 --console-log-level=warn --enable-color=false \
    --auto-save-interval=0 --stop-with-process=$$ --seed-ratio=0.0 --bt-seed-unverified=true \
    --listen-port="$1" --dir="$SRC" "$TORRENT" >"$WORK/aria2c-seed.log" 2>&1 &
  SEEDER_PID=$!
  wait_port "$1" "the aria2c seeder" "$SEEDER_PID"
}

stop_seeder() {
  kill -INT "$SEEDER_PID" 2>/dev/null || true
  wait "$SEEDER_PID" 2>/dev/null || true
  SEEDER_PID=""
}

declare -A RATES CPUS
UNFLUSHED=0
# one_round SEEDER RUN: start the seeder, download once with the libtorrent leecher, check, record.
one_round() {
  local seeder=$1 run=$2 port dir cpu0 cpu1 out rate
  port=$(free_port)
  "start_${seeder//-/_}" "$port"
  dir=$WORK/leech-$seeder-$run
  rm -rf "$dir"
  mkdir -p "$dir"
  cpu0=$(cpu_seconds "$SEEDER_PID")
  if ! out=$("$PY" "$SUPPORT/lt_leech.py" "$TORRENT" "$dir" --peer "127.0.0.1:$port" --timeout 900 \
    2>"$dir/leech.log" </dev/null); then
    log "$seeder: the leecher failed; log tail:"
    tail -n 5 "$dir/leech.log" >&2 || true
    stop_seeder
    return 1
  fi
  cpu1=$(cpu_seconds "$SEEDER_PID")
  stop_seeder
  # libtorrent hash-checks every piece before it reports the torrent finished; the file's SHA-1
  # on disk is checked too, but lt_leech.py exits without flushing libtorrent's write cache, so
  # the last pieces may be missing from the file: that is a warning, not a wrong download.
  if [[ $(sha1sum "$dir/$NAME" 2>/dev/null | cut -d' ' -f1) != "$SRC_SHA1" ]]; then
    log "$seeder: the file on disk differs (write cache not flushed at the leecher's exit); libtorrent verified every piece"
    UNFLUSHED=$((UNFLUSHED + 1))
  fi
  rm -f "$dir/$NAME"
  rate=$(awk '{ print $4 }' <<<"$out")
  local cpu
  cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')
  log "run $run, seeder $seeder: $(awk '{ print $3 }' <<<"$out") s, $rate MiB/s, seeder CPU $cpu s"
  RATES[$seeder]="${RATES[$seeder]:-} $rate"
  CPUS[$seeder]="${CPUS[$seeder]:-} $cpu"
}

for run in $(seq "$BENCH_RUNS"); do
  for seeder in bt-trace aria2c; do
    one_round "$seeder" "$run" || true
  done
done

# ---------------------------------------------------------------------------------------------
# Report
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
declare -A MED_RATE MED_CPU
echo
echo "bt-trace seeding benchmark: $SIZE ($MIB MiB), $BENCH_PIECE pieces, one libtorrent leecher on 127.0.0.1, median of $BENCH_RUNS round(s)"
printf '%-10s %9s %16s %8s\n' seeder MiB/s 'seeder CPU s' rounds
for s in bt-trace aria2c; do
  if [[ -z ${RATES[$s]:-} ]]; then
    printf '%-10s %9s %16s %8s\n' "$s" - - 0
    continue
  fi
  MED_RATE[$s]=$(median <<<"${RATES[$s]}")
  MED_CPU[$s]=$(median <<<"${CPUS[$s]}")
  printf '%-10s %9.1f %16.2f %8d\n' "$s" "${MED_RATE[$s]}" "${MED_CPU[$s]}" "$(wc -w <<<"${RATES[$s]}")"
done
((UNFLUSHED == 0)) || echo "($UNFLUSHED download(s) verified piece by piece by libtorrent but not complete on disk at its exit)"
if [[ -n ${MED_RATE[bt-trace]:-} && -n ${MED_RATE[aria2c]:-} ]]; then
  echo "bt-trace / aria2c: $(awk -v a="${MED_RATE[bt-trace]}" -v b="${MED_RATE[aria2c]}" 'BEGIN { printf "%.2fx", a / b }')"
fi
