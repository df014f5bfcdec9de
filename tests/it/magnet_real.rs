//! The magnet commands against real BEP 9 seeders on 127.0.0.1: libtorrent (Debian's
//! python3-libtorrent) and aria2c, each seeding a single-file torrent (short last piece) and a
//! multi-file torrent whose info dictionary is larger than one 16 KiB metadata piece. Both
//! announce to opentracker (HTTP and UDP).
//!
//! The magnet links are built from the info hash alone. `x.pe=127.0.0.1:PORT` (and no `tr`)
//! points at one seeder, so each seeder is tested on its own; links with only `tr` go through the
//! tracker. Checks: `magnet_handshake` prints the real peer id and its ut_metadata id;
//! `magnet_info` prints exactly what `info` prints for the .torrent file; `magnet_download` and
//! `magnet_download_piece` produce the right bytes; no peer is a clean error.
//!
//! The harness (`tests/common`, `docs/testing.md`) starts and stops the programs.

use crate::common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// Bounds that only stop a hung run (the course allows 10 s for a few-MB magnet download).
const NET: Duration = Duration::from_secs(90);

/// One torrent of the fixture, announced over HTTP and over UDP (same info hash).
struct Case {
    http: Torrent,
    udp: Torrent,
    /// The directory that holds the content.
    src: PathBuf,
    aria2: u16,
}

struct Fixture {
    lt: LtSeeder,
    _aria2: Vec<Aria2>,
    _dir: TempDir,
    single: Case,
    multi: Case,
}

impl Fixture {
    fn cases(&self) -> [&Case; 2] {
        [&self.single, &self.multi]
    }

    /// Each seeder of `c` with its port.
    fn seeders(&self, c: &Case) -> [(Client, u16); 2] {
        [(Client::Libtorrent, self.lt.port), (Client::Aria2, c.aria2)]
    }
}

/// The programs [`fixture`] starts.
const NEEDS: &[Program] = &[
    Program::Opentracker,
    Program::Aria2c,
    Program::Libtorrent,
    Program::Mktorrent,
];

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tracker = Tracker::shared();
        let lt = LtSeeder::start(None);
        let dir = temp_dir("magnet-fixture");
        let make = |label: &str, content: &Path, piece_log2: u32| {
            let http = mktorrent(
                content,
                &dir.path().join(format!("{label}.torrent")),
                piece_log2,
                &[&[&tracker.http_url()]],
            );
            let udp = mktorrent(
                content,
                &dir.path().join(format!("{label}.udp.torrent")),
                piece_log2,
                &[&[&tracker.udp_url()]],
            );
            assert_eq!(http.info_hash, udp.info_hash);
            (http, udp)
        };

        // single file, 32 KiB pieces, a short last piece
        let single_src = dir.path().join("single");
        let file = single_src.join("magnet-single.bin");
        make_data(&file, 3 * 1024 * 1024 + 1234, 500);
        let (single_http, single_udp) = make("single", &file, 15);

        // 400 small files with long names: the info dictionary spans two metadata pieces
        let multi_src = dir.path().join("multi");
        let names: Vec<(String, u64)> = (0..400u64)
            .map(|i| {
                let name = format!(
                    "directory-{:02}/file-{i:04}-with-a-rather-long-name-to-grow-the-metadata.bin",
                    i % 7
                );
                (name, 1000 + (i * 37) % 5000)
            })
            .collect();
        let files: Vec<(&str, u64)> = names.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        let top = multi_src.join("magnet-multi");
        make_tree(&top, &files, 600);
        let (multi_http, multi_udp) = make("multi", &top, 16);
        let raw = std::fs::read(&multi_http.path).unwrap();
        let parsed = bt_trace::metainfo::Torrent::parse(&raw).unwrap();
        assert!(
            parsed.info.raw_bytes().len() > 16 * 1024,
            "2+ metadata pieces"
        );

        tracker.allow(&[&single_http.info_hash, &multi_http.info_hash]);
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let mut aria2 = Vec::new();
        let mut cases = Vec::new();
        for (http, udp, src) in [
            (single_http, single_udp, single_src),
            (multi_http, multi_udp, multi_src),
        ] {
            http.verify_source(&src);
            lt.add(&http, &src);
            let a = Aria2::seed(&http, &src, &logs, &[]);
            cases.push(Case {
                http,
                udp,
                src,
                aria2: a.port,
            });
            aria2.push(a);
        }
        for c in &cases {
            lt.wait_seeding(&c.http);
            tracker.wait_seeding(&c.http.info_hash, 2);
        }
        let multi = cases.pop().unwrap();
        let single = cases.pop().unwrap();
        Fixture {
            lt,
            _aria2: aria2,
            _dir: dir,
            single,
            multi,
        }
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `magnet:?xt=urn:btih:<hash>&dn=<name>`, then `tr` and `x.pe` if given.
fn magnet(t: &Torrent, tr: Option<&str>, x_pe: Option<u16>) -> String {
    let mut link = format!("magnet:?xt=urn:btih:{}&dn={}", t.info_hash, t.name);
    if let Some(tr) = tr {
        link += &format!("&tr={}", percent_encode(tr));
    }
    if let Some(port) = x_pe {
        link += &format!("&x.pe=127.0.0.1:{port}");
    }
    link
}

fn run(args: &[&str]) -> Run {
    bt_trace(args, NET)
}

fn info_of(t: &Torrent) -> String {
    run(&["info", t.path.to_str().unwrap()])
        .assert_ok()
        .stdout
        .clone()
}

