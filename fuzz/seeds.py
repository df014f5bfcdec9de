#!/usr/bin/env python3
"""Writes the starting corpus of every fuzz target into fuzz/corpus/<target>/ (not committed).

Seeds come from the repository (captures/, src/wire/testdata/, captures/sample.torrent),
cut to a few KiB so that each execution stays fast, plus small hand-written inputs for what
those files do not hold (multi-file torrents, magnets, tracker replies and requests).
Idempotent: rewrites the same files every time.
"""
import hashlib
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
    raise TypeError(v)


# --- captures: the first frames of each file, as a valid shorter capture --------------------
def pcap_frames(data, limit):
    """The pcap header and its first records, up to `limit` bytes."""
    le = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    e = "<" if le else ">"
    out, pos = data[:24], 24
    while pos + 16 <= len(data):
        incl = struct.unpack(e + "I", data[pos + 8:pos + 12])[0]
        rec = data[pos:pos + 16 + incl]
        if len(out) + len(rec) > limit:
            break
        out += rec
        pos += 16 + incl
    return out


def pcapng_blocks(data, limit):
    """The pcapng section header, interface blocks and first packet blocks, up to `limit` bytes."""
    e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    out, pos = b"", 0
    while pos + 12 <= len(data):
        blen = struct.unpack(e + "I", data[pos + 4:pos + 8])[0]
        if blen < 12:
            break
        block = data[pos:pos + blen]
        if out and len(out) + len(block) > limit:
            break
        out += block
        pos += blen
    return out


LINKS = [0, 1, 101, 108, 113, 276, 228, 229, 147]  # as in fuzz_targets/link.rs


def frames(data):
    """(link type, frame) of each record of a pcap file."""
    le = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    e = "<" if le else ">"
    link = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack(e + "I", data[pos + 8:pos + 12])[0]
        yield link, data[pos + 16:pos + 16 + incl]
        pos += 16 + incl


def pcapng_frames(data):
    """(link type, frame) of each Enhanced Packet Block of a pcapng file."""
    e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    links, pos = [], 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack(e + "II", data[pos:pos + 8])
        if blen < 12:
            return
        body = data[pos + 8:pos + blen - 4]
        if btype == 1:
            links.append(struct.unpack(e + "H", body[:2])[0])
        elif btype == 6 and len(body) >= 20:
            iface, _, _, cap = struct.unpack(e + "IIII", body[:16])
            if iface < len(links):
                yield links[iface], body[20:20 + cap]
        pos += blen


captures = sorted(f for f in os.listdir(os.path.join(ROOT, "captures")) if f.endswith((".pcap", ".pcapng")))
for name in captures:
    data = read("captures/" + name)
    cut = pcap_frames(data, 6000) if name.endswith(".pcap") else pcapng_blocks(data, 6000)
    put("capture", name, cut)
    put("analyze", name, b"\x01" + cut)
    put("analyze", name + ".noevents", b"\x00" + cut)
    if name.endswith(".pcap"):
        frame_list = frames(data)
    else:
        frame_list = pcapng_frames(data)
    for i, (link, frame) in zip(range(40), frame_list):
        if link in LINKS:
            put("link", "%s.%d" % (name, i), bytes([LINKS.index(link)]) + frame[:200])

# --- the peer wire protocol ------------------------------------------------------------------
seeder = read("src/wire/testdata/libtorrent-2.0.8-seeder.bin")
ours = b"\x13BitTorrent protocol" + bytes([0, 0, 0, 0, 0, 0x10, 0, 5]) + bytes(20) + b"-bt0100-000000000000"
ext = benc({"m": {"ut_metadata": 3, "ut_pex": 4}, "metadata_size": 237, "v": "bt-trace"})
ours += struct.pack(">IB", len(ext) + 2, 20) + b"\x00" + ext
ours += bytes.fromhex("0000000d06000000010000000000000064")  # request piece 1 begin 0 length 100


