#!/usr/bin/python3
"""A libtorrent leecher for the benchmark and the harness (Debian's python3-libtorrent).

    /usr/bin/python3 lt_leech.py TORRENT SAVE_DIR [--port P] [--peer IP:PORT ...] [--timeout S]

TORRENT is a .torrent file or a magnet link (whose metadata is fetched first, from its x.pe peers).
Downloads TORRENT into SAVE_DIR (peers from the torrent's tracker, plus any --peer), then prints one line
on stdout and exits 0:
    done BYTES SECONDS MIB_PER_S
The clock starts when the torrent is added and stops when every piece is verified. Progress goes to
stderr. Exits 1 on timeout or error, and also when stdin reaches end of file if --lifeline is given.
"""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lt_common  # noqa: E402
import libtorrent as lt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_dir")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--lifeline", action="store_true", help="exit when stdin closes")
    args = ap.parse_args()

    if args.lifeline:
        def watch():
            sys.stdin.read()
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()

    ses = lt_common.make_session(args.port)
    os.makedirs(args.save_dir, exist_ok=True)
    start = time.monotonic()
    if args.torrent.startswith("magnet:"):
        h = lt_common.add_magnet(ses, args.torrent, args.save_dir)
    else:
        h = lt_common.add_torrent(ses, args.torrent, args.save_dir)
    for peer in args.peer:
        ip, _, port = peer.rpartition(":")
        h.connect_peer((ip, int(port)))

    last = 0.0
    while True:
        for a in ses.pop_alerts():
            if isinstance(a, (lt.file_error_alert, lt.torrent_error_alert)):
                print("error:", a.message(), file=sys.stderr, flush=True)
                sys.exit(1)
        st = h.status()
        now = time.monotonic()
        if st.is_finished or st.is_seeding:
            break
        if now - start > args.timeout:
            print("timeout after %.1f s at %.1f%%" % (now - start, st.progress * 100), file=sys.stderr)
            sys.exit(1)
        if now - last >= 1.0:
            last = now
            print(
                "%5.1f%% %7.1f MiB/s %d peers" % (st.progress * 100, st.download_rate / 1048576, st.num_peers),
                file=sys.stderr,
                flush=True,
            )
        time.sleep(0.01)
    secs = time.monotonic() - start
    total = h.torrent_file().total_size()
    print("done %d %.3f %.1f" % (total, secs, total / 1048576 / secs), flush=True)
    os._exit(0)  # skip the session's graceful shutdown (tracker "stopped" etc.)


if __name__ == "__main__":
    main()
