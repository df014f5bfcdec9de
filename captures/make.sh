#!/usr/bin/env bash
# Regenerates the real captures in this folder (see README.md). Needs root (a private network namespace and
# dumpcap) and: dumpcap editcap tshark aria2c opentracker mktorrent transmission-daemon transmission-remote
# transmission-show, and Debian's /usr/bin/python3 with python3-libtorrent.
#
# Everything runs inside a fresh network namespace, so its `lo` carries only this swarm's traffic; every
# address is 127.0.0.1. The captured bytes differ from run to run (timing, ports, peer ids); the torrent and
# its data do not.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)

# shellcheck source=captures/netns.sh
source "$HERE/netns.sh"
workdir btcap
log() { echo "make.sh: $*" >&2; }

# ---- data and torrents (deterministic) ----------------------------------------------------------------------
mkdir -p "$WORK/seed" "$WORK/tracker"
/usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(20240601).randbytes(1 << 20))' "$WORK/seed/sample.bin"
# 64 KiB pieces: 16 pieces. Torrent "udp" lists the UDP tracker first (libtorrent uses it), "http" only HTTP.
mktorrent -d -l 16 -a http://127.0.0.1:6969/announce -o "$WORK/http.torrent" "$WORK/seed/sample.bin" >/dev/null
mktorrent -d -l 16 -a udp://127.0.0.1:6969/announce -a http://127.0.0.1:6969/announce \
    -o "$WORK/udp.torrent" "$WORK/seed/sample.bin" >/dev/null
HASH=$(transmission-show "$WORK/http.torrent" | awk '/Hash:/ {print $2; exit}')
log "info hash $HASH"

# ---- tracker: opentracker, whitelist-only, chrooted into $WORK/tracker -------------------------------------
echo "$HASH" > "$WORK/tracker/whitelist.txt"
chmod 755 "$WORK/tracker"; chmod 644 "$WORK/tracker/whitelist.txt"
opentracker -i 127.0.0.1 -p 6969 -P 6969 -d "$WORK/tracker" -w /whitelist.txt -A 127.0.0.1 >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5

ARIA_COMMON=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --bt-require-crypto=false
    --bt-min-crypto-level=plain --file-allocation=none --disable-ipv6=true --check-integrity=true
    --summary-interval=0 --console-log-level=warn --bt-exclude-tracker='*'
    --bt-tracker=http://127.0.0.1:6969/announce)

start_capture() { # FILE DUMPCAP-ARGS...
    local f=$1; shift
    rm -f "$f"
    dumpcap -q -B 256 "$@" -f 'tcp or udp' -w "$f" 2>"$WORK/dumpcap.err" &
    CAP=$!
    for _ in $(seq 50); do grep -q Capturing "$WORK/dumpcap.err" 2>/dev/null && break; sleep 0.1; done
    sleep 0.3
}
stop_capture() {
    sleep 0.5
    kill -INT "$CAP"; wait "$CAP" || true
}
aria_seed() { # PORT [extra args]
    local port=$1; shift
    aria2c "${ARIA_COMMON[@]}" --seed-ratio=0.0 --listen-port="$port" --dir="$WORK/seed" "$@" \
        "$WORK/http.torrent" >"$WORK/aria-seed-$port.log" 2>&1 &
    SEED=$!
}
fresh() { rm -rf "$WORK/leech"; mkdir -p "$WORK/leech"; }
# `ONLY="2 4" make.sh` remakes some captures only (4 also remakes the files derived from it).
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

if want 1; then # ---- 1. lo (Ethernet): aria2 seeder on 6881, libtorrent leecher via the UDP tracker -------------------------
log "1: lo, aria2 seeder -> libtorrent leecher"
start_capture "$WORK/1.pcapng" -i lo
aria_seed 6881; sleep 2
fresh; /usr/bin/python3 "$HERE/lt_client.py" leech "$WORK/udp.torrent" "$WORK/leech" 6890 60
stop_capture; kill "$SEED"; wait "$SEED" || true
cp "$WORK/1.pcapng" "$HERE/lo_aria2_to_libtorrent.pcapng"
fi