/// `Peer ID: <40 hex>` then `Peer Metadata Extension ID: <1..255>`, nothing else.
fn check_handshake_output(stdout: &str, client: Client) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout:?}");
    let id = lines[0].strip_prefix("Peer ID: ").expect(lines[0]);
    assert_eq!(id.len(), 40);
    assert_eq!(id, id.to_lowercase());
    let id = hex::decode(id).unwrap();
    assert!(
        id.starts_with(client.peer_id_prefix()),
        "{client:?}: peer id {:?}",
        String::from_utf8_lossy(&id)
    );
    let ext = lines[1]
        .strip_prefix("Peer Metadata Extension ID: ")
        .expect(lines[1]);
    let ext: u32 = ext.parse().unwrap();
    assert!((1..=255).contains(&ext), "{ext}");
    assert!(stdout.ends_with('\n'));
}

#[test]
fn magnet_handshake_prints_the_real_peer_ids() {
    skip_unless_installed!(NEEDS);
    let f = fixture();
    for c in f.cases() {
        for (client, port) in f.seeders(c) {
            let r = run(&["magnet_handshake", &magnet(&c.http, None, Some(port))]);
            check_handshake_output(&r.assert_ok().stdout, client);
        }
    }
}

#[test]
fn magnet_info_prints_what_info_prints() {
    skip_unless_installed!(NEEDS);
    let f = fixture();
    for c in f.cases() {
        let want = info_of(&c.http);
        let tr = c.http.announce.as_deref();
        for (client, port) in f.seeders(c) {
            let r = run(&["magnet_info", &magnet(&c.http, tr, Some(port))]);
            assert_eq!(r.assert_ok().stdout, want, "{client:?} {}", c.http.name);
        }
    }
}

/// Downloads with `magnet_download` from `port` alone and compares every file with the source.
fn check_download(c: &Case, link: &str) {
    let dir = temp_dir("magnet-download");
    let t = &c.http;
    let (out, at) = if t.multi_file {
        let d = dir.path().join("out-dir");
        (d.clone(), DownloadedAt::Dir(d))
    } else {
        let p = dir.path().join("out.bin");
        (p.clone(), DownloadedAt::File(p))
    };
    run(&["magnet_download", "-o", out.to_str().unwrap(), link, "-q"]).assert_ok();
    assert_same_files(t, &c.src, &at);
}

#[test]
fn magnet_download_from_each_seeder_alone() {
    skip_unless_installed!(NEEDS);
    let f = fixture();
    for c in f.cases() {
        for (_, port) in f.seeders(c) {
            check_download(c, &magnet(&c.http, None, Some(port)));
        }
    }
}

#[test]
fn magnet_download_piece_from_each_seeder_alone() {
    skip_unless_installed!(NEEDS);
    let f = fixture();
    for c in f.cases() {
        let t = &c.http;
        let n = t.piece_count();
        for (client, port) in f.seeders(c) {
            let dir = temp_dir("magnet-piece");
            let link = magnet(t, None, Some(port));
            // the first piece, one in the middle (spans files in the multi-file torrent) and the
            // short last one
            for index in [0, n / 2, n - 1] {
                let out = dir.path().join(format!("piece-{index}"));
                let (o, i) = (out.to_str().unwrap(), index.to_string());
                let r = run(&["magnet_download_piece", "-o", o, &link, &i, "-q"]);
                r.assert_ok();
                assert_eq!(
                    std::fs::read(&out).unwrap(),
                    t.piece_bytes(&c.src, index),
                    "{client:?} {} piece {index}",
                    t.name
                );
            }
            // past the end: a clear error, once the metadata says how many pieces there are
            let out = dir.path().join("nope");
            let r = run(&[
                "magnet_download_piece",
                "-o",
                out.to_str().unwrap(),
                &link,
                &n.to_string(),
            ]);
            r.assert_clean_failure();
            assert!(r.stderr.contains("out of range"), "{}", r.describe());
        }
    }
}

#[test]
fn magnet_through_the_http_tracker() {
    skip_unless_installed!(NEEDS);
    let f = fixture();
    for c in f.cases() {
        let link = magnet(&c.http, c.http.announce.as_deref(), None);
        let r = run(&["magnet_info", &link]);
        assert_eq!(r.assert_ok().stdout, info_of(&c.http));
        check_download(c, &link);
    }
}

#[test]
fn magnet_through_the_udp_tracker() {
    skip_unless_installed!(NEEDS);
    let f = fixture();
    let c = &f.single;
    let link = magnet(&c.udp, c.udp.announce.as_deref(), None);
    let r = run(&["magnet_info", &link]);
    assert_eq!(r.assert_ok().stdout, info_of(&c.udp));
    let dir = temp_dir("magnet-udp");
    let out = dir.path().join("last");
    let last = c.udp.piece_count() - 1;
    let (o, i) = (out.to_str().unwrap(), last.to_string());
    run(&["magnet_download_piece", "-o", o, &link, &i, "-q"]).assert_ok();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        c.udp.piece_bytes(&c.src, last)
    );
}

#[test]
fn no_peer_at_all_is_a_clean_error() {
    skip_unless_installed!(NEEDS);
    let f = fixture();
    let port = free_port(); // nothing listens there
    let r = run(&["magnet_info", &magnet(&f.single.http, None, Some(port))]);
    r.assert_clean_failure();
    assert!(r.stdout.is_empty());
    assert!(
        r.stderr.contains("no peer could give us the metadata"),
        "{}",
        r.describe()
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.describe());
    // a link with neither tracker nor peer says how to give one
    let r = run(&["magnet_info", &magnet(&f.single.http, None, None)]);
    r.assert_clean_failure();
    assert!(r.stderr.contains("--peer"), "{}", r.describe());
}
