#!/usr/bin/env bash
# Makes lo_utp_dht_libtorrent.pcapng (see README.md): two libtorrent sessions (lt_utp_swarm.py) on 127.0.0.1 in a
# private network namespace, uTP only, DHT bootstrapped to each other, LSD on. OUT=FILE and TORRENT=FILE write
# the capture and the torrent elsewhere (tests/it/analyze_utp.rs does, for a live capture). Needs root, dumpcap, mktorrent, Debian's /usr/bin/python3 with python3-libtorrent.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=captures/netns.sh
source "$HERE/netns.sh"
# LSD multicasts: let lo carry multicast so the BT-SEARCH datagrams are sent (and captured).
ip link set lo multicast on
ip route add 239.0.0.0/8 dev lo 2>/dev/null || true
workdir btutp
mkdir -p "$WORK/seed" "$WORK/leech"
/usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(20240601).randbytes(1 << 18))' "$WORK/seed/utp.bin"
# 256 KiB in 32 KiB pieces: 8 pieces of 2 blocks. Deterministic (-d: no date), checked in as sample_utp.torrent.
TORRENT=${TORRENT:-$HERE/sample_utp.torrent}
rm -f "$WORK/utp.torrent"
mktorrent -d -l 15 -o "$WORK/utp.torrent" "$WORK/seed/utp.bin" >/dev/null
cmp -s "$WORK/utp.torrent" "$TORRENT" 2>/dev/null || cp "$WORK/utp.torrent" "$TORRENT"
OUT=${OUT:-$HERE/lo_utp_dht_libtorrent.pcapng}
rm -f "$OUT"
dumpcap -q -B 256 -i lo -f udp -w "$OUT" 2>"$WORK/dumpcap.err" &
CAP=$!
PIDS+=($CAP)
sleep 1
/usr/bin/python3 "$HERE/lt_utp_swarm.py" "$WORK" "$TORRENT" "$WORK/seed"
sleep 0.5
kill -INT $CAP; wait $CAP || true
cmp "$WORK/seed/utp.bin" "$WORK/leech/utp.bin" && echo "make_utp.sh: download complete and identical" >&2
capinfos -c -s "$OUT" >&2
