//! The CodeCrafters-format commands of the bt-trace binary against real programs on 127.0.0.1:
//! opentracker (HTTP and UDP), and aria2c, transmission-daemon and libtorrent as seeders.
//!
//! One swarm is started per run of this test binary (see [`fixture`]) and serves every test:
//! - `solo-<client>`: a single-file torrent with a short last piece that only that client seeds;
//! - `single` (exact multiple of the piece length), `short` (short last piece, 64 KiB pieces) and
//!   `multi` (nested directories, pieces spanning files), seeded by all three clients.
//!
//! Each torrent exists twice, with an HTTP and with a UDP announce URL (same info hash).
//!
//! Tests of a command are `#[ignore]`d until bt-trace implements it (then delete the attribute). To
//! check the tests themselves, run them against the reference implementation:
//! `BT_TRACE_BIN=tests/support/ref_cli.py cargo test --test it cli_real:: -- --include-ignored`.

use crate::common;

use common::*;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Bounds for one command, far above what a correct client needs (the course allows 10 s for two
/// `download_piece` runs and 20 s for a `download`): they only stop a hung run.
const QUICK: Duration = Duration::from_secs(30);
const NET: Duration = Duration::from_secs(90);
const DOWNLOAD: Duration = Duration::from_secs(180);

/// One torrent of the fixture, announced over HTTP and over UDP.
struct Case {
    http: Torrent,
    udp: Torrent,
    /// The directory that holds the content (`src/<name>`).
    src: PathBuf,
    seeded: Seeded,
    clients: &'static [Client],
}

struct Fixture {
    swarm: Swarm,
    /// A second daemon for the solo-Transmission torrents, so the all-three torrents' traffic never
    /// meets the solo tests (see [`solo_guard`]).
    solo_transmission: Transmission,
    _dir: TempDir,
    cases: HashMap<&'static str, Case>,
}

impl Fixture {
    fn case(&self, label: &str) -> &Case {
        self.cases
            .get(label)
            .unwrap_or_else(|| panic!("no case {label}"))
    }

    fn single(&self) -> &Case {
        self.case("single")
    }

    fn short(&self) -> &Case {
        self.case("short")
    }

    fn multi(&self) -> &Case {
        self.case("multi")
    }

    /// The torrent only `client` seeds (for handshake, download_piece and peers).
    fn solo(&self, client: Client) -> &Case {
        self.case(match client {
            Client::Aria2 => "solo-aria2",
            Client::Transmission => "solo-transmission",
            Client::Libtorrent => "solo-libtorrent",
        })
    }

    /// The torrent only `client` seeds, for a full download. Transmission 3.00 closes every later
    /// connection from an address once a peer at that address has completed the torrent ("both
    /// seeds"), and all test clients are 127.0.0.1; so each Transmission download gets its own torrent.
    fn solo_download(&self, client: Client, udp: bool) -> &Case {
        match (client, udp) {
            (Client::Transmission, false) => self.case("solo-transmission-dl-http"),
            (Client::Transmission, true) => self.case("solo-transmission-dl-udp"),
            _ => self.solo(client),
        }
    }
}

/// The swarm every test uses, built once on first use.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let started = Instant::now();
        let tracker = Tracker::shared();
        let swarm = Swarm::start(tracker);
        let solo_transmission = Transmission::start(None);
        let dir = temp_dir("cli-fixture");
        // Writes the content for `label` below `dir/label/` and makes its HTTP and UDP torrents.
        let make = |label: &str, piece_log2: u32, content: &dyn Fn(&Path) -> PathBuf| {
            let src = dir.path().join(label);
            fs::create_dir_all(&src).expect("mkdir");
            let path = content(&src);
            let http = mktorrent(
                &path,
                &dir.path().join(format!("{label}.torrent")),
                piece_log2,
                &[&[&tracker.http_url()]],
            );
            let udp = mktorrent(
                &path,
                &dir.path().join(format!("{label}.udp.torrent")),
                piece_log2,
                &[&[&tracker.udp_url()]],
            );
            assert_eq!(
                http.info_hash, udp.info_hash,
                "announce URL changed the info hash"
            );
            http.verify_source(&src);
            (http, udp, src)
        };
        let single_file = |name: String, len: u64, seed: u64| {
            move |src: &Path| {
                let p = src.join(&name);
                make_data(&p, len, seed);
                p
            }
        };

        let mut made: Vec<(&'static str, Torrent, Torrent, PathBuf, &'static [Client])> =
            Vec::new();
        let solos: [(&'static str, &'static [Client]); 5] = [
            ("solo-aria2", &[Client::Aria2]),
            ("solo-transmission", &[Client::Transmission]),
            ("solo-transmission-dl-http", &[Client::Transmission]),
            ("solo-transmission-dl-udp", &[Client::Transmission]),
            ("solo-libtorrent", &[Client::Libtorrent]),
        ];
        for (i, (label, clients)) in solos.into_iter().enumerate() {
            // 1.5 MB: the last 256 KiB piece is short.
            let content = single_file(format!("{label}.bin"), 1_500_007, 100 + i as u64);
            let (h, u, s) = make(label, 18, &content);
            made.push((label, h, u, s, clients));
        }
        let content = single_file("single.bin".into(), 3 << 20, 200);
        let (h, u, s) = make("single", 18, &content);
        made.push(("single", h, u, s, &Client::ALL));
        let content = single_file("short.bin".into(), 2_500_001, 300);
        let (h, u, s) = make("short", 16, &content);
        made.push(("short", h, u, s, &Client::ALL));
        let (h, u, s) = make("multi", 17, &|src: &Path| {
            let top = src.join("multi-files");
            make_tree(
                &top,
                &[
                    ("a.bin", 700_000),
                    ("sub/b.bin", 1),
                    ("sub/deeper/c.bin", 1 << 20),
                    ("sub/deeper/d.txt", 333_333),
                    ("z.bin", 262_144),
                ],
                400,
            );
            top
        });
        assert!(h.multi_file && h.files.len() == 5);
        made.push(("multi", h, u, s, &Client::ALL));

        // Torrents that Transmission seeds alone go to the second daemon.
        let alone = |c: &[Client]| c == [Client::Transmission];
        let items = |want_alone: bool| -> Vec<(&Torrent, &Path, &[Client])> {
            made.iter()
                .filter(|m| alone(m.4) == want_alone)
                .map(|(_, h, _, s, c)| (h, s.as_path(), *c))
                .collect()
        };
        let mut seeded_alone = swarm
            .seed_using(&solo_transmission, &items(true))
            .into_iter();
        let mut seeded_rest = swarm.seed(&items(false)).into_iter();
        let mut cases = HashMap::new();
        for (label, http, udp, src, clients) in made {
            let seeded = if alone(clients) {
                seeded_alone.next()
            } else {
                seeded_rest.next()
            }
            .expect("one Seeded per torrent");
            cases.insert(
                label,
                Case {
                    http,
                    udp,
                    src,
                    seeded,
                    clients,
                },
            );
        }
        eprintln!("fixture ready in {:.1?}", started.elapsed());
        Fixture {
            swarm,
            solo_transmission,
            _dir: dir,
            cases,
        }
    })
}

