//! `bt-trace seed` against real leechers on 127.0.0.1: aria2c (peers from opentracker),
//! libtorrent (`tests/support/lt_leech.py`, given the seeder with `--peer`, and through a
//! magnet link whose only peer is the seeder's `x.pe`), and transmission-cli (which never dials
//! a 127.x peer, so the seeder dials it with `--peer`). Torrents: a single file with a short
//! last piece, and a multi-file torrent whose files end mid-piece. Every download is compared
//! with the source by SHA-1. Also: many connections at once, missing data, Ctrl-C.
//!
//! The harness (`tests/common`, `docs/testing.md`) starts and stops the programs.

use crate::common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Bounds that only stop a hung run.
const NET: Duration = Duration::from_secs(120);

/// One torrent with a bt-trace seeder.
struct Case {
    torrent: Torrent,
    /// The directory that holds the content (`src/<name>`).
    src: PathBuf,
    port: u16,
    seeder: ChildGuard,
}

struct Fixture {
    _dir: TempDir,
    logs: PathBuf,
    single: Case,
    multi: Case,
}

/// Starts `bt-trace seed` for `torrent` with its data below `src`; returns once it listens.
fn start_seeder(torrent: &Torrent, src: &Path, logs: &Path, extra: &[&str]) -> (u16, ChildGuard) {
    let port = free_port();
    let mut args: Vec<String> = vec![
        "seed".into(),
        torrent.path.display().to_string(),
        "--data".into(),
        torrent.content_path(src).display().to_string(),
        "--port".into(),
        port.to_string(),
        "-q".into(),
        "-v".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let log = logs.join(format!("seed-{}-{port}.log", &torrent.info_hash[..8]));
    let child = bt_trace_spawn(&args, &log);
    child.wait_port(port);
    (port, child)
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tracker = Tracker::shared();
        let dir = temp_dir("seed-fixture");
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");

        // single file, 32 KiB pieces, a short last piece
        let single_src = dir.path().join("single");
        make_data(
            &single_src.join("seed-single.bin"),
            3 * 1024 * 1024 + 1234,
            900,
        );
        let single = mktorrent(
            &single_src.join("seed-single.bin"),
            &dir.path().join("single.torrent"),
            15,
            &[&[&tracker.http_url()]],
        );
        // several files of odd sizes (pieces span files), 64 KiB pieces
        let multi_src = dir.path().join("multi");
        make_tree(
            &multi_src.join("seed-multi"),
            &[
                ("a.bin", 700_001),
                ("sub/b.bin", 12_345),
                ("sub/deeper/c.bin", 1_500_000),
                ("d.bin", 1),
            ],
            910,
        );
        let multi = mktorrent(
            &multi_src.join("seed-multi"),
            &dir.path().join("multi.torrent"),
            16,
            &[&[&tracker.udp_url()]],
        );
        tracker.allow(&[&single.info_hash, &multi.info_hash]);
        let mut cases = Vec::new();
        for (torrent, src) in [(single, single_src), (multi, multi_src)] {
            torrent.verify_source(&src);
            let (port, seeder) = start_seeder(&torrent, &src, &logs, &[]);
            // the seeder announced `started` with left=0
            tracker.wait_seeding(&torrent.info_hash, 1);
            cases.push(Case {
                torrent,
                src,
                port,
                seeder,
            });
        }
        let multi = cases.pop().expect("multi");
        let single = cases.pop().expect("single");
        Fixture {
            _dir: dir,
            logs,
            single,
            multi,
        }
    })
}

/// Where a leecher that downloads into `dir` put the torrent.
fn downloaded_at(t: &Torrent, dir: &Path) -> DownloadedAt {
    if t.multi_file {
        DownloadedAt::Dir(dir.join(&t.name))
    } else {
        DownloadedAt::File(dir.join(&t.name))
    }
}

#[test]
fn aria2_downloads_from_the_seeder_through_the_tracker() {
    skip_unless_installed!(&[Program::Opentracker, Program::Mktorrent, Program::Aria2c]);
    let f = fixture();
    // the multi-file torrent (UDP tracker) is not covered yet: aria2 never connected (open)
    let c = &f.single;
    let dir = temp_dir("seed-aria2");
    aria2_download(&c.torrent.path, dir.path(), &f.logs, NET);
    assert_same_files(&c.torrent, &c.src, &downloaded_at(&c.torrent, dir.path()));
    c.seeder.assert_running();
}