def chunks(dir_bit, data, size):
    """`data` as pushes of one direction in the target's op encoding (op = k<<1 | dir pushes k*7+1 bytes)."""
    k = (size - 1) // 7
    out = b""
    for i in range(0, len(data), k * 7 + 1):
        out += bytes([(k << 1) | dir_bit]) + data[i:i + k * 7 + 1]
    return out


put("wire_stream", "libtorrent_seeder", b"\x04" + chunks(0, ours, 64) + chunks(1, seeder, 99))
put("wire_stream", "libtorrent_seeder_small_chunks", b"\x00" + chunks(1, seeder, 8) + chunks(0, ours, 8))
put("wire_stream", "mid_stream", b"\x03" + chunks(1, seeder[68:], 50) + chunks(0, ours[68:], 50))
put("wire_stream", "gap", b"\x00" + chunks(1, seeder[:300], 99) + b"\xe1\x40\x00" + chunks(1, seeder[364:], 99))

m = {"ut_metadata": 2, "ut_pex": 1, "lt_donthave": 7}
put("wire_extension", "handshake", b"\x00" + benc({"m": m, "metadata_size": 237, "p": 6881, "reqq": 250, "v": "x", "yourip": b"\x7f\x00\x00\x01"}))
put("wire_extension", "metadata_request", b"\x01" + benc({"msg_type": 0, "piece": 0}))
put("wire_extension", "metadata_data", b"\x01" + benc({"msg_type": 1, "piece": 0, "total_size": 20}) + b"d4:name1:xe" + bytes(9))
put("wire_extension", "metadata_reject", b"\x01" + benc({"msg_type": 2, "piece": 5, "total_size": 237}))
put("wire_extension", "pex", b"\x02" + benc({"added": b"\x7f\x00\x00\x01\x1a\xe1" * 2, "added.f": b"\x02\x10", "added6": bytes(18), "dropped": b"\x0a\x00\x00\x01\x1a\xe1"}))

# --- bencode and metainfo ----------------------------------------------------------------------
sample = read("captures/sample.torrent")
info = benc({"name": "d", "piece length": 16384, "pieces": hashlib.sha1(b"x").digest() * 3,
             "files": [{"length": 20000, "path": ["a", "b.bin"]}, {"length": 0, "path": ["e"]},
                       {"length": 12000, "path": ["c"]}]})
multi = benc({"announce": "udp://127.0.0.1:6969", "announce-list": [["http://127.0.0.1:1/announce"], ["udp://[::1]:2"]], "info": info})
single = benc({"announce": "http://t/a", "info": {"name": "f", "length": 5, "piece length": 262144, "pieces": bytes(20), "private": 1}})
bep47 = benc({"announce": "http://t/a", "info": {"name": "d", "piece length": 16, "pieces": bytes(40),
              "files": [{"length": 3, "path": ["sub", "a.sh"], "attr": "x"}, {"length": 13, "attr": "p"},
                        {"attr": "l", "path": ["s"], "symlink path": ["..", "sub", "a.sh"]},
                        {"length": 5, "path": ["..", "", "a/b"], "attr": "h"}, {"length": 5, "path": ["..", "", "a/b"]}]}}) + b"\n"
put("metainfo", "bep47.torrent", bep47)
# BEP 52: a v2-only torrent (file tree, piece layers) and a hybrid (v1 fields with padding files
# beside the same tree). Roots and layers are of the right lengths, not real hashes.
root = lambda n: hashlib.sha256(n).digest()
tree = {"a.bin": {"": {"length": 40000, "pieces root": root(b"a")}},
        "sub": {"b": {"": {"length": 5, "pieces root": root(b"b")}}, "e": {"": {"length": 0}}}}
