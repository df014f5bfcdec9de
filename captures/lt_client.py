#!/usr/bin/python3
"""Seeds or leeches one torrent with libtorrent (Debian's python3-libtorrent) on 127.0.0.1, plaintext only.

usage: lt_client.py seed|leech TORRENT SAVE_DIR LISTEN_PORT [TIMEOUT_S]
A leecher prints its progress, and exits (closing its connections and announcing `stopped`) a second after the download completes.
"""
import sys
import time

import libtorrent as lt

mode, torrent, save, port = sys.argv[1:5]
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 120.0
disabled = int(lt.enc_policy.disabled)
s = lt.session({
    "listen_interfaces": f"127.0.0.1:{port}",
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True,
    "in_enc_policy": disabled, "out_enc_policy": disabled,
    "announce_ip": "127.0.0.1",
})
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
deadline = time.time() + timeout
last = -1.0
while time.time() < deadline:
    st = h.status()
    if mode == "leech" and st.progress - last >= 0.05:
        last = st.progress
        print(f"progress {st.progress:.3f}", flush=True)
    if mode == "leech" and st.is_seeding:
        print(f"libtorrent: complete ({st.total_wanted} bytes)", flush=True)
        time.sleep(1.0)
        break
    time.sleep(0.1)
else:
    if mode == "leech":
        print("libtorrent: timed out", file=sys.stderr)
        sys.exit(1)
s.remove_torrent(h)
time.sleep(0.5)
del s