/// Runs lt_leech.py on `what` (a .torrent path or a magnet link) into `dir`.
fn lt_leech(what: &str, dir: &Path, peers: &[u16]) {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(support("lt_leech.py"))
        .arg(what)
        .arg(dir)
        .args(["--timeout", "100"]);
    for p in peers {
        cmd.arg("--peer").arg(format!("127.0.0.1:{p}"));
    }
    let out = cmd.output().expect("run lt_leech.py");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("done "),
        "lt_leech.py {what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 20)
    );
}

#[test]
fn libtorrent_downloads_from_the_seeder() {
    skip_unless_installed!(&[
        Program::Opentracker,
        Program::Mktorrent,
        Program::Libtorrent
    ]);
    let f = fixture();
    for c in [&f.single, &f.multi] {
        let dir = temp_dir("seed-lt");
        lt_leech(&c.torrent.path.display().to_string(), dir.path(), &[c.port]);
        assert_same_files(&c.torrent, &c.src, &downloaded_at(&c.torrent, dir.path()));
        c.seeder.assert_running();
    }
}

#[test]
fn libtorrent_fetches_the_metadata_through_a_magnet_link() {
    skip_unless_installed!(&[
        Program::Opentracker,
        Program::Mktorrent,
        Program::Libtorrent
    ]);
    let f = fixture();
    for c in [&f.single, &f.multi] {
        let dir = temp_dir("seed-magnet");
        // no tracker: the seeder (x.pe) is the only source of the info dictionary and the data
        let link = format!(
            "magnet:?xt=urn:btih:{}&x.pe=127.0.0.1:{}",
            c.torrent.info_hash, c.port
        );
        lt_leech(&link, dir.path(), &[]);
        assert_same_files(&c.torrent, &c.src, &downloaded_at(&c.torrent, dir.path()));
    }
}

#[test]
fn transmission_downloads_from_a_seeder_that_dials_it() {
    skip_unless_installed!(&[
        Program::Opentracker,
        Program::Mktorrent,
        Program::TransmissionCli
    ]);
    let f = fixture();
    let c = &f.single;
    let dir = temp_dir("seed-transmission");
    let tr_port = free_port();
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("-g")
        .arg(dir.path().join("config"))
        .arg("-w")
        .arg(dir.path().join("dl"))
        .args(["-p", &tr_port.to_string(), "-et", "-M", "-D", "-U"])
        .arg(&c.torrent.path);
    std::fs::create_dir_all(dir.path().join("dl")).expect("dl dir");
    let tr = ChildGuard::spawn(
        "transmission-cli",
        cmd,
        &f.logs.join(format!("transmission-cli-{tr_port}.log")),
    );
    tr.wait_port(tr_port);
    // a second seeder of the same torrent that dials transmission
    let (_, seeder) = start_seeder(
        &c.torrent,
        &c.src,
        &f.logs,
        &["--peer", &format!("127.0.0.1:{tr_port}")],
    );
    let got = dir.path().join("dl").join(&c.torrent.name);
    let want = sha1_file(&c.torrent.content_path(&c.src));
    let deadline = Instant::now() + NET;
    // transmission writes the file in place as pieces arrive: done once it matches
    while !(got.is_file() && sha1_file(&got) == want) {
        assert!(
            Instant::now() < deadline,
            "transmission-cli did not get the file from the seeder (its log: {}); seeder log:\n{}",
            tr.log_path().display(),
            seeder.log_tail() + "\nfixture seeder:\n" + &c.seeder.log_tail()
        );
        tr.assert_running();
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_same_files(&c.torrent, &c.src, &DownloadedAt::File(got));
}

/// Our handshake for `info_hash` (fast extension and extension protocol bits set).
fn handshake(info_hash: [u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut h = vec![19];
    h.extend_from_slice(b"BitTorrent protocol");
    h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    h.extend_from_slice(&info_hash);
    h.extend_from_slice(peer_id);
    h
}

#[test]
fn sixty_peers_are_served_at_once() {
    skip_unless_installed!(&[Program::Opentracker, Program::Mktorrent]);
    let f = fixture();
    let c = &f.multi;
    let dir = temp_dir("seed-many");
    let (port, seeder) = start_seeder(&c.torrent, &c.src, dir.path(), &["--max-peers", "100"]);
    let ih = c.torrent.info_hash_bytes();
    let mut conns = Vec::new();
    for i in 0..60u32 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the seeder");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut id = *b"-XX0000-manypeers000";
        id[16..].copy_from_slice(&i.to_be_bytes());
        s.write_all(&handshake(ih, &id)).expect("send handshake");
        conns.push(s);
    }
    // every one of them, all still open, gets the seeder's handshake and `have all`
    for (i, s) in conns.iter_mut().enumerate() {
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs)
            .unwrap_or_else(|e| panic!("connection {i}: no handshake ({e})"));
        assert_eq!(&hs[28..48], &ih, "connection {i}: info hash");
        // the extension handshake comes first, then `have all` (id 0x0e)
        let mut seen_have_all = false;
        for _ in 0..4 {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).expect("message length");
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).expect("message body");
            if body.first() == Some(&0x0e) {
                seen_have_all = true;
                break;
            }
        }
        assert!(seen_have_all, "connection {i}: no `have all` from a seed");
    }
    seeder.assert_running();
}