layers = {root(b"a"): bytes(96)}
v2_info = {"name": "d", "meta version": 2, "piece length": 16384, "file tree": tree}
put("metainfo", "v2.torrent", benc({"announce": "http://t/a", "info": v2_info, "piece layers": layers}))
put("metainfo", "v2_info", benc(v2_info))
hybrid_info = dict(v2_info, pieces=bytes(20 * 4), files=[
    {"length": 40000, "path": ["a.bin"]}, {"length": 9152, "path": [".pad", "9152"], "attr": "p"},
    {"length": 5, "path": ["sub", "b"]}, {"length": 16379, "path": [".pad", "16379"], "attr": "p"},
    {"length": 0, "path": ["sub", "e"]}])
put("metainfo", "hybrid.torrent", benc({"announce": "http://t/a", "info": hybrid_info, "piece layers": layers}))
# a hybrid whose v1 list names another file than its tree (refused), and one with a length off by one
bad = [dict(f) for f in hybrid_info["files"]]
bad[2]["path"] = ["sub", "c"]
put("metainfo", "hybrid_renamed.torrent", benc({"info": dict(hybrid_info, files=bad), "piece layers": layers}))
bad = [dict(f) for f in hybrid_info["files"]]
bad[2]["length"] = 6
put("metainfo", "hybrid_longer.torrent", benc({"info": dict(hybrid_info, files=bad), "piece layers": layers}))
# a deep file tree (40 directories, near bencode's depth cap of 256 counted in dictionaries),
# beside a wide one with an empty file, an executable and a symlink
deep = {"": {"length": 3, "pieces root": root(b"deep")}}
for i in range(40):
    deep = {"d%d" % i: deep}
deep["wide"] = {"f%02d" % i: {"": {"length": 16384 * (i % 3), "pieces root": root(b"%d" % i)}} for i in range(12)}
deep["wide"]["x"] = {"": {"length": 7, "pieces root": root(b"x"), "attr": "x"}}
deep["wide"]["l"] = {"": {"attr": "l", "symlink path": ["..", "wide", "x"]}}
put("metainfo", "v2_deep.torrent", benc({"info": dict(v2_info, **{"file tree": deep}),
                                         "piece layers": {root(b"%d" % i): bytes(64) for i in (2, 5, 8, 11)}}))
for t in ("bencode", "metainfo"):
    put(t, "sample.torrent", sample)
    put(t, "multi.torrent", multi)
    put(t, "single.torrent", single)
    put(t, "info", info)
put("bencode", "nested", b"d1:ald1:bi-42eee1:c0:e")

# --- magnet links ------------------------------------------------------------------------------
ih = hashlib.sha1(info).hexdigest()
put("magnet", "hex", ("magnet:?xt=urn:btih:%s&dn=d&tr=http%%3A%%2F%%2F127.0.0.1%%3A1%%2Fannounce&x.pe=127.0.0.1:6881&x.pe=[::1]:6881" % ih).encode())
put("magnet", "base32", b"magnet:?xt=urn:btih:CNRFWD37PFAUU3ZOTNJAMYSPWJQ5CKXD&tr=udp://[::1]:2&tr=udp://127.0.0.1:3")

