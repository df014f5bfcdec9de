#!/usr/bin/python3
"""Two libtorrent sessions on 127.0.0.1 talking uTP only (TCP off), with the DHT (bootstrapped to each
other) and Local Service Discovery on: the swarm behind captures/lo_utp_dht_libtorrent.pcapng.

    /usr/bin/python3 lt_utp_swarm.py WORKDIR TORRENT SEED_DIR

Session S seeds TORRENT from SEED_DIR on port 6881; session L (port 6882) learns S from the DHT
(get_peers / announce_peer) and is also given S directly, then downloads over uTP into WORKDIR/leech.
Prints "done PIECES BYTES" when L has the whole torrent, and waits a few seconds for the DHT to settle.
"""

import os
import sys
import time

import libtorrent as lt

work, torrent, seed_dir = sys.argv[1:4]


def session(port, other):
    return lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
        "enable_dht": True,
        "dht_bootstrap_nodes": "127.0.0.1:%d" % other,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_prefer_verified_node_ids": False,
        "dht_enforce_node_id": False,
        "dht_ignore_dark_internet": False,
        "enable_lsd": True,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "in_enc_policy": lt.enc_policy.disabled,
        "out_enc_policy": lt.enc_policy.disabled,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
    })


seed = session(6881, 6882)
leech = session(6882, 6881)
ti = lt.torrent_info(torrent)
for ses, path in ((seed, seed_dir), (leech, os.path.join(work, "leech"))):
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = path
    p.flags &= ~lt.torrent_flags.auto_managed
    p.flags &= ~lt.torrent_flags.paused
    ses.add_torrent(p)
time.sleep(3)  # DHT bootstrap, announces
hs = leech.get_torrents()[0]
deadline = time.time() + 60
connected = False
while time.time() < deadline:
    st = hs.status()
    if st.is_seeding:
        break
    if not connected and time.time() > deadline - 50:
        hs.connect_peer(("127.0.0.1", 6881))
        connected = True
    time.sleep(0.2)
st = hs.status()
print("done", st.num_pieces, st.total_wanted_done, flush=True)
time.sleep(5)