/// Transmission 3.00 keeps one connection per torrent and peer IP, and every test client is
/// 127.0.0.1: a test that talks to a torrent only Transmission seeds holds this lock while it runs,
/// and starts only once the previous test's connection is gone from Transmission's peer list.
fn solo_guard(case: &Case) -> Option<MutexGuard<'static, ()>> {
    static LOCK: Mutex<()> = Mutex::new(());
    if case.clients != [Client::Transmission] {
        return None;
    }
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    fixture().solo_transmission.wait_no_peers(&case.http);
    Some(guard)
}

// ---------------------------------------------------------------------------------------------
// info

/// Checks `info` output line by line against the torrent (parsed independently) and transmission-show.
fn check_info(t: &Torrent) {
    let run = bt_trace(["info".as_ref(), t.path.as_os_str()], QUICK);
    run.assert_ok();
    let show = transmission_show(&t.path);
    let lines = run.stdout_lines();
    let announce = t.announce.clone().expect("announce");
    let head = [
        format!("Tracker URL: {announce}"),
        format!("Length: {}", t.total_length),
        format!("Info Hash: {}", show.hash),
        format!("Piece Length: {}", show.piece_size),
        "Piece Hashes:".to_string(),
    ];
    assert!(
        lines.len() >= head.len() + show.piece_count,
        "info should print {} lines then {} piece hashes; got {}",
        head.len(),
        show.piece_count,
        run.describe()
    );
    for (i, want) in head.iter().enumerate() {
        assert_eq!(lines[i], want, "line {} of info:\n{}", i + 1, run.stdout);
    }
    let hashes = &lines[head.len()..head.len() + show.piece_count];
    assert_eq!(hashes, t.piece_hashes.as_slice(), "piece hashes");
    if !t.multi_file {
        assert_eq!(
            lines.len(),
            head.len() + show.piece_count,
            "extra lines:\n{}",
            run.stdout
        );
    }
}