# --- trackers ---------------------------------------------------------------------------------
ann = benc({"interval": 1800, "min interval": 60, "complete": 1, "incomplete": 2, "peers": b"\x7f\x00\x00\x01\x1a\xe1", "peers6": bytes(18)})
ann_dicts = benc({"interval": 1800, "peers": [{"ip": "127.0.0.1", "port": 6881, "peer id": bytes(20)}, {"ip": "::1", "port": 1}]})
scrape = benc({"files": {bytes(20): {"complete": 1, "downloaded": 3, "incomplete": 2}}})
failure = benc({"failure reason": "not whitelisted", "retry in": 60})
http = lambda body, extra=b"": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body
put("tracker_http", "announce", http(ann))
put("tracker_http", "announce_dicts", http(ann_dicts))
put("tracker_http", "scrape", http(scrape))
put("tracker_http", "failure", http(failure))
put("tracker_http", "chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n" + ann[:5] + b"\r\n%x\r\n" % (len(ann) - 5) + ann[5:] + b"\r\n0\r\nT: 1\r\n\r\n")
put("tracker_http", "to_eof", b"HTTP/1.0 200 OK\r\n\r\n" + ann)
put("tracker_http", "body_only", ann)
q = "info_hash=%12%34%56%78%9A%BC%DE%F1%23%45%67%89%AB%CD%EF%12%34%56%78%9A&peer_id=-bt0100-000000000000&port=6881&uploaded=0&downloaded=0&left=1024&compact=1&event=started&numwant=50&key=ab&ip=127.0.0.1"
req = ("GET /announce?%s HTTP/1.1\r\nHost: 127.0.0.1:6969\r\nUser-Agent: bt-trace/0.1\r\nAccept-Encoding: identity\r\n\r\n" % q).encode()
put("tracker_http", "request", req)
put("tracker_request", "announce", req)
put("tracker_request", "scrape", b"GET /scrape?info_hash=%12%34%56%78%9A%BC%DE%F1%23%45%67%89%AB%CD%EF%12%34%56%78%9A&info_hash=aaaaaaaaaaaaaaaaaaaa HTTP/1.0\r\n\r\n")
put("tracker_request", "query", q.encode())

cid = 0x41727101980
put("tracker_udp", "connect_req", struct.pack(">QII", cid, 0, 7))
put("tracker_udp", "connect_resp", struct.pack(">IIQ", 0, 7, 0x1122334455667788))
put("tracker_udp", "announce_req", struct.pack(">QII20s20sQQQIIIiH", 0x1122334455667788, 1, 8, bytes(20), b"-bt0100-000000000000", 0, 1024, 0, 2, 0, 99, -1, 6881) + b"\x02\x0c/announce?x")
put("tracker_udp", "announce_resp", struct.pack(">IIIII", 1, 8, 1800, 1, 2) + b"\x7f\x00\x00\x01\x1a\xe1")
put("tracker_udp", "scrape_req", struct.pack(">QII", 0x1122334455667788, 2, 9) + bytes(40))
put("tracker_udp", "scrape_resp", struct.pack(">II", 2, 9) + struct.pack(">III", 1, 3, 2))
put("tracker_udp", "error", struct.pack(">II", 3, 9) + b"not whitelisted")

# --- TCP reassembly (config, then op flags step length) -----------------------------------------
syn, ack, fin, psh = 0x02, 0x10, 0x01, 0x08
put("reassembly", "handshake_data_fin",
    b"\xff\xff\xff\xff\x10\x00\x04" + bytes([0x14, syn, 0, 0, 0]) + bytes([0x15, syn | ack, 0, 0, 0])
    + bytes([0x14, psh | ack, 1, 0, 10]) + bytes([0x15, psh | ack, 1, 0, 10]) + bytes([0x14, ack, 80, 0, 3])
    + bytes([0x10, psh | ack, 200, 0, 5]) + bytes([0x14, fin | ack, 24, 0, 0]) + bytes([0x15, fin | ack, 80, 0, 0]))

# --- uTP, DHT and LSD (the UDP payloads of the uTP capture) --------------------------------------
udp = [f for link, f in pcapng_frames(read("captures/lo_utp_dht_libtorrent.pcapng")) if link == 1 and len(f) > 42 and f[23] == 17]
payloads = [(struct.unpack(">H", f[34:36])[0], f[42:]) for f in udp]
framed, n = b"", 0
for sport, p in payloads:
    if p[:1] == b"d":
        put("dht_lsd", "krpc.%d" % n, p)
    elif p[:9] == b"BT-SEARCH":
        put("dht_lsd", "lsd.%d" % n, p)
    else:
        put("utp", "packet.%d" % n, p[:300])
        if len(framed) < 6000:
            framed += bytes([sport == 6881]) + struct.pack(">H", min(len(p), 300)) + p[:300]
    n += 1
put("utp", "connection", framed)

print("fuzz corpus seeds written to", OUT, file=sys.stderr)
