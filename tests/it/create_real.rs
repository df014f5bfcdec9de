//! `bt-trace create` against real programs: the info hash equals transmission-show's, `bt-trace
//! info`'s and mktorrent's (same data, same piece length), and real clients seed the torrents it
//! makes to a bt-trace download (libtorrent a directory, aria2c a single file) through opentracker.

use crate::common;

use common::*;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `bt-trace create` and returns the torrent (info hash from transmission-show), after
/// checking that bt-trace printed that same hash, and that `bt-trace info` reads it back.
fn create(content: &Path, out: &Path, extra: &[&str]) -> Torrent {
    let mut args: Vec<&std::ffi::OsStr> = vec!["create".as_ref(), content.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend(["-o".as_ref(), out.as_os_str()]);
    let run = bt_trace(&args, TIMEOUT);
    run.assert_ok();
    let torrent = Torrent::load(out);
    assert_eq!(
        run.stdout,
        format!("Info Hash: {}\n", torrent.info_hash),
        "create printed another info hash than transmission-show's"
    );
    let info = bt_trace(["info".as_ref(), out.as_os_str()], TIMEOUT);
    info.assert_ok();
    assert!(
        info.stdout_lines()
            .contains(&format!("Info Hash: {}", torrent.info_hash).as_str()),
        "bt-trace info: {}",
        info.describe()
    );
    torrent
}

#[test]
fn created_torrents_match_other_tools_and_real_clients_seed_them() {
    skip_unless_installed!(SWARM);
    let tracker = Tracker::shared();
    let src = temp_dir("create-src");
    let tree = src.path().join("album");
    // mktorrent's order is not the walk order nor a per-component sort: `a.b` before `a/x`
    make_tree(
        &tree,
        &[
            ("b.bin", 700_001),
            ("a/x.bin", 1_000_000),
            ("a.b", 333_333),
            ("A/upper.bin", 250_000),
            (".hidden", 12_345),
            ("a/y/deep.bin", 900_000),
        ],
        40,
    );
    make_data(&tree.join("empty.txt"), 0, 0);
    let single = src.path().join("single.bin");
    make_data(&single, 3_000_000 + 77, 50);

    let url = tracker.http_url();
    let dir_torrent = create(
        &tree,
        &src.path().join("album.torrent"),
        &["-a", &url, "-a", &tracker.udp_url(), "--no-date"],
    );
    assert!(dir_torrent.multi_file);
    assert_eq!(dir_torrent.files.len(), 7);
    assert_eq!(dir_torrent.announce.as_deref(), Some(url.as_str()));
    assert_eq!(
        dir_torrent.tiers,
        [vec![url.clone()], vec![tracker.udp_url()]]
    );
    let show = transmission_show(&dir_torrent.path);
    assert_eq!(show.tiers, dir_torrent.tiers);
    // the default piece length for ~3.2 MB is 16 KiB
    assert_eq!(dir_torrent.piece_length, 16 * 1024);

    // with mktorrent's piece length, mktorrent makes the same info dictionary
    let ours_256k = create(
        &tree,
        &src.path().join("album-256k.torrent"),
        &["-a", &url, "--piece-length", "256K", "--no-date"],
    );
    let theirs = mktorrent(&tree, &src.path().join("album-mk.torrent"), 18, &[&[&url]]);
    assert_eq!(
        ours_256k.info_hash, theirs.info_hash,
        "mktorrent's info hash"
    );
    let names = |t: &Torrent| -> Vec<_> { t.files.iter().map(|f| f.path.clone()).collect() };
    assert_eq!(names(&ours_256k), names(&theirs), "file order");

    let single_torrent = create(
        &single,
        &src.path().join("single.torrent"),
        &["-a", &url, "--comment", "made by a test"],
    );
    assert!(!single_torrent.multi_file);
    assert_eq!(single_torrent.total_length, 3_000_077);

    // libtorrent seeds the directory, aria2c the single file; bt-trace downloads both
    tracker.allow(&[&dir_torrent.info_hash, &single_torrent.info_hash]);
    let lt = LtSeeder::start(None);
    lt.add(&dir_torrent, src.path());
    lt.wait_seeding(&dir_torrent);
    let logs = temp_dir("create-logs");
    let _aria2 = Aria2::seed(&single_torrent, src.path(), logs.path(), &[]);
    tracker.wait_seeding(&dir_torrent.info_hash, 1);
    tracker.wait_seeding(&single_torrent.info_hash, 1);

    let out = temp_dir("create-out");
    let got_dir = out.path().join("album");
    bt_trace(
        [
            "download".as_ref(),
            "-q".as_ref(),
            "-o".as_ref(),
            got_dir.as_os_str(),
            dir_torrent.path.as_os_str(),
        ],
        TIMEOUT,
    )
    .assert_ok();
    assert_same_files(&dir_torrent, src.path(), &DownloadedAt::Dir(got_dir));

    let got_file = out.path().join("single.bin");
    bt_trace(
        [
            "download".as_ref(),
            "-q".as_ref(),
            "-o".as_ref(),
            got_file.as_os_str(),
            single_torrent.path.as_os_str(),
        ],
        TIMEOUT,
    )
    .assert_ok();
    assert_same_files(&single_torrent, src.path(), &DownloadedAt::File(got_file));
}

#[test]
fn create_refuses_bad_input_cleanly() {
    let src = temp_dir("create-bad");
    let empty = src.path().join("empty");
    make_data(&empty.join("zero"), 0, 0);
    let data = src.path().join("data.bin");
    make_data(&data, 100_000, 1);
    let missing = src.path().join("missing");
    let out = src.path().join("x.torrent");
    let cases: [&[&str]; 3] = [&[], &[], &["--piece-length", "1000"]];
    for (content, extra) in [&empty, &missing, &data].into_iter().zip(cases) {
        let mut args: Vec<&std::ffi::OsStr> = vec!["create".as_ref(), content.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.extend(["-o".as_ref(), out.as_os_str()]);
        bt_trace(&args, TIMEOUT).assert_clean_failure();
        assert!(!out.exists(), "no torrent is written on failure");
    }
}
