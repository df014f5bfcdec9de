#!/usr/bin/env bash
# Download benchmark on loopback: one swarm of real seeders (aria2c, transmission-daemon, libtorrent)
# serving one deterministic torrent through opentracker; then, one after the other in the same run,
# bt-trace, aria2c, a libtorrent leecher and rqbit download it. Prints MiB/s for each, the ratio of
# bt-trace to each, and bt-trace's peak RSS. Every download is checked (SHA-1) before it counts.
#
#   bench/download.sh                  # 1 GiB
#   BENCH_MB=64 bench/download.sh      # quick check
#
# Environment:
#   BENCH_MB=1024        torrent size in MiB
#   BENCH_PIECE_LOG2=18  piece length 2^N (256 KiB)
#   BENCH_RUNS=1         downloads per client; the best rate is reported
#   BENCH_CLIENTS="bt-trace aria2c libtorrent rqbit"   which leechers to time
#   BENCH_TOOLS=bench/.tools   where rqbit is installed (cargo install --root), built once
#   BENCH_DIR            work directory (default: a new one under /tmp, removed at the end)
#   BENCH_KEEP=1         keep the work directory (logs)
#   BT_TRACE=path        bt-trace binary (default: cargo build --release, target/release/bt-trace)
#
# Timing is the wall time of each client's process, from start to exit (tracker announce, connects,
# download, verify, write). This is a report, not a test: nothing here passes or fails on speed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_MB=${BENCH_MB:-1024}
BENCH_PIECE_LOG2=${BENCH_PIECE_LOG2:-18}
BENCH_RUNS=${BENCH_RUNS:-1}
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

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port what
  for _ in $(seq 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 is not listening on 127.0.0.1:$1"
}

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
  --interface=127.0.0.1 --summary-interval=0 --console-log-level=warn --enable-color=false
  --auto-save-interval=0 --stop-with-process=$$)

# ---------------------------------------------------------------------------------------------
# Seeders
log "starting seeders: aria2c, transmission-daemon, libtorrent"
ARIA2_SEED_PORT=$(free_port)
aria2c "${ARIA2_COMMON[@]}" --check-integrity=true --seed-ratio=0.0 --listen-port="$ARIA2_SEED_PORT" \
  --dir="$SRC" "$TORRENT" >"$WORK/aria2-seed.log" 2>&1 &
PIDS+=($!)

TR=$WORK/transmission
mkdir -p "$TR"
TR_PEER=$(free_port)
TR_RPC=$(free_port)
cat >"$TR/settings.json" <<JSON
{
  "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
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
exec {LT_IN}> >("$PY" "$SUPPORT/lt_seed.py" --port "$LT_PORT" "$TORRENT=$SRC" >"$WORK/lt-seed.log" 2>&1)
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
log "swarm ready: aria2c :$ARIA2_SEED_PORT, transmission :$TR_PEER, libtorrent :$LT_PORT"

# Transmission 3.00 remembers peers by IP address: once a 127.0.0.1 peer has completed the torrent,
# it closes every later connection from 127.0.0.1 ("both seeds"). So that each leecher meets the same
# swarm, restart it (its resume data makes that quick) before each leecher.
restart_transmission() {
  kill "$TR_PID" 2>/dev/null || true
  wait "$TR_PID" 2>/dev/null || true
  start_transmission
  wait_port "$TR_RPC" transmission-daemon
  wait_port "$TR_PEER" transmission-daemon
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
declare -A RATE SECS
BT_RSS_KB=""

now() { date +%s.%N; }

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

record() { # client seconds
  local rate
  rate=$(awk -v mb="$BENCH_MB" -v s="$2" 'BEGIN { printf "%.1f", mb / s }')
  log "$1: $(printf '%.2f' "$2") s, $rate MiB/s"
  if [[ -z ${RATE[$1]:-} ]] || awk -v a="$rate" -v b="${RATE[$1]}" 'BEGIN { exit !(a > b) }'; then
    RATE[$1]=$rate
    SECS[$1]=$2
  fi
}

run_bt_trace() { # dir
  local out=$1/$NAME t0 t1 rss
  t0=$(now)
  if ! /usr/bin/time -v -o "$1/time.txt" "$BT_TRACE" download -o "$out" "$TORRENT" \
    >"$1/bt-trace.out" 2>"$1/bt-trace.err" </dev/null; then
    log "bt-trace: download failed; skipping it. stderr tail:"
    tail -n 5 "$1/bt-trace.err" >&2 || true
    return 1
  fi
  t1=$(now)
  check_output "$out" bt-trace || return 1
  rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$1/time.txt")
  if [[ -z $BT_RSS_KB || $rss -gt $BT_RSS_KB ]]; then BT_RSS_KB=$rss; fi
  record bt-trace "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}

run_aria2c() {
  local port t0 t1
  port=$(free_port)
  t0=$(now)
  aria2c "${ARIA2_COMMON[@]}" --seed-time=0 --listen-port="$port" --dir="$1" "$TORRENT" \
    >"$1/aria2c.log" 2>&1 </dev/null || { log "aria2c: failed"; tail -n 5 "$1/aria2c.log" >&2; return 1; }
  t1=$(now)
  check_output "$1/$NAME" aria2c || return 1
  record aria2c "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}

run_libtorrent() {
  local t0 t1
  t0=$(now)
  "$PY" "$SUPPORT/lt_leech.py" "$TORRENT" "$1" >"$1/lt.out" 2>"$1/lt.err" </dev/null ||
    { log "libtorrent: failed"; tail -n 5 "$1/lt.err" >&2; return 1; }
  t1=$(now)
  check_output "$1/$NAME" libtorrent || return 1
  record libtorrent "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}

run_rqbit() {
  local port t0 t1
  port=$(free_port)
  t0=$(now)
  "$RQBIT" --disable-dht --disable-dht-persistence --disable-upnp-port-forward --disable-lsd \
    --listen-ip 127.0.0.1 --listen-port "$port" --ipv4-only \
    download --disable-http-api -e -o "$1" "$TORRENT" >"$1/rqbit.log" 2>&1 </dev/null ||
    { log "rqbit: failed"; tail -n 5 "$1/rqbit.log" >&2; return 1; }
  t1=$(now)
  check_output "$1/$NAME" rqbit || return 1
  record rqbit "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
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
# Report
echo
echo "bt-trace download benchmark: ${BENCH_MB} MiB, 2^${BENCH_PIECE_LOG2}-byte pieces, seeders aria2c + transmission-daemon + libtorrent on 127.0.0.1, best of $BENCH_RUNS"
printf '%-12s %10s %10s %16s\n' client seconds MiB/s bt-trace/client
for c in bt-trace aria2c libtorrent rqbit; do
  if [[ -z ${RATE[$c]:-} ]]; then
    printf '%-12s %10s %10s %16s\n' "$c" - skipped -
    continue
  fi
  ratio=-
  [[ -n ${RATE[bt-trace]:-} ]] && ratio=$(awk -v a="${RATE[bt-trace]}" -v b="${RATE[$c]}" 'BEGIN { printf "%.2fx", a / b }')
  printf '%-12s %10.2f %10s %16s\n' "$c" "${SECS[$c]}" "${RATE[$c]}" "$ratio"
done
if [[ -n $BT_RSS_KB ]]; then
  echo "bt-trace peak RSS: $(awk -v k="$BT_RSS_KB" 'BEGIN { printf "%.1f MiB", k / 1024 }')"
else
  echo "bt-trace peak RSS: - (bt-trace did not complete a download)"
fi
