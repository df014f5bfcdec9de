#!/usr/bin/python3
"""Reference implementation of bt-trace's CodeCrafters commands, used only to validate tests/cli_real.rs.

    BT_TRACE_BIN=tests/support/ref_cli.py cargo test --test cli_real -- --include-ignored

It implements the same contract as the real binary (stdout formats, exit codes, `-o` semantics) on top
of Debian's python3-libtorrent, so the integration tests and the harness can be checked against the real
programs before bt-trace's own commands exist. It is not part of bt-trace.

    info FILE                       -> Tracker URL / Length / Info Hash / Piece Length / Piece Hashes
    peers FILE                      -> ip:port lines (HTTP or UDP tracker, announce-list tiers in order)
    handshake FILE IP:PORT          -> Peer ID: <40 hex>
    download_piece -o OUT FILE N    -> the bytes of piece N in OUT
    download -o OUT FILE            -> single file: OUT is the file; multi-file: OUT/<path in torrent>
"""

import os
import random
import socket
import struct
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lt_common  # noqa: E402
import libtorrent as lt  # noqa: E402

PEER_ID = b"-RF0001-" + bytes(random.randrange(256) for _ in range(12))


def fail(msg):
    print("error: " + msg, file=sys.stderr)
    sys.exit(1)


def load(path):
    try:
        return lt.torrent_info(path)
    except Exception as e:
        fail("cannot read torrent %s: %s" % (path, e))


def trackers(ti):
    tiers = {}
    for t in ti.trackers():
        tiers.setdefault(t.tier, []).append(t.url)
    return [tiers[k] for k in sorted(tiers)]


def cmd_info(path):
    ti = load(path)
    urls = trackers(ti)
    print("Tracker URL: %s" % (urls[0][0] if urls else ""))
    print("Length: %d" % ti.total_size())
    print("Info Hash: %s" % ti.info_hash())
    print("Piece Length: %d" % ti.piece_length())
    print("Piece Hashes:")
    for i in range(ti.num_pieces()):
        print(ti.hash_for_piece(i).hex())
    fs = ti.files()
    if fs.num_files() > 1 or ti.name() != fs.file_path(0):
        print("Files:")
        for i in range(fs.num_files()):
            print("%d %s" % (fs.file_size(i), fs.file_path(i)))


def http_announce(url, ih, left):
    q = urllib.parse.urlencode(
        {"peer_id": PEER_ID, "port": 6881, "uploaded": 0, "downloaded": 0, "left": left, "compact": 1}
    )
    full = url + ("&" if "?" in url else "?") + "info_hash=" + urllib.parse.quote(ih, safe="") + "&" + q
    with urllib.request.urlopen(full, timeout=10) as r:
        body = r.read()
    d = lt.bdecode(body)
    if d is None:
        raise RuntimeError("tracker reply is not bencode")
    if b"failure reason" in d:
        raise RuntimeError("tracker failure: %s" % d[b"failure reason"].decode(errors="replace"))
    peers = d.get(b"peers", b"")
    out = []
    if isinstance(peers, bytes):
        for i in range(0, len(peers) - 5, 6):
            out.append("%s:%d" % (socket.inet_ntoa(peers[i : i + 4]), struct.unpack(">H", peers[i + 4 : i + 6])[0]))
    else:
        for p in peers:
            out.append("%s:%d" % (p[b"ip"].decode(), p[b"port"]))
    return out


def udp_announce(url, ih, left):
    u = urllib.parse.urlparse(url)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((u.hostname, u.port))

    def exchange(req):
        for attempt in range(4):
            s.settimeout(1 + attempt)
            s.send(req)
            try:
                resp = s.recv(65536)
            except socket.timeout:
                continue
            if resp[4:8] == req[12:16]:
                return resp
        raise RuntimeError("no answer from %s" % url)

    tid = random.randrange(1 << 32)
    resp = exchange(struct.pack(">QII", 0x41727101980, 0, tid))
    conn = resp[8:16]
    tid = random.randrange(1 << 32)
    req = conn + struct.pack(">II", 1, tid) + ih + PEER_ID + struct.pack(">QQQIIIiH", 0, left, 0, 0, 0, 1, -1, 6881)
    resp = exchange(req)
    action = struct.unpack(">I", resp[0:4])[0]
    if action == 3:
        raise RuntimeError("tracker error: %s" % resp[8:].decode(errors="replace"))
    out = []
    for i in range(20, len(resp) - 5, 6):
        out.append("%s:%d" % (socket.inet_ntoa(resp[i : i + 4]), struct.unpack(">H", resp[i + 4 : i + 6])[0]))
    return out