#[test]
fn info_single_file_matches_transmission_show() {
    skip_unless_installed!(SWARM);
    let f = fixture();
    check_info(&f.single().http);
    check_info(&f.solo(Client::Aria2).http);
}

#[test]
fn info_short_last_piece() {
    skip_unless_installed!(SWARM);
    let t = &fixture().short().http;
    assert_ne!(t.total_length % t.piece_length, 0);
    check_info(t);
}

#[test]
fn info_multi_file_total_length() {
    skip_unless_installed!(SWARM);
    let t = &fixture().multi().http;
    assert_eq!(t.total_length, 700_000 + 1 + (1 << 20) + 333_333 + 262_144);
    check_info(t);
}

#[test]
fn info_udp_announce_url() {
    skip_unless_installed!(SWARM);
    check_info(&fixture().multi().udp);
}

#[test]
fn info_bad_input_fails_cleanly() {
    let dir = temp_dir("info-bad");
    let missing = dir.path().join("missing.torrent");
    bt_trace(["info".as_ref(), missing.as_os_str()], QUICK).assert_clean_failure();
    for (name, bytes) in [
        ("garbage.torrent", &b"this is not bencode"[..]),
        ("truncated.torrent", &b"d8:announce3:abc4:infod4:name"[..]),
        ("no-info.torrent", &b"d8:announce3:abce"[..]),
        ("empty.torrent", &b""[..]),
    ] {
        let p = dir.path().join(name);
        fs::write(&p, bytes).expect("write");
        bt_trace(["info".as_ref(), p.as_os_str()], QUICK).assert_clean_failure();
    }
}

// ---------------------------------------------------------------------------------------------
// peers

/// Runs `peers`; every stdout line must be `ip:port`; returns the set.
fn peers(t: &Torrent) -> BTreeSet<String> {
    let run = bt_trace(["peers".as_ref(), t.path.as_os_str()], NET);
    run.assert_ok();
    let mut set = BTreeSet::new();
    for line in run.stdout_lines() {
        let addr: std::net::SocketAddr = line
            .parse()
            .unwrap_or_else(|_| panic!("not ip:port: {line:?}\n{}", run.describe()));
        assert_ne!(addr.port(), 0, "{line}");
        set.insert(line.to_string());
    }
    set
}

fn assert_has_seeders(got: &BTreeSet<String>, case: &Case) {
    assert_eq!(case.seeded.ports.len(), case.clients.len());
    for (client, port) in &case.seeded.ports {
        assert!(
            got.contains(&format!("127.0.0.1:{port}")),
            "{client:?} seeder 127.0.0.1:{port} missing from peers {got:?}"
        );
    }
}

#[test]
fn peers_http_tracker_lists_every_seeder() {
    skip_unless_installed!(SWARM);
    let f = fixture();
    for case in [f.single(), f.multi(), f.solo(Client::Transmission)] {
        assert_has_seeders(&peers(&case.http), case);
    }
}

#[test]
fn peers_udp_tracker_lists_every_seeder() {
    skip_unless_installed!(SWARM);
    let f = fixture();
    for case in [f.single(), f.short(), f.solo(Client::Libtorrent)] {
        assert_has_seeders(&peers(&case.udp), case);
    }
}

