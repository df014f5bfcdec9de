#!/usr/bin/env bash
# The README's main job until `bt-trace demo` exists: a real download on loopback.
#
# Starts opentracker and an aria2c seeder on free ports of 127.0.0.1, makes a deterministic
# 64 MiB torrent with mktorrent, then runs `bt-trace info`, `peers`, `handshake` and `download`
# against them and checks the SHA-1 of the result. Everything it starts is stopped on exit.
# Needs: cargo, opentracker, aria2c, mktorrent, python3 (Debian: opentracker aria2 mktorrent).
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-64}
for tool in opentracker aria2c mktorrent python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (see .ci/run)" >&2; exit 1; }
done

cargo build --release --quiet
BT="$PWD/target/release/bt-trace"
work=$(mktemp -d /tmp/bt-trace-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "error: nothing listens on port $1" >&2
  return 1
}

echo "== making a ${SIZE_MB} MiB torrent in $work"
mkdir -p "$work/seed" "$work/tracker"
python3 - "$work/seed/demo.bin" "$SIZE_MB" <<'EOF'
import random, sys
r = random.Random(42)
with open(sys.argv[1], "wb") as f:
    for _ in range(int(sys.argv[2])):
        f.write(r.randbytes(1 << 20))
EOF
tport=$(free_port)
mktorrent -l 18 -a "http://127.0.0.1:$tport/announce" -o "$work/demo.torrent" "$work/seed/demo.bin" >/dev/null
hash=$("$BT" info "$work/demo.torrent" | sed -n 's/^Info Hash: //p')

echo "== starting opentracker on 127.0.0.1:$tport (whitelist: $hash)"
echo "$hash" >"$work/tracker/whitelist.txt"
chmod -R a+rX "$work/tracker"
opentracker -i 127.0.0.1 -p "$tport" -P "$tport" -d "$work/tracker" -w whitelist.txt -A 127.0.0.1 \
  >"$work/opentracker.log" 2>&1 &
pids+=($!)
wait_port "$tport"

sport=$(free_port)
echo "== starting an aria2c seeder on 127.0.0.1:$sport"
aria2c --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --bt-require-crypto=false \
  --bt-min-crypto-level=plain --file-allocation=none --disable-ipv6=true --seed-ratio=0.0 \
  --listen-port="$sport" --dir="$work/seed" --check-integrity=true --bt-seed-unverified=true \
  --bt-tracker-interval=1 -q "$work/demo.torrent" >"$work/aria2.log" 2>&1 &
pids+=($!)
wait_port "$sport"
# wait until the seeder has announced itself
for _ in $(seq 100); do
  "$BT" peers "$work/demo.torrent" --port 1 2>/dev/null | grep -q ":$sport$" && break
  sleep 0.2
done

echo "== bt-trace info"
"$BT" info "$work/demo.torrent" | head -5
echo "== bt-trace peers"
"$BT" peers "$work/demo.torrent" --port 1
echo "== bt-trace handshake 127.0.0.1:$sport"
"$BT" handshake "$work/demo.torrent" "127.0.0.1:$sport"
echo "== bt-trace download"
"$BT" download -o "$work/out/demo.bin" "$work/demo.torrent"
if cmp -s "$work/out/demo.bin" "$work/seed/demo.bin"; then
  echo "OK: the downloaded file is identical to the seeder's ($(sha1sum <"$work/out/demo.bin" | cut -c1-40))"
else
  echo "FAILED: the downloaded file differs" >&2
  exit 1
fi
