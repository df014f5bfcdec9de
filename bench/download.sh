#!/usr/bin/env bash
# Download benchmark on loopback: one swarm of real seeders (aria2c, transmission-daemon, libtorrent)
# serving one deterministic torrent through opentracker; then, one after the other in the same run,
# bt-trace, aria2c, a libtorrent leecher and rqbit download it, BENCH_RUNS rounds. Prints for each
# client the median seconds and MiB/s, CPU seconds per GiB and peak RSS, and the ratios of bt-trace to
# each (and to the faster of rqbit and libtorrent). Every download is checked (SHA-1) before it counts.
#
#   bench/download.sh                  # 1 GiB
#   BENCH_MB=64 bench/download.sh      # quick check
#
# Environment:
#   BENCH_MB=1024        torrent size in MiB
#   BENCH_PIECE_LOG2=18  piece length 2^N (256 KiB)
#   BENCH_RUNS=3         rounds (each client once a round); the median is reported
#   BENCH_CLIENTS="bt-trace aria2c libtorrent rqbit"   which leechers to time
#   BENCH_TOOLS=bench/.tools   where rqbit is installed (cargo install --root), built once
#   BENCH_DIR            work directory (default: a new one under /tmp, removed at the end)
#   BENCH_KEEP=1         keep the work directory (logs)
#   BT_TRACE=path        bt-trace binary (default: cargo build --release, target/release/bt-trace)
#   BT_TRACE_ARGS="..."  extra arguments for bt-trace's download (e.g. "-v", or "--trace DIR" to see
#                        afterwards with `bt-trace analyze` which seeder sent what, and when)
#
# Timing is the wall time of each client's process, from start to exit (tracker announce, connects,
# download, verify, write). This is a report, not a test: nothing here passes or fails on speed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_MB=${BENCH_MB:-1024}
BENCH_PIECE_LOG2=${BENCH_PIECE_LOG2:-18}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_CLIENTS=${BENCH_CLIENTS:-"bt-trace aria2c libtorrent rqbit"}
BENCH_TOOLS=${BENCH_TOOLS:-$ROOT/bench/.tools}
PY=/usr/bin/python3 # Debian's python3, the one with the libtorrent module
SUPPORT=$ROOT/tests/support

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Tools
need_pkgs=()
for p in aria2 transmission-daemon transmission-cli opentracker python3-libtorrent mktorrent curl time; do
  [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages: ${need_pkgs[*]} (install them, or run as root)"
  log "installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" </dev/null
fi

want() { [[ " $BENCH_CLIENTS " == *" $1 "* ]]; }

if want bt-trace && [[ -z ${BT_TRACE:-} ]]; then
  log "building bt-trace (cargo build --release)"
  if (cd "$ROOT" && cargo build --release --quiet --bin bt-trace); then
    BT_TRACE=$ROOT/target/release/bt-trace
  else
    log "bt-trace: build failed, skipping it"
    BT_TRACE=""
  fi
fi

RQBIT=""
if want rqbit; then
  if [[ -x $BENCH_TOOLS/bin/rqbit ]]; then
    RQBIT=$BENCH_TOOLS/bin/rqbit
  elif command -v cargo >/dev/null; then
    log "installing rqbit into $BENCH_TOOLS (once; several minutes)"
    if cargo install rqbit --no-default-features --features default-tls --root "$BENCH_TOOLS" >&2; then
      RQBIT=$BENCH_TOOLS/bin/rqbit
    else
      log "rqbit: cargo install failed, skipping rqbit"
    fi
  else
    log "rqbit: no cargo, skipping rqbit"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Work directory and cleanup (we kill only the processes we started, by pid)
WORK=${BENCH_DIR:-$(mktemp -d /tmp/bt-bench.XXXXXX)}
mkdir -p "$WORK"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  if [[ -n ${BENCH_KEEP:-} || -n ${BENCH_DIR:-} ]]; then
    log "kept $WORK"
  fi
  exec 2>/dev/null # no "Killed" job notices
  for pid in "${PIDS[@]}"; do kill -9 "$pid" || true; done
  wait || true
  [[ -n ${BENCH_KEEP:-} || -n ${BENCH_DIR:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------------------------------------
# Data and torrent (deterministic: same size and seed, same info hash)
SRC=$WORK/src
mkdir -p "$SRC"
NAME=bench-${BENCH_MB}MiB.bin
log "making ${BENCH_MB} MiB of data"
"$PY" - "$SRC/$NAME" "$BENCH_MB" <<'PYEOF'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
rng = random.Random(20240601)
with open(path, "wb") as f:
    for _ in range(mib):
        f.write(rng.randbytes(1 << 20))
PYEOF
SRC_SHA1=$(sha1sum "$SRC/$NAME" | cut -d' ' -f1)

TRACKER_PORT=$(free_port)
TORRENT=$WORK/bench.torrent
mktorrent -d -l "$BENCH_PIECE_LOG2" -a "http://127.0.0.1:$TRACKER_PORT/announce" -o "$TORRENT" "$SRC/$NAME" >/dev/null
INFO_HASH=$(transmission-show "$TORRENT" | awk '/^ *Hash:/ {print $2}')
log "torrent $INFO_HASH, $(transmission-show "$TORRENT" | awk '/Piece Count/ {print $3}') pieces"

# ---------------------------------------------------------------------------------------------
# opentracker: whitelist-only, chroots to its directory and runs as nobody
OT=$WORK/opentracker
mkdir -p "$OT"
chmod 755 "$OT"
echo "$INFO_HASH" >"$OT/whitelist.txt"
chmod 644 "$OT/whitelist.txt"
wl=/whitelist.txt
[[ $(id -u) -eq 0 ]] || wl=$OT/whitelist.txt # no chroot without root
opentracker -i 127.0.0.1 -p "$TRACKER_PORT" -P "$TRACKER_PORT" -d "$OT" -w "$wl" -A 127.0.0.1 \
  >"$WORK/opentracker.log" 2>&1 &
PIDS+=($!)
wait_port "$TRACKER_PORT" opentracker

scrape_complete() {
  local enc
  enc=$(sed 's/../%&/g' <<<"$INFO_HASH")
  curl -s "http://127.0.0.1:$TRACKER_PORT/scrape?info_hash=$enc" |
    "$PY" -c 'import re,sys; m=re.search(rb"8:completei(\d+)e", sys.stdin.buffer.read()); print(m.group(1).decode() if m else 0)'
}

ARIA2_COMMON=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
  --bt-require-crypto=false --bt-min-crypto-level=plain --file-allocation=none --disable-ipv6=true
  --summary-interval=0 --console-log-level=warn --enable-color=false
  --auto-save-interval=0 --stop-with-process=$$)

# ---------------------------------------------------------------------------------------------
# Seeders, each on a loopback address of its own, the leechers on 127.0.0.1. Transmission 3.00 keeps
# what it knows of peers by IP address alone: once any 127.0.0.1 peer is a seed (the other seeders
# connect to it), it closes every connection from 127.0.0.1 at the handshake ("both seeds"), and a
# leecher on that address would get nothing from it.
TR_IP=127.0.0.2
ARIA2_IP=127.0.0.3
LT_IP=127.0.0.4
log "starting seeders: aria2c ($ARIA2_IP), transmission-daemon ($TR_IP), libtorrent ($LT_IP)"
ARIA2_SEED_PORT=$(free_port)
aria2c "${ARIA2_COMMON[@]}" --interface="$ARIA2_IP" --check-integrity=true --seed-ratio=0.0 --listen-port="$ARIA2_SEED_PORT" \
  --dir="$SRC" "$TORRENT" >"$WORK/aria2-seed.log" 2>&1 &
PIDS+=($!)

TR=$WORK/transmission
mkdir -p "$TR"
TR_PEER=$(free_port)
TR_RPC=$(free_port)
cat >"$TR/settings.json" <<JSON
{
  "bind-address-ipv4": "$TR_IP", "bind-address-ipv6": "::1",
  "peer-port": $TR_PEER, "peer-port-random-on-start": false, "port-forwarding-enabled": false,
  "dht-enabled": false, "lpd-enabled": false, "utp-enabled": false, "pex-enabled": false,
  "encryption": 0, "rpc-enabled": true, "rpc-bind-address": "127.0.0.1", "rpc-port": $TR_RPC,
  "rpc-authentication-required": false, "rpc-whitelist-enabled": false, "rpc-host-whitelist-enabled": false,
  "download-dir": "$TR/downloads", "incomplete-dir-enabled": false, "watch-dir-enabled": false,
  "ratio-limit-enabled": false, "idle-seeding-limit-enabled": false, "speed-limit-up-enabled": false,
  "blocklist-enabled": false, "start-added-torrents": true, "download-queue-enabled": false,
  "seed-queue-enabled": false, "queue-stalled-enabled": false, "message-level": 1
}
JSON
TR_PID=""
start_transmission() {
  transmission-daemon -f -g "$TR" >>"$WORK/transmission.log" 2>&1 &
  TR_PID=$!
  PIDS+=("$TR_PID")
}
start_transmission

LT_PORT=$(free_port)
# lt_seed.py exits when its stdin closes: keep a pipe open for it.
exec {LT_IN}> >("$PY" "$SUPPORT/lt_seed.py" --ip "$LT_IP" --port "$LT_PORT" "$TORRENT=$SRC" >"$WORK/lt-seed.log" 2>&1)
PIDS+=($!)

wait_port "$TR_RPC" transmission-daemon
transmission-remote "127.0.0.1:$TR_RPC" -a "$TORRENT" -w "$SRC" >/dev/null

for i in $(seq 1200); do
  n=$(scrape_complete)
  [[ $n -ge 3 ]] && break
  ((i % 50 == 0)) && log "waiting for 3 seeders at the tracker (have $n; they verify ${BENCH_MB} MiB first)"
  sleep 0.2
done
[[ $(scrape_complete) -ge 3 ]] || die "seeders not all up; see logs in $WORK (BENCH_KEEP=1)"
log "swarm ready: aria2c $ARIA2_IP:$ARIA2_SEED_PORT, transmission $TR_IP:$TR_PEER, libtorrent $LT_IP:$LT_PORT"

# Transmission 3.00 remembers peers by IP address: once a 127.0.0.1 peer has completed the torrent,
# it closes every later connection from 127.0.0.1 ("both seeds"). So that each leecher meets the same
# swarm, restart it (its resume data makes that quick) before each leecher.
restart_transmission() {
  kill "$TR_PID" 2>/dev/null || true
  wait "$TR_PID" 2>/dev/null || true
  start_transmission
  wait_port "$TR_RPC" transmission-daemon
  wait_port "$TR_PEER" transmission-daemon "" "$TR_IP"
  for _ in $(seq 600); do
    transmission-remote "127.0.0.1:$TR_RPC" -t "$INFO_HASH" -i 2>/dev/null |
      grep -q 'Percent Done: 100%' && break
    sleep 0.1
  done
  for _ in $(seq 300); do
    [[ $(scrape_complete) -ge 3 ]] && return 0
    sleep 0.1
  done
  log "transmission did not come back as a seeder"
}

# ---------------------------------------------------------------------------------------------
# Leechers
# Each download runs under /usr/bin/time -v: wall seconds (from start to exit: announce, connects,
# download, verify, write), CPU seconds (user + system) and peak RSS of the client's process.
declare -A WALLS CPUS RSS_KB

check_output() { # file client
  if [[ ! -f $1 ]]; then
    log "$2: no output file"
    return 1
  fi
  local got
  got=$(sha1sum "$1" | cut -d' ' -f1)
  if [[ $got != "$SRC_SHA1" ]]; then
    log "$2: WRONG DATA (sha1 $got)"
    return 1
  fi
}

# timed CLIENT DIR LOG CMD... : runs CMD under /usr/bin/time -v (stdout and stderr to DIR/LOG), checks
# DIR/$NAME, and records wall, CPU and RSS for CLIENT.
timed() {
  local client=$1 dir=$2 logf=$3 t0 t1 wall cpu rss
  shift 3
  t0=$(date +%s.%N)
  if ! /usr/bin/time -v -o "$dir/time.txt" "$@" >"$dir/$logf" 2>&1 </dev/null; then
    log "$client: failed; log tail:"
    tail -n 5 "$dir/$logf" >&2 || true
    return 1
  fi
  t1=$(date +%s.%N)
  check_output "$dir/$NAME" "$client" || return 1
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  cpu=$(awk -F: '/User time|System time/ { s += $2 } END { printf "%.3f", s }' "$dir/time.txt")
  rss=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$dir/time.txt")
  log "$client: ${wall} s, $(awk -v mb="$BENCH_MB" -v s="$wall" 'BEGIN { printf "%.1f", mb / s }') MiB/s, CPU ${cpu} s, RSS $((rss / 1024)) MiB"
  WALLS[$client]="${WALLS[$client]:-} $wall"
  CPUS[$client]="${CPUS[$client]:-} $cpu"
  if [[ -z ${RSS_KB[$client]:-} || $rss -gt ${RSS_KB[$client]} ]]; then RSS_KB[$client]=$rss; fi
}

run_bt_trace() { # dir
  # shellcheck disable=SC2086 # BT_TRACE_ARGS is a list of words
  timed bt-trace "$1" bt-trace.log "$BT_TRACE" download -q -o "$1/$NAME" "$TORRENT" ${BT_TRACE_ARGS:-}
}

run_aria2c() {
  timed aria2c "$1" aria2c.log aria2c "${ARIA2_COMMON[@]}" --interface=127.0.0.1 --seed-time=0 --listen-port="$(free_port)" \
    --dir="$1" "$TORRENT"
}

run_libtorrent() {
  timed libtorrent "$1" lt.log "$PY" "$SUPPORT/lt_leech.py" "$TORRENT" "$1"
}

run_rqbit() {
  timed rqbit "$1" rqbit.log "$RQBIT" --disable-dht --disable-dht-persistence \
    --disable-upnp-port-forward --disable-lsd --listen-ip 127.0.0.1 --listen-port "$(free_port)" \
    --ipv4-only download --disable-http-api -e -o "$1" "$TORRENT"
}

clients=()
for c in $BENCH_CLIENTS; do
  case $c in
    bt-trace) [[ -n ${BT_TRACE:-} ]] && clients+=(bt-trace) ;;
    rqbit) [[ -n $RQBIT ]] && clients+=(rqbit) ;;
    aria2c | libtorrent) clients+=("$c") ;;
    *) die "unknown client $c (BENCH_CLIENTS)" ;;
  esac
