#!/usr/bin/python3
"""libtorrent (Debian's python3-libtorrent) with MSE/PE encryption forced, on 127.0.0.1, TCP only (no uTP, DHT,
LSD): the clients behind captures/lo_mse_*.pcapng (see make_mse.sh).

    lt_mse.py pair TORRENT SEED_DIR LEECH_DIR LEVEL
        a seeder session on port 6881 and a leecher session on 6882 in this process; the leecher is given
        the seeder's address, downloads, prints "done PIECES BYTES" and closes a second later.
    lt_mse.py seed TORRENT SEED_DIR PORT LEVEL TRACKER_URL TIMEOUT_S
        a seeder announcing to TRACKER_URL until killed or TIMEOUT_S.

LEVEL is the allowed_enc_level: plaintext (MSE/PE, then the plaintext method), rc4, or both. Both policies are
`forced` (only MSE/PE handshakes, in and out) and prefer_rc4 is off, so with `both` the plaintext method is
chosen whenever the other side offers it.
"""

import sys
import time

import libtorrent as lt


def session(port, level):
    return lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "out_enc_policy": int(lt.enc_policy.forced), "in_enc_policy": int(lt.enc_policy.forced),
        "allowed_enc_level": int(getattr(lt.enc_level, level)), "prefer_rc4": False,
        "announce_ip": "127.0.0.1",
    })


def add(ses, torrent, save, trackers=()):
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = save
    p.trackers = list(trackers)
    p.flags &= ~lt.torrent_flags.auto_managed
    p.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(p)


def wait_seeding(h, secs, what):
    deadline = time.time() + secs
    while not h.status().is_seeding:
        if time.time() > deadline:
            sys.exit("lt_mse.py: %s timed out" % what)
        time.sleep(0.05)


mode = sys.argv[1]
if mode == "pair":
    torrent, seed_dir, leech_dir, level = sys.argv[2:6]
    seeder, leecher = session(6881, level), session(6882, level)
    hs = add(seeder, torrent, seed_dir)
    wait_seeding(hs, 30, "checking the seed")
    hl = add(leecher, torrent, leech_dir)
    hl.connect_peer(("127.0.0.1", 6881))
    wait_seeding(hl, 60, "the download")
    st = hl.status()
    print("done", st.num_pieces, st.total_wanted_done, flush=True)
    time.sleep(1.0)
    leecher.remove_torrent(hl)
    time.sleep(0.5)
elif mode == "seed":
    torrent, seed_dir, port, level, tracker, timeout = sys.argv[2:8]
    ses = session(int(port), level)
    add(ses, torrent, seed_dir, [tracker])
    time.sleep(float(timeout))
else:
    sys.exit("usage: lt_mse.py pair|seed ...")