def cmd_peers(path):
    ti = load(path)
    ih = bytes.fromhex(str(ti.info_hash()))
    errors = []
    for tier in trackers(ti):
        for url in tier:
            try:
                peers = (udp_announce if url.startswith("udp:") else http_announce)(url, ih, ti.total_size())
            except Exception as e:
                errors.append("%s: %s" % (url, e))
                continue
            for p in peers:
                if not p.endswith(":6881"):
                    print(p)
            return
    fail("no tracker answered: " + "; ".join(errors))


def cmd_handshake(path, addr):
    ti = load(path)
    host, _, port = addr.rpartition(":")
    try:
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"\x13BitTorrent protocol" + bytes(8) + bytes.fromhex(str(ti.info_hash())) + PEER_ID)
        buf = b""
        while len(buf) < 68:
            chunk = s.recv(68 - len(buf))
            if not chunk:
                fail("peer closed the connection after %d bytes" % len(buf))
            buf += chunk
    except OSError as e:
        fail("handshake with %s: %s" % (addr, e))
    print("Peer ID: %s" % buf[48:68].hex())


def session_for(ti, save_path, renames=None):
    ses = lt_common.make_session(0)
    params = lt.add_torrent_params()
    if renames:
        for i, name in renames.items():
            ti.rename_file(i, name)
    params.ti = ti
    params.save_path = save_path
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    return ses, ses.add_torrent(params)


def cmd_download_piece(out, path, index):
    import tempfile

    ti = load(path)
    index = int(index)
    if not 0 <= index < ti.num_pieces():
        fail("piece %d out of range (torrent has %d)" % (index, ti.num_pieces()))
    with tempfile.TemporaryDirectory() as tmp:
        ses, h = session_for(ti, tmp)
        h.prioritize_pieces([1 if i == index else 0 for i in range(ti.num_pieces())])
        deadline = time.monotonic() + 60
        while not h.have_piece(index):
            if time.monotonic() > deadline:
                fail("timeout")
            time.sleep(0.02)
        h.read_piece(index)
        while True:
            for a in ses.pop_alerts():
                if isinstance(a, lt.read_piece_alert) and a.piece == index:
                    with open(out, "wb") as f:
                        f.write(bytes(a.buffer))
                    os._exit(0)
            time.sleep(0.01)


def cmd_download(out, path):
    ti = load(path)
    fs = ti.files()
    if fs.num_files() == 1 and fs.file_path(0) == ti.name():
        save, renames = os.path.dirname(os.path.abspath(out)), {0: os.path.basename(out)}
    else:
        os.makedirs(out, exist_ok=True)
        save = out
        renames = {i: fs.file_path(i).split(os.sep, 1)[1] for i in range(fs.num_files())}
    ses, h = session_for(ti, save, renames)
    deadline = time.monotonic() + 300
    while not (h.status().is_finished or h.status().is_seeding):
        if time.monotonic() > deadline:
            fail("timeout")
        print("%.0f%%" % (h.status().progress * 100), file=sys.stderr)
        time.sleep(0.05)
    h.flush_cache()
    time.sleep(0.2)
    os._exit(0)


def main(argv):
    args = argv[1:]
    out = None
    if "-o" in args:
        i = args.index("-o")
        out = args[i + 1]
        del args[i : i + 2]
    if not args:
        fail("usage: ref_cli.py COMMAND ...")
    cmd, rest = args[0], args[1:]
    if cmd == "info" and len(rest) == 1:
        cmd_info(rest[0])
    elif cmd == "peers" and len(rest) == 1:
        cmd_peers(rest[0])
    elif cmd == "handshake" and len(rest) == 2:
        cmd_handshake(rest[0], rest[1])
    elif cmd == "download_piece" and out and len(rest) == 2:
        cmd_download_piece(out, rest[0], rest[1])
    elif cmd == "download" and out and len(rest) == 1:
        cmd_download(out, rest[0])
    else:
        fail("usage: bad arguments %r" % argv[1:])


if __name__ == "__main__":
    main(sys.argv)