done

for run in $(seq "$BENCH_RUNS"); do
  for c in "${clients[@]}"; do
    [[ $c == bt-trace && ${SKIP_BT:-} == 1 ]] && continue
    dir=$WORK/leech-$c-$run
    rm -rf "$dir"
    mkdir -p "$dir"
    restart_transmission
    log "run $run: $c"
    if ! "run_${c//-/_}" "$dir"; then
      [[ $c == bt-trace ]] && SKIP_BT=1
    fi
    # free the disk (and page cache) before the next client; keep the logs
    rm -f "$dir/$NAME"
  done
done

# ---------------------------------------------------------------------------------------------
# Report: the median of the rounds for time and CPU, the largest RSS seen.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
declare -A MED_WALL MED_RATE MED_CPU
for c in bt-trace aria2c libtorrent rqbit; do
  [[ -n ${WALLS[$c]:-} ]] || continue
  MED_WALL[$c]=$(median <<<"${WALLS[$c]}")
  MED_RATE[$c]=$(awk -v mb="$BENCH_MB" -v s="${MED_WALL[$c]}" 'BEGIN { printf "%.1f", mb / s }')
  MED_CPU[$c]=$(median <<<"${CPUS[$c]}")
done
echo
echo "bt-trace download benchmark: ${BENCH_MB} MiB, 2^${BENCH_PIECE_LOG2}-byte pieces, seeders aria2c + transmission-daemon + libtorrent on 127.0.0.2-4, leechers on 127.0.0.1, median of $BENCH_RUNS round(s)"
printf '%-12s %9s %9s %13s %10s %16s\n' client seconds MiB/s CPU-s/GiB 'peak RSS' bt-trace/client
for c in bt-trace aria2c libtorrent rqbit; do
  if [[ -z ${MED_WALL[$c]:-} ]]; then
    printf '%-12s %9s %9s %13s %10s %16s\n' "$c" - skipped - - -
    continue
  fi
  ratio=-
  [[ -n ${MED_RATE[bt-trace]:-} ]] && ratio=$(awk -v a="${MED_RATE[bt-trace]}" -v b="${MED_RATE[$c]}" 'BEGIN { printf "%.2fx", a / b }')
  printf '%-12s %9.2f %9s %13s %10s %16s\n' "$c" "${MED_WALL[$c]}" "${MED_RATE[$c]}" \
    "$(awk -v c="${MED_CPU[$c]}" -v mb="$BENCH_MB" 'BEGIN { printf "%.2f", c * 1024 / mb }')" \
    "$(awk -v k="${RSS_KB[$c]}" 'BEGIN { printf "%.1f MiB", k / 1024 }')" "$ratio"
done
# The bar bt-trace is held to: the faster of the two fastest real clients measured in this run.
best=""
for c in rqbit libtorrent; do
  [[ -n ${MED_RATE[$c]:-} ]] || continue
  if [[ -z $best ]] || awk -v a="${MED_RATE[$c]}" -v b="${MED_RATE[$best]}" 'BEGIN { exit !(a > b) }'; then best=$c; fi
done
if [[ -n $best && -n ${MED_RATE[bt-trace]:-} ]]; then
  echo "bt-trace / faster of rqbit and libtorrent ($best): $(awk -v a="${MED_RATE[bt-trace]}" -v b="${MED_RATE[$best]}" 'BEGIN { printf "%.2fx", a / b }')"
fi
