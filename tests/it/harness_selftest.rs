//! Proves the test harness against the real programs: opentracker (HTTP and UDP), the three seeders
//! (aria2c, transmission-daemon, libtorrent) on one ~2 MB torrent, and an aria2c leecher that finds
//! them through the tracker and downloads the file.

use crate::common;

use common::*;
use std::time::Duration;

#[test]
fn real_swarm_serves_an_aria2_leecher() {
    skip_unless_installed!(SWARM);
    let tracker = Tracker::shared();
    let swarm = Swarm::start(tracker);

    let src = temp_dir("selftest-src");
    // 2 MB that is not a multiple of the 256 KiB piece: the last piece is short.
    let content = src.path().join("selftest.bin");
    make_data(&content, 2_000_000 + 12_345, 1);
    let torrent = mktorrent(
        &content,
        &src.path().join("selftest.torrent"),
        18,
        &[&[&tracker.http_url()]],
    );
    torrent.verify_source(src.path());
    assert_eq!(torrent.piece_count(), 8);
    assert_eq!(torrent.piece_len(7), 2_012_345 - 7 * 262_144);

    let seeded = swarm.seed(&[(&torrent, src.path(), &Client::ALL)]);
    let ports: Vec<u16> = Client::ALL.iter().map(|c| seeded[0].port(*c)).collect();

    // The UDP side of the tracker hands out the same three seeders.
    let mut udp_ports: Vec<u16> = tracker
        .udp_peers(&torrent.info_hash)
        .iter()
        .map(|p| p.port())
        .collect();
    udp_ports.sort_unstable();
    let mut want = ports.clone();
    want.sort_unstable();
    assert_eq!(udp_ports, want, "UDP announce peers");

    let out = temp_dir("selftest-out");
    aria2_download(
        &torrent.path,
        out.path(),
        out.path(),
        Duration::from_secs(120),
    );
    assert_eq!(
        sha1_file(&out.path().join("selftest.bin")),
        sha1_file(&content),
        "downloaded file differs"
    );
}