#[test]
fn peers_announce_list_falls_back_to_the_next_tier() {
    skip_unless_installed!(SWARM);
    let f = fixture();
    let dead = format!("http://127.0.0.1:{}/announce", free_port()); // nothing listens there
    let dir = temp_dir("peers-tiers");
    let t = mktorrent(
        &f.single().http_content(),
        &dir.path().join("tiers.torrent"),
        18,
        &[&[&dead], &[&f.swarm.tracker.http_url()]],
    );
    assert_eq!(t.info_hash, f.single().http.info_hash);
    assert_eq!(t.tiers.len(), 2);
    assert_has_seeders(&peers(&t), f.single());
}

#[test]
fn peers_unreachable_tracker_fails_cleanly() {
    skip_unless_installed!(SWARM);
    let f = fixture();
    let dir = temp_dir("peers-dead");
    let dead = format!("http://127.0.0.1:{}/announce", free_port());
    let t = mktorrent(
        &f.single().http_content(),
        &dir.path().join("dead.torrent"),
        18,
        &[&[&dead]],
    );
    bt_trace(["peers".as_ref(), t.path.as_os_str()], NET).assert_clean_failure();
}

#[test]
fn peers_tracker_failure_reason_fails_cleanly() {
    skip_unless_installed!(SWARM);
    // A torrent opentracker was never told about: it answers with a `failure reason`.
    let f = fixture();
    let dir = temp_dir("peers-unknown");
    let data = dir.path().join("unlisted.bin");
    make_data(&data, 300_000, 999);
    let t = mktorrent(
        &data,
        &dir.path().join("unlisted.torrent"),
        18,
        &[&[&f.swarm.tracker.http_url()]],
    );
    bt_trace(["peers".as_ref(), t.path.as_os_str()], NET).assert_clean_failure();
}

// ---------------------------------------------------------------------------------------------
// handshake

fn check_handshake(client: Client) {
    let f = fixture();
    let case = f.solo(client);
    let port = case.seeded.port(client);
    let _guard = solo_guard(case);
    let run = bt_trace(
        [
            "handshake".as_ref(),
            case.http.path.as_os_str(),
            format!("127.0.0.1:{port}").as_ref(),
        ],
        NET,
    );
    run.assert_ok();
    let lines = run.stdout_lines();
    assert_eq!(
        lines.len(),
        1,
        "handshake should print one `Peer ID: <40 hex>` line; got {}",
        run.describe()
    );
    let hex_id = lines[0]
        .strip_prefix("Peer ID: ")
        .unwrap_or_else(|| panic!("want `Peer ID: <40 hex>`; got {}", run.describe()));
    assert!(
        hex_id.len() == 40
            && hex_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not 40 lowercase hex: {hex_id:?}"
    );
    let id = hex::decode(hex_id).expect("hex");
    assert!(
        id.starts_with(client.peer_id_prefix()),
        "{client:?} peer id {:?} should start with {:?}",
        String::from_utf8_lossy(&id),
        String::from_utf8_lossy(client.peer_id_prefix())
    );
}

#[test]
fn handshake_aria2() {
    skip_unless_installed!(SWARM);
    check_handshake(Client::Aria2);
}

#[test]
fn handshake_transmission() {
    skip_unless_installed!(SWARM);
    check_handshake(Client::Transmission);
}

#[test]
fn handshake_libtorrent() {
    skip_unless_installed!(SWARM);
    check_handshake(Client::Libtorrent);
}

#[test]
fn handshake_closed_port_fails_cleanly() {
    skip_unless_installed!(SWARM);
    let f = fixture();
    let port = free_port(); // nothing listens there
    bt_trace(
        [
            "handshake".as_ref(),
            f.single().http.path.as_os_str(),
            format!("127.0.0.1:{port}").as_ref(),
        ],
        NET,
    )
    .assert_clean_failure();
}

// ---------------------------------------------------------------------------------------------
// download_piece

fn check_piece(case: &Case, t: &Torrent, index: usize) {
    let dir = temp_dir("piece");
    let out = dir.path().join(format!("piece-{index}"));
    let run = bt_trace(
        [
            "download_piece".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            t.path.as_os_str(),
            index.to_string().as_ref(),
        ],
        DOWNLOAD,
    );
    run.assert_ok();
    let got =
        fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}\n{}", out.display(), run.describe()));
    let want = t.piece_bytes(&case.src, index);
    assert_eq!(got.len(), want.len(), "piece {index} length");
    assert!(
        got == want,
        "piece {index} bytes differ from the source data"
    );
}

