"""Shared libtorrent settings for the test seeder and leecher (run with Debian's /usr/bin/python3).

Everything stays on 127.0.0.1, in plaintext, over TCP: no DHT, LSD, UPnP, NAT-PMP, uTP or encryption.
"""

import libtorrent as lt


def make_session(port, upload_limit=0, download_limit=0, ip="127.0.0.1"):
    """A session listening on ip:port (0 = any free port; ip a loopback address), its outgoing
    connections from ip too."""
    settings = {
        "listen_interfaces": "%s:%d" % (ip, port),
        "outgoing_interfaces": ip,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # uTP would be a second transport the peers under test may not speak.
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        # Every peer in a loopback swarm has the address 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        "in_enc_policy": lt.enc_policy.disabled,
        "out_enc_policy": lt.enc_policy.disabled,
        # Queuing would leave all but a few torrents of a session idle (not announced): switch it off.
        "active_downloads": -1,
        "active_seeds": -1,
        "active_checking": 8,
        "active_limit": -1,
        "dont_count_slow_torrents": False,
        "upload_rate_limit": upload_limit,
        "download_rate_limit": download_limit,
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.tracker_notification
        | lt.alert.category_t.port_mapping_notification,
    }
    return lt.session(settings)


def add_torrent(ses, torrent_path, save_path):
    """Adds a torrent unmanaged (no queuing) and started; returns the handle."""
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent_path)
    params.save_path = save_path
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(params)


def add_magnet(ses, uri, save_path):
    """Adds a magnet link (its x.pe peers are dialed) unmanaged and started; returns the handle."""
    params = lt.parse_magnet_uri(uri)
    params.save_path = save_path
    params.flags &= ~lt.torrent_flags.auto_managed
    params.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(params)


def listen_port(ses):
    return ses.listen_port()