if want 2; then # ---- 2. any (SLL): libtorrent seeder on 6882 (plaintext only), aria2 leecher (MSE first, then plaintext) -----
log "2: any/SLL, libtorrent seeder -> aria2 leecher"
/usr/bin/python3 "$HERE/lt_client.py" seed "$WORK/http.torrent" "$WORK/seed" 6882 600 &
LTS=$!; PIDS+=($LTS); sleep 3
start_capture "$WORK/2.pcapng" -i any
fresh; aria2c "${ARIA_COMMON[@]}" --seed-time=0 --listen-port=6891 --dir="$WORK/leech" "$WORK/http.torrent" \
    >"$WORK/aria-leech.log" 2>&1
stop_capture; kill "$LTS"; wait "$LTS" || true
cp "$WORK/2.pcapng" "$HERE/any_sll_libtorrent_to_aria2.pcapng"
fi

if want 3; then # ---- 3. any (SLL2): Transmission seeder on the non-standard port 51413, libtorrent leecher ------------------
log "3: any/SLL2, transmission seeder (port 51413) -> libtorrent leecher"
mkdir -p "$WORK/tr"
cat > "$WORK/tr/settings.json" <<JSON
{ "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1", "peer-port": 51413,
  "peer-port-random-on-start": false, "port-forwarding-enabled": false, "dht-enabled": false,
  "lpd-enabled": false, "utp-enabled": false, "pex-enabled": false, "encryption": 0,
  "rpc-enabled": true, "rpc-bind-address": "127.0.0.1", "rpc-port": 9091,
  "rpc-authentication-required": false, "rpc-whitelist-enabled": false, "message-level": 1 }
JSON
transmission-daemon -g "$WORK/tr" -f >"$WORK/tr.log" 2>&1 &
TR=$!; PIDS+=($TR)
for _ in $(seq 50); do transmission-remote 127.0.0.1:9091 -l >/dev/null 2>&1 && break; sleep 0.2; done
transmission-remote 127.0.0.1:9091 -a "$WORK/http.torrent" -w "$WORK/seed" >/dev/null
for _ in $(seq 100); do transmission-remote 127.0.0.1:9091 -t 1 -i | grep -q 'State: Seeding' && break; sleep 0.2; done
sleep 1
start_capture "$WORK/3.pcapng" -i any -y LINUX_SLL2
fresh; /usr/bin/python3 "$HERE/lt_client.py" leech "$WORK/http.torrent" "$WORK/leech" 6892 90
stop_capture; kill "$TR"; wait "$TR" || true
cp "$WORK/3.pcapng" "$HERE/any_sll2_transmission_to_libtorrent.pcapng"
fi

if want 4; then # ---- 4. lo, started mid-download: aria2 seeder on 7001 limited to 150 KB/s, libtorrent leecher -------------
log "4: lo, capture started mid-download"
aria_seed 7001 --max-overall-upload-limit=150K; sleep 2
fresh; /usr/bin/python3 "$HERE/lt_client.py" leech "$WORK/http.torrent" "$WORK/leech" 6893 60 >"$WORK/lt4.log" &
LEECH=$!
# start capturing once about half of the data has arrived
for _ in $(seq 300); do
    awk '$1 == "progress" && $2 >= 0.5 {found=1} END {exit !found}' "$WORK/lt4.log" && break; sleep 0.05
done
start_capture "$WORK/4.pcapng" -i lo
wait "$LEECH"
stop_capture; kill "$SEED"; wait "$SEED" || true
cp "$WORK/4.pcapng" "$HERE/lo_middownload.pcapng"

# ---- files derived from 4 --------------------------------------------------------------------------------------
cd "$HERE"
# 5. cut in the middle of a block
SIZE=$(stat -c %s lo_middownload.pcapng)
head -c $((SIZE * 2 / 3 + 1)) lo_middownload.pcapng > lo_middownload_truncated.pcapng
# 6. pcap: little-endian microseconds, nanoseconds, and a big-endian byte-swapped copy; big-endian pcapng
editcap -F pcap lo_middownload.pcapng lo_middownload.pcap
editcap -F nsecpcap lo_middownload.pcapng lo_middownload_ns.pcap
/usr/bin/python3 "$HERE/swap_endian.py" lo_middownload.pcap lo_middownload_be.pcap
/usr/bin/python3 "$HERE/swap_endian.py" lo_middownload.pcapng lo_middownload_be.pcapng
fi
chmod 644 "$HERE"/*.pcap*
log "done:"; ls -l "$HERE"/*.pcap* >&2