#[test]
fn download_piece_from_each_seeder_alone() {
    skip_unless_installed!(SWARM);
    let f = fixture();
    for client in Client::ALL {
        let case = f.solo(client);
        let _guard = solo_guard(case);
        check_piece(case, &case.http, 1);
    }
}

#[test]
fn download_piece_short_last_piece_over_udp() {
    skip_unless_installed!(SWARM);
    let case = fixture().short();
    let last = case.udp.piece_count() - 1;
    assert!(case.udp.piece_len(last) < case.udp.piece_length);
    check_piece(case, &case.udp, last);
    check_piece(case, &case.udp, 0);
}

#[test]
fn download_piece_spanning_files() {
    skip_unless_installed!(SWARM);
    let case = fixture().multi();
    let t = &case.http;
    // The first piece that crosses a file boundary, and the last piece.
    let mut boundaries = Vec::new();
    let mut end = 0;
    for f in &t.files {
        end += f.length;
        boundaries.push(end);
    }
    let spanning = (0..t.piece_count())
        .find(|&i| {
            let (s, e) = (
                i as u64 * t.piece_length,
                i as u64 * t.piece_length + t.piece_len(i),
            );
            boundaries.iter().any(|&b| s < b && b < e)
        })
        .expect("a piece spanning files");
    check_piece(case, t, spanning);
    check_piece(case, t, t.piece_count() - 1);
}

#[test]
fn download_piece_two_runs_at_once() {
    skip_unless_installed!(SWARM);
    // The course runs two download_piece commands at the same time.
    let case = fixture().single();
    std::thread::scope(|s| {
        let a = s.spawn(|| check_piece(case, &case.http, 3));
        let b = s.spawn(|| check_piece(case, &case.http, 7));
        a.join().expect("piece 3");
        b.join().expect("piece 7");
    });
}

#[test]
fn download_piece_out_of_range_fails_cleanly() {
    skip_unless_installed!(SWARM);
    let t = &fixture().single().http;
    let dir = temp_dir("piece-bad");
    let out = dir.path().join("piece");
    for index in [
        t.piece_count().to_string(),
        "4294967296".into(),
        "-1".into(),
    ] {
        bt_trace(
            [
                "download_piece".as_ref(),
                "-o".as_ref(),
                out.as_os_str(),
                t.path.as_os_str(),
                index.as_ref(),
            ],
            NET,
        )
        .assert_clean_failure();
    }
}

// ---------------------------------------------------------------------------------------------
// download

impl Case {
    /// The content path the torrents were made from.
    fn http_content(&self) -> PathBuf {
        self.http.content_path(&self.src)
    }
}

/// Downloads `t` with bt-trace and compares every file with the source. Single-file: `-o` is the file;
/// multi-file: `-o` is the directory the torrent's files go into.
fn check_download(case: &Case, t: &Torrent) {
    let dir = temp_dir("download");
    let (out, at) = if t.multi_file {
        let d = dir.path().join("out-dir");
        (d.clone(), DownloadedAt::Dir(d))
    } else {
        let p = dir.path().join("out.bin");
        (p.clone(), DownloadedAt::File(p))
    };
    let run = bt_trace(
        [
            "download".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            t.path.as_os_str(),
        ],
        DOWNLOAD,
    );
    run.assert_ok();
    assert_same_files(t, &case.src, &at);
}

#[test]
fn download_from_aria2_alone_http() {
    skip_unless_installed!(SWARM);
    let c = fixture().solo_download(Client::Aria2, false);
    let _guard = solo_guard(c);
    check_download(c, &c.http);
}

#[test]
fn download_from_aria2_alone_udp() {
    skip_unless_installed!(SWARM);
    let c = fixture().solo_download(Client::Aria2, true);
    let _guard = solo_guard(c);
    check_download(c, &c.udp);
}

#[test]
fn download_from_transmission_alone_http() {
    skip_unless_installed!(SWARM);
    let c = fixture().solo_download(Client::Transmission, false);
    let _guard = solo_guard(c);
    check_download(c, &c.http);
}