#[test]
fn missing_data_is_a_clean_error() {
    skip_unless_installed!(&[Program::Opentracker, Program::Mktorrent]);
    let f = fixture();
    let c = &f.multi;
    let dir = temp_dir("seed-missing");
    let r = bt_trace(
        [
            "seed".as_ref(),
            c.torrent.path.as_os_str(),
            "--data".as_ref(),
            dir.path().join("nothing-here").as_os_str(),
            "--port".as_ref(),
            free_port().to_string().as_ref(),
        ],
        NET,
    );
    r.assert_clean_failure();
    assert!(
        r.stderr.contains("the data to seed is missing"),
        "{}",
        r.describe()
    );
}

#[test]
fn a_corrupt_piece_is_not_served_and_sigint_ends_the_seeder() {
    skip_unless_installed!(&[Program::Opentracker, Program::Mktorrent]);
    let f = fixture();
    let c = &f.single;
    let dir = temp_dir("seed-corrupt");
    // a copy of the data with piece 3 damaged
    let data = dir.path().join(&c.torrent.name);
    std::fs::copy(c.torrent.content_path(&c.src), &data).expect("copy data");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&data)
            .expect("open copy");
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(3 * c.torrent.piece_length + 10))
            .expect("seek");
        file.write_all(b"damage").expect("damage");
    }
    let port = free_port();
    let log = dir.path().join("seed.log");
    let seeder = bt_trace_spawn(
        [
            "seed".as_ref(),
            c.torrent.path.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "--port".as_ref(),
            port.to_string().as_ref(),
            "-q".as_ref(),
        ],
        &log,
    );
    seeder.wait_port(port);
    let n = c.torrent.piece_count();
    assert!(
        seeder
            .log_text()
            .contains(&format!("seeding: {} of {n} pieces verified", n - 1)),
        "{}",
        seeder.log_tail()
    );
    // the seeder announces everything but piece 3 in its bitfield
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(&handshake(
        c.torrent.info_hash_bytes(),
        b"-XX0000-corruptcheck",
    ))
    .expect("handshake");
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).expect("handshake back");
    let bitfield = loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("message length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).expect("message body");
        if body.first() == Some(&5) {
            break body[1..].to_vec();
        }
    };
    for i in 0..n {
        let has = bitfield[i / 8] & (0x80 >> (i % 8)) != 0;
        assert_eq!(has, i != 3, "piece {i} in the seeder's bitfield");
    }
    drop(s);
    // Ctrl-C ends seeding: exit 0 with the report line
    let status = Command::new("kill")
        .args(["-s", "INT", &seeder.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = seeder
        .wait_exit(Duration::from_secs(20))
        .expect("seeder exits");
    assert_eq!(exit.code(), Some(0), "{}", seeder.log_tail());
}
