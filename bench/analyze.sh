#!/usr/bin/env bash
# `bt-trace analyze` against tshark on two big real captures of the same download between two real
# clients (a libtorrent seeder and a libtorrent leecher, plaintext), taken with dumpcap -B 256:
#   1. "lo":  a network namespace whose loopback is like the machine's (MTU 65536, offloads on):
#             TCP segments of up to ~64 KB, few frames;
#   2. "eth": a network namespace whose loopback has MTU 1500 and TSO/GSO/GRO off: Ethernet-sized
#             frames (~760k frames for 1 GiB).
# Then, in the same run, on each capture: bt-trace analyze (the default report), bt-trace analyze
# --json (every event, with the SHA-1 of every block), and tshark with the issue's command:
#   tshark -n -r FILE -o tcp.desegment_tcp_streams:TRUE -o bittorrent.desegment:TRUE
#          -o tcp.reassemble_out_of_order:TRUE -Y bittorrent -T fields -e frame.number
# Prints the wall time, MB/s (capture bytes per second), peak RSS (from /usr/bin/time -v) of each,
# and the ratios bt-trace/tshark. A report, not a test: nothing passes or fails on speed.
#
#   bench/analyze.sh                   # 1 GiB download (captures of ~1.1 GB each)
#   BENCH_MB=256 bench/analyze.sh      # smaller
#
# Environment:
#   BENCH_MB=1024     size of the torrent in MiB
#   BENCH_RUNS=2      timed runs of each tool on each capture; the fastest counts
#   BENCH_DIR         where the captures go (default: a new directory under /tmp, removed at the end)
#   BENCH_KEEP=1      keep BENCH_DIR; with an existing BENCH_DIR holding lo.pcapng and eth.pcapng,
#                     BENCH_REUSE=1 skips making them again
#   BT_TRACE=path     the bt-trace binary (default: cargo build --release)
#
# Needs root (network namespaces, dumpcap), Debian's python3 with python3-libtorrent, mktorrent,
# dumpcap, capinfos, tshark, ethtool, /usr/bin/time. Everything stays on 127.0.0.1 inside the
# namespaces.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_MB=${BENCH_MB:-1024}
BENCH_RUNS=${BENCH_RUNS:-2}
PY=/usr/bin/python3

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces and dumpcap)"
for t in dumpcap capinfos tshark mktorrent ethtool ip /usr/bin/time; do
  command -v "$t" >/dev/null || die "$t is missing"
done
$PY -c 'import libtorrent' 2>/dev/null || die "python3-libtorrent is missing"

if [[ -z ${BT_TRACE:-} ]]; then
  log "building bt-trace (cargo build --release)"
  (cd "$ROOT" && cargo build --release --quiet --bin bt-trace)
  BT_TRACE=$ROOT/target/release/bt-trace
fi

if [[ -n ${BENCH_DIR:-} ]]; then
  WORK=$BENCH_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/bt-trace-bench-analyze.XXXXXX)