#[test]
fn download_from_transmission_alone_udp() {
    skip_unless_installed!(SWARM);
    let c = fixture().solo_download(Client::Transmission, true);
    let _guard = solo_guard(c);
    check_download(c, &c.udp);
}

#[test]
fn download_from_libtorrent_alone_http() {
    skip_unless_installed!(SWARM);
    let c = fixture().solo_download(Client::Libtorrent, false);
    let _guard = solo_guard(c);
    check_download(c, &c.http);
}

#[test]
fn download_from_libtorrent_alone_udp() {
    skip_unless_installed!(SWARM);
    let c = fixture().solo_download(Client::Libtorrent, true);
    let _guard = solo_guard(c);
    check_download(c, &c.udp);
}

#[test]
fn download_single_file_from_all_three_http_and_udp() {
    skip_unless_installed!(SWARM);
    let c = fixture().single();
    check_download(c, &c.http);
    check_download(c, &c.udp);
}

#[test]
fn download_short_last_piece_from_all_three_http_and_udp() {
    skip_unless_installed!(SWARM);
    let c = fixture().short();
    check_download(c, &c.http);
    check_download(c, &c.udp);
}

#[test]
fn download_multi_file_from_all_three_http_and_udp() {
    skip_unless_installed!(SWARM);
    let c = fixture().multi();
    check_download(c, &c.http);
    check_download(c, &c.udp);
}

/// How many pieces of `file` already hold the right bytes.
fn verified_pieces(t: &Torrent, file: &Path) -> usize {
    let Ok(data) = fs::read(file) else {
        return 0;
    };
    (0..t.piece_count())
        .filter(|&i| {
            let s = i * t.piece_length as usize;
            let e = s + t.piece_len(i) as usize;
            e <= data.len() && sha1_hex(&data[s..e]) == t.piece_hashes[i]
        })
        .count()
}

#[test]
fn download_resumes_after_kill_9() {
    skip_unless_installed!(SWARM);
    // A 64 MiB torrent from one rate-limited aria2c (~4 s for the whole file), so there is time to
    // kill bt-trace partway. Whether the kill lands midway only changes what is exercised, never
    // whether the test passes: the result must be correct either way.
    let f = fixture();
    let tracker = f.swarm.tracker;
    let src = temp_dir("resume-src");
    let content = src.path().join("resume.bin");
    make_data(&content, 64 << 20, 500);
    let t = mktorrent(
        &content,
        &src.path().join("resume.torrent"),
        18,
        &[&[&tracker.http_url()]],
    );
    tracker.allow(&[&t.info_hash]);
    let seeder = Aria2::seed(&t, src.path(), src.path(), &["--max-upload-limit=16M"]);
    tracker.wait_seeding(&t.info_hash, 1);

    let out_dir = temp_dir("resume-out");
    let out = out_dir.path().join("resume.bin");
    let args = [
        "download".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        t.path.as_os_str(),
    ];
    let first = bt_trace_spawn(args, &out_dir.path().join("first-run.log"));
    let deadline = Instant::now() + DOWNLOAD;
    let mut killed_at = None;
    loop {
        if let Some(status) = first.exited() {
            eprintln!("first run ended by itself ({status}) before it could be killed");
            break;
        }
        let have = verified_pieces(&t, &out);
        if have >= t.piece_count() / 8 && have < t.piece_count() {
            first.kill(); // SIGKILL: no chance to clean up
            killed_at = Some(have);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first run made no progress:\n{}",
            first.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "killed with {killed_at:?} of {} pieces on disk",
        t.piece_count()
    );

    let run = bt_trace(args, DOWNLOAD);
    run.assert_ok();
    assert_same_files(&t, src.path(), &DownloadedAt::File(out.clone()));
    // The second run must have kept what the first verified: its summary line on stderr says
    // "N of M pieces verified (K resumed from disk)".
    if let Some(before) = killed_at {
        let resumed: u32 = run
            .stderr
            .split(" resumed from disk")
            .next()
            .and_then(|s| s.rsplit('(').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no resume count in stderr:\n{}", run.stderr));
        assert!(
            resumed as usize >= before,
            "only {resumed} pieces resumed, but {before} were verified on disk before the kill"
        );
    }
    seeder.child.assert_running();
}
