#!/usr/bin/python3
"""Rewrites a little-endian pcap or pcapng file in big-endian byte order (the packet bytes are unchanged).

usage: swap_endian.py IN OUT

pcap: the file header and every record header are swapped.
pcapng: Section Header, Interface Description and Enhanced Packet blocks are rewritten big-endian. Options are
kept only where their layout is known here (strings, and if_tsresol); other blocks (Interface Statistics, ...)
are dropped. That is all a dumpcap capture holds that matters for reading its packets.
"""
import struct
import sys


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def options(body, keep):
    """Parses LE options, returns BE options for the codes in `keep` (string or 1-byte values)."""
    out, at = b"", 0
    while at + 4 <= len(body):
        code, ln = struct.unpack_from("<HH", body, at)
        if code == 0:
            break
        val = body[at + 4:at + 4 + ln]
        if code in keep:
            out += struct.pack(">HH", code, ln) + pad4(val)
        at += 4 + ln + (-ln % 4)
    return out + struct.pack(">HH", 0, 0) if out else b""


def block(btype, body):
    n = 12 + len(body)
    return struct.pack(">II", btype, n) + body + struct.pack(">I", n)


def pcapng(data):
    out, at = b"", 0
    while at + 12 <= len(data):
        btype, n = struct.unpack_from("<II", data, at)
        body = data[at + 8:at + n - 4]
        if btype == 0x0A0D0D0A:
            _magic, major, minor, seclen = struct.unpack_from("<IHHq", body, 0)
            out += block(btype, struct.pack(">IHHq", 0x1A2B3C4D, major, minor, -1) + options(body[16:], {1, 2, 3, 4}))
        elif btype == 1:
            link, _res, snap = struct.unpack_from("<HHI", body, 0)
            out += block(btype, struct.pack(">HHI", link, 0, snap) + options(body[8:], {2, 3, 9, 12}))
        elif btype == 6:
            iface, hi, lo, cap, orig = struct.unpack_from("<IIIII", body, 0)
            out += block(btype, struct.pack(">IIIII", iface, hi, lo, cap, orig) + pad4(body[20:20 + cap]))
        at += n
    return out


def pcap(data):
    magic, vmaj, vmin, zone, sig, snap, link = struct.unpack_from("<IHHiIII", data, 0)
    out, at = [struct.pack(">IHHiIII", magic, vmaj, vmin, zone, sig, snap, link)], 24
    while at + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, at)
        out.append(struct.pack(">IIII", sec, frac, incl, orig) + data[at + 16:at + 16 + incl])
        at += 16 + incl
    return b"".join(out)


data = open(sys.argv[1], "rb").read()
is_ng = data[:4] == b"\x0a\x0d\x0d\x0a"
open(sys.argv[2], "wb").write(pcapng(data) if is_ng else pcap(data))
