#!/usr/bin/env bash
# Makes the MSE/PE captures lo_mse_*.pcapng (see README.md): libtorrent with encryption forced (lt_mse.py) on
# 127.0.0.1 in a private network namespace, TCP only, dumpcap on its `lo`:
#   1. lo_mse_plain_libtorrent.pcapng   libtorrent -> libtorrent, allowed_enc_level plaintext: MSE/PE selects
#                                       the plaintext method (the initiator's handshake stays inside the RC4 IA)
#   2. lo_mse_rc4_libtorrent.pcapng     libtorrent -> libtorrent, allowed_enc_level rc4: all RC4
#   3. lo_mse_plain_aria2_to_libtorrent.pcapng
#                                       aria2c leecher (MSE first, plain allowed) -> libtorrent seeder (forced,
#                                       plaintext or RC4 allowed) via opentracker
# `ONLY="1 3" make_mse.sh` remakes some of them. The torrent, sample_mse.torrent (256 KiB of
# random.Random(20240601), 32 KiB pieces: 8 pieces, 16 blocks; no tracker), is made again deterministically.
# Needs root, dumpcap, capinfos, mktorrent, aria2c, opentracker, Debian's /usr/bin/python3 with python3-libtorrent.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=captures/netns.sh
source "$HERE/netns.sh"
workdir btmse
log() { echo "make_mse.sh: $*" >&2; }
want() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

mkdir -p "$WORK/seed" "$WORK/tracker"
/usr/bin/python3 -c '
import random, sys
open(sys.argv[1], "wb").write(random.Random(20240601).randbytes(1 << 18))' "$WORK/seed/mse.bin"
TORRENT=$HERE/sample_mse.torrent
mktorrent -d -l 15 -o "$WORK/mse.torrent" "$WORK/seed/mse.bin" >/dev/null
cmp -s "$WORK/mse.torrent" "$TORRENT" 2>/dev/null || cp "$WORK/mse.torrent" "$TORRENT"

start_capture() { # FILE
    rm -f "$1"
    dumpcap -q -B 256 -i lo -f tcp -w "$1" 2>"$WORK/dumpcap.err" &
    CAP=$!
    for _ in $(seq 50); do grep -q Capturing "$WORK/dumpcap.err" 2>/dev/null && break; sleep 0.1; done
    sleep 0.3
}
stop_capture() { # NAME
    sleep 0.5
    kill -INT "$CAP"; wait "$CAP" || true
    cmp "$WORK/seed/mse.bin" "$WORK/leech/mse.bin" || { log "$1: the download is not complete"; exit 1; }
    chmod 644 "$WORK/$1"
    cp "$WORK/$1" "$HERE/$1"
    capinfos -c -s "$HERE/$1" >&2
}
fresh() { rm -rf "$WORK/leech"; mkdir -p "$WORK/leech"; }

pair() { # NAME LEVEL
    log "$1: libtorrent -> libtorrent, forced, allowed_enc_level $2"
    fresh
    start_capture "$WORK/$1"
    /usr/bin/python3 "$HERE/lt_mse.py" pair "$TORRENT" "$WORK/seed" "$WORK/leech" "$2" >&2
    stop_capture "$1"
}
want 1 && pair lo_mse_plain_libtorrent.pcapng plaintext
want 2 && pair lo_mse_rc4_libtorrent.pcapng rc4

if want 3; then
    NAME=lo_mse_plain_aria2_to_libtorrent.pcapng
    log "$NAME: aria2c -> libtorrent (forced, plaintext or RC4) via opentracker"
    HASH=$(/usr/bin/python3 -c 'import libtorrent as lt, sys; print(lt.torrent_info(sys.argv[1]).info_hash())' "$TORRENT")
    echo "$HASH" > "$WORK/tracker/whitelist.txt"
    chmod 755 "$WORK/tracker"; chmod 644 "$WORK/tracker/whitelist.txt"
    opentracker -i 127.0.0.1 -p 6969 -d "$WORK/tracker" -w /whitelist.txt -A 127.0.0.1 >/dev/null 2>&1 &
    PIDS+=($!)
    /usr/bin/python3 "$HERE/lt_mse.py" seed "$TORRENT" "$WORK/seed" 6881 both http://127.0.0.1:6969/announce 120 &
    LTS=$!; PIDS+=($LTS)
    sleep 3 # checked and announced
    fresh
    start_capture "$WORK/$NAME"
    aria2c --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --bt-require-crypto=false \
        --bt-min-crypto-level=plain --file-allocation=none --disable-ipv6=true --summary-interval=0 \
        --console-log-level=warn --bt-tracker=http://127.0.0.1:6969/announce --seed-time=0 \
        --listen-port=6891 --dir="$WORK/leech" "$TORRENT" >&2
    stop_capture "$NAME"
    kill "$LTS"; wait "$LTS" || true
fi