fi
NSS=()
cleanup() {
  for ns in "${NSS[@]:-}"; do [[ -n $ns ]] && ip netns del "$ns" 2>/dev/null || true; done
  if [[ -z ${BENCH_KEEP:-} && -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# The download: one python process, a libtorrent seeder session and a leecher session that is
# told the seeder's address (no tracker, no DHT, no encryption, no uTP).
cat > "$WORK/pair.py" <<'PY'
import sys, time
import libtorrent as lt
torrent, seed_dir, leech_dir = sys.argv[1:4]
off = int(lt.enc_policy.disabled)
def session(port):
    return lt.session({
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True, "in_enc_policy": off, "out_enc_policy": off,
        # TCP only: libtorrent tries uTP (UDP) first otherwise, which is slow on loopback.
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
    })
seeder, leecher = session(6991), session(6992)
ti = lt.torrent_info(torrent)
hs = seeder.add_torrent({"ti": ti, "save_path": seed_dir})
deadline = time.time() + 600
while not hs.status().is_seeding:
    if time.time() > deadline: sys.exit("seeder never finished checking")
    time.sleep(0.1)
print("go", flush=True)
sys.stdin.readline()          # the capture is running
hl = leecher.add_torrent({"ti": ti, "save_path": leech_dir})
start = time.time()
hl.connect_peer(("127.0.0.1", 6991))
while not hl.status().is_seeding:
    if time.time() - start > 600: sys.exit("download timed out")
    time.sleep(0.05)
secs = time.time() - start
print(f"downloaded {ti.total_size()} bytes in {secs:.2f} s ({ti.total_size() / secs / 2**20:.0f} MiB/s)",
      flush=True)
time.sleep(1)
PY

make_capture() { # NAME MTU-SETUP...
  local name=$1 ns="btbench-$1-$$"
  shift
  ip netns add "$ns"
  NSS+=("$ns")
  ip netns exec "$ns" ip link set lo up
  if [[ $name == eth ]]; then
    ip netns exec "$ns" ip link set lo mtu 1500
    ip netns exec "$ns" ethtool -K lo tso off gso off gro off >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK/leech" && mkdir -p "$WORK/leech"
  coproc PAIR { ip netns exec "$ns" "$PY" "$WORK/pair.py" "$WORK/data.torrent" "$WORK/seed" "$WORK/leech" 2>&1; }
  local line
  read -r line <&"${PAIR[0]}"
  [[ $line == go ]] || die "$name: libtorrent: $line"
  ip netns exec "$ns" dumpcap -q -B 256 -i lo -f tcp -w "$WORK/$name.pcapng" 2>"$WORK/$name.dumpcap" &
  local cap=$!
  for _ in $(seq 100); do grep -q Capturing "$WORK/$name.dumpcap" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  echo >&"${PAIR[1]}"
  read -r line <&"${PAIR[0]}" || true
  log "$name: $line"
  wait "$PAIR_PID" || true
  sleep 0.5
  kill -INT "$cap"
  wait "$cap" || true
  grep -i "dropped" "$WORK/$name.dumpcap" >&2 || true
  cmp -s "$WORK/seed/data.bin" "$WORK/leech/data.bin" || die "$name: the download is not complete"
  ip netns del "$ns"
}

if [[ -n ${BENCH_REUSE:-} && -s $WORK/lo.pcapng && -s $WORK/eth.pcapng ]]; then
  log "reusing the captures in $WORK"
else
  log "making $BENCH_MB MiB of data and its torrent"
  mkdir -p "$WORK/seed"
  head -c "$((BENCH_MB * 1024 * 1024))" /dev/urandom > "$WORK/seed/data.bin"
  rm -f "$WORK/data.torrent"
  mktorrent -d -l 18 -a http://127.0.0.1:9/announce -o "$WORK/data.torrent" "$WORK/seed/data.bin" >/dev/null
  log "capture 1: loopback with 64 KB segments"
  make_capture lo
  log "capture 2: loopback with MTU 1500, offloads off"
  make_capture eth
fi

# ---------------------------------------------------------------------------------------------
# Timing
# timed OUT_PREFIX CMD... -> sets T (wall seconds) and RSS (KiB) of the fastest of BENCH_RUNS runs
timed() {
  local best_t="" best_rss=0 i
  for ((i = 0; i < BENCH_RUNS; i++)); do
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/err.txt" ||
      { cat "$WORK/err.txt" >&2; die "failed: $*"; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0;
             for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    if [[ -z $best_t ]] || awk -v a="$wall" -v b="$best_t" 'BEGIN {exit !(a < b)}'; then
      best_t=$wall
    fi
    ((rss > best_rss)) && best_rss=$rss
  done
  T=$best_t
  RSS=$best_rss
}

TSHARK=(tshark -n -o tcp.desegment_tcp_streams:TRUE -o bittorrent.desegment:TRUE
  -o tcp.reassemble_out_of_order:TRUE -Y bittorrent -T fields -e frame.number -r)

printf '\n%-5s %9s %9s  %-26s %8s %9s %10s\n' capture "size MB" frames tool "time s" "MB/s" "peak RSS"
for name in lo eth; do
  f=$WORK/$name.pcapng
  size=$(stat -c %s "$f")
  frames=$(capinfos -M -c "$f" | awk -F': *' '/Number of packets/ {print $2}')
  cat "$f" >/dev/null # into the page cache, for every tool alike
  declare -A TT RR
  for tool in analyze json tshark; do
    case $tool in
      analyze) timed "$BT_TRACE" analyze "$f" ;;
      json) timed "$BT_TRACE" analyze --json "$f" ;;
      tshark) timed "${TSHARK[@]}" "$f" ;;
    esac
    TT[$tool]=$T
    RR[$tool]=$RSS
    label=$tool
    [[ $tool == analyze ]] && label="bt-trace analyze"
    [[ $tool == json ]] && label="bt-trace analyze --json"
    awk -v n="$name" -v s="$size" -v fr="$frames" -v l="$label" -v t="$T" -v r="$RSS" 'BEGIN {
      printf "%-5s %9.0f %9d  %-26s %8.2f %9.0f %7.1f MiB\n", n, s / 1e6, fr, l, t, s / 1e6 / (t > 0 ? t : 1e-3), r / 1024 }'
  done
  awk -v a="${TT[analyze]}" -v j="${TT[json]}" -v t="${TT[tshark]}" -v n="$name" 'BEGIN {
    printf "%-5s  speed vs tshark: analyze %.1fx, analyze --json %.1fx\n", n, t / (a > 0 ? a : 1e-3), t / (j > 0 ? j : 1e-3) }'
  awk -v a="${RR[analyze]}" -v j="${RR[json]}" -v t="${RR[tshark]}" -v n="$name" 'BEGIN {
    printf "%-5s  peak RSS: analyze %.1f MiB, --json %.1f MiB, tshark %.1f MiB (%.0fx less)\n",
      n, a / 1024, j / 1024, t / 1024, t / (a > 0 ? a : 1) }'
  unset TT RR
done
if [[ -n ${BENCH_KEEP:-} || -n ${BENCH_DIR:-} ]]; then log "captures kept in $WORK"; fi
