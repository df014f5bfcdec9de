#!/usr/bin/python3
"""A libtorrent seeder for the tests and the benchmark (Debian's python3-libtorrent).

    /usr/bin/python3 lt_seed.py --port P [--ip 127.0.0.X] [--upload-limit BYTES_PER_S] [TORRENT=SAVE_DIR ...]

SAVE_DIR is the directory that holds the torrent's content (the file or the top directory named like the
torrent). More torrents can be added while it runs by writing `add TORRENT SAVE_DIR` lines to stdin.
It prints, one a line on stdout:
    listening PORT          once the listen socket is up
    seeding INFOHASH        when a torrent has been checked and is seeding
    error TEXT              on a libtorrent error (a torrent that fails its check, a bad file)
It exits when stdin reaches end of file: the test that started it holds the pipe, so the seeder never
outlives it.
"""

import argparse
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lt_common  # noqa: E402
import libtorrent as lt  # noqa: E402


def say(*words):
    print(*words, flush=True)


def stdin_reader(commands):
    for line in sys.stdin:
        commands.put(line.rstrip("\n"))
    commands.put(None)  # end of file: the test is gone


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ip", default="127.0.0.1", help="loopback address to listen and dial from")
    ap.add_argument("--upload-limit", type=int, default=0)
    ap.add_argument("torrents", nargs="*", help="TORRENT=SAVE_DIR")
    args = ap.parse_args()

    ses = lt_common.make_session(args.port, upload_limit=args.upload_limit, ip=args.ip)
    commands = queue.Queue()
    threading.Thread(target=stdin_reader, args=(commands,), daemon=True).start()

    handles = {}  # info hash -> (handle, announced seeding?)

    def add(torrent, save):
        try:
            h = lt_common.add_torrent(ses, torrent, save)
        except Exception as e:  # a bad torrent must not kill the shared seeder
            say("error", "add", torrent, e)
            return
        handles[str(h.info_hash())] = [h, False]

    for spec in args.torrents:
        torrent, _, save = spec.partition("=")
        add(torrent, save)

    listening = False
    while True:
        try:
            cmd = commands.get(timeout=0.05)
        except queue.Empty:
            cmd = ""
        if cmd is None:
            os._exit(0)
        if cmd.startswith("add "):
            parts = cmd.split(" ", 2)
            if len(parts) == 3:
                add(parts[1], parts[2])
            else:
                say("error", "bad command", cmd)

        for a in ses.pop_alerts():
            if isinstance(a, lt.listen_succeeded_alert) and not listening:
                listening = True
                say("listening", ses.listen_port())
            elif isinstance(a, (lt.listen_failed_alert, lt.file_error_alert, lt.torrent_error_alert)):
                say("error", a.message())
            elif isinstance(a, lt.hash_failed_alert):
                say("error", a.message())
        if not listening and ses.is_listening() and ses.listen_port() != 0:
            listening = True
            say("listening", ses.listen_port())

        for ih, entry in handles.items():
            h, announced = entry
            if not announced and h.status().is_seeding:
                entry[1] = True
                # Announce right away rather than at the next interval.
                h.force_reannounce()
                say("seeding", ih)


if __name__ == "__main__":
    main()
