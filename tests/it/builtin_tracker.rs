//! `bt-trace tracker` with real clients: aria2c announces to it over HTTP, libtorrent and
//! transmission-daemon over UDP; `bt-trace peers` lists them, `bt-trace download` and a
//! libtorrent leecher find them through it, and its scrape counts what happened.

use crate::common;

use bt_trace::tracker::reply::parse_scrape_response;
use bt_trace::tracker::ScrapeResponse;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

/// `bt-trace tracker` on a free port, up once it prints its listening line.
struct OurTracker {
    port: u16,
    child: ChildGuard,
    _logs: TempDir,
}

impl OurTracker {
    fn start() -> OurTracker {
        let logs = temp_dir("builtin-tracker");
        let port = free_port();
        let child = bt_trace_spawn(
            ["tracker", "--port", &port.to_string()],
            &logs.path().join("tracker.log"),
        );
        child.wait_log(&format!(
            "listening on http://127.0.0.1:{port}/announce and udp://127.0.0.1:{port}"
        ));
        OurTracker {
            port,
            child,
            _logs: logs,
        }
    }

    fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }

    fn scrape(&self, torrent: &Torrent) -> ScrapeResponse {
        let body = http_get(
            self.port,
            &format!("/scrape?info_hash={}", torrent.info_hash_urlencoded()),
        )
        .unwrap_or_else(|e| panic!("scrape: {e}\n{}", self.child.log_tail()));
        let files = parse_scrape_response(&body).expect("a scrape reply");
        assert_eq!(files.len(), 1, "one torrent asked, one answered");
        assert_eq!(files[0].0, torrent.info_hash_bytes());
        files[0].1
    }

    /// Waits until the tracker counts `n` seeders of `torrent`.
    fn wait_seeders(&self, torrent: &Torrent, n: u32) {
        let start = Instant::now();
        loop {
            let s = self.scrape(torrent);
            if s.complete >= n {
                return;
            }
            assert!(
                start.elapsed() < READY_TIMEOUT,
                "the tracker counts {s:?}, waiting for {n} seeders"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Makes `content` (2 MB and a bit) below `dir` and a torrent of it with `bt-trace create`.
fn make_torrent(dir: &Path, name: &str, seed: u64, announce: &str) -> Torrent {
    let content = dir.join(name);
    make_data(&content, 2_000_000 + seed * 1000, seed);
    let out = dir.join(format!("{name}.torrent"));
    bt_trace(
        [
            "create".as_ref(),
            content.as_os_str(),
            "-a".as_ref(),
            announce.as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ],
        TIMEOUT,
    )
    .assert_ok();
    Torrent::load(&out)
}

fn peers_of(torrent: &Torrent) -> Vec<String> {
    let run = bt_trace(["peers".as_ref(), torrent.path.as_os_str()], TIMEOUT);
    run.assert_ok();
    run.stdout_lines().iter().map(|l| l.to_string()).collect()
}

fn download(torrent: &Torrent, src_parent: &Path) {
    let out = temp_dir("builtin-tracker-out");
    let file = out.path().join(&torrent.name);
    bt_trace(
        [
            "download".as_ref(),
            "-q".as_ref(),
            "-o".as_ref(),
            file.as_os_str(),
            torrent.path.as_os_str(),
        ],
        TIMEOUT,
    )
    .assert_ok();
    assert_same_files(torrent, src_parent, &DownloadedAt::File(file));
}

/// Hermetic: a bt-trace seeder announced to our tracker; the commands that only look (or take
/// one piece) leave no trace in the tracker's counts: `download_piece` announces the whole
/// torrent's `left` (never `completed`) and `stopped` at the end, `peers` and `magnet_info`
/// send `stopped` after asking.
#[test]
fn looking_commands_leave_the_tracker_as_they_found_it() {
    let tracker = OurTracker::start();
    let src = temp_dir("builtin-hygiene");
    let torrent = make_torrent(src.path(), "hygiene.bin", 3, &tracker.http_url());
    let port = free_port();
    let seeder = bt_trace_spawn(
        [
            "seed".as_ref(),
            torrent.path.as_os_str(),
            "--data".as_ref(),
            torrent.content_path(src.path()).as_os_str(),
            "--port".as_ref(),
            port.to_string().as_ref(),
            "-q".as_ref(),
        ],
        &src.path().join("seed.log"),
    );
    seeder.wait_port(port);
    tracker.wait_seeders(&torrent, 1);
    let counts = |t: &OurTracker| {
        let s = t.scrape(&torrent);
        (s.complete, s.incomplete, s.downloaded)
    };

    let piece = src.path().join("piece-1");
    bt_trace(
        [
            "download_piece".as_ref(),
            "-o".as_ref(),
            piece.as_os_str(),
            torrent.path.as_os_str(),
            "1".as_ref(),
        ],
        TIMEOUT,
    )
    .assert_ok();
    assert_eq!(
        std::fs::read(&piece).unwrap(),
        torrent.piece_bytes(src.path(), 1)
    );
    assert_eq!(counts(&tracker), (1, 0, 0), "after download_piece");

    assert_eq!(peers_of(&torrent), [format!("127.0.0.1:{port}")]);
    assert_eq!(counts(&tracker), (1, 0, 0), "after peers");

    let link = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        torrent.info_hash,
        url_escape(tracker.http_url().as_bytes())
    );
    bt_trace(["magnet_info", &link], TIMEOUT).assert_ok();
    assert_eq!(counts(&tracker), (1, 0, 0), "after magnet_info");
}

#[test]
fn over_http_aria2_seeds_and_bt_trace_downloads() {
    skip_unless_installed!(&[Program::Aria2c, Program::Mktorrent]);
    let tracker = OurTracker::start();
    let src = temp_dir("builtin-http");
    let torrent = make_torrent(src.path(), "http.bin", 1, &tracker.http_url());
    assert_eq!(tracker.scrape(&torrent), ScrapeResponse::default());

    let logs = temp_dir("builtin-http-logs");
    let aria2 = Aria2::seed(&torrent, src.path(), logs.path(), &[]);
    tracker.wait_seeders(&torrent, 1);
    assert_eq!(peers_of(&torrent), [format!("127.0.0.1:{}", aria2.port)]);

    download(&torrent, src.path());
    // the download announced `completed` when it was done and stays counted as a seeder;
    // `bt-trace peers` announced as a leecher (with its own peer id) and then `stopped`
    let s = tracker.scrape(&torrent);
    assert_eq!((s.complete, s.incomplete, s.downloaded), (2, 0, 1), "{s:?}");

    // Ctrl-C is the tracker's normal end
    run_ok(Command::new("kill").args(["-INT", &tracker.child.id().to_string()]));
    let status = tracker.child.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        tracker.child.log_tail()
    );
}

#[test]
fn over_udp_libtorrent_and_transmission_seed_to_bt_trace_and_a_libtorrent_leecher() {
    skip_unless_installed!(&[
        Program::Libtorrent,
        Program::TransmissionDaemon,
        Program::TransmissionRemote,
        Program::Mktorrent
    ]);
    let tracker = OurTracker::start();
    let src = temp_dir("builtin-udp");
    let torrent = make_torrent(src.path(), "udp.bin", 2, &tracker.udp_url());

    let lt = LtSeeder::start(None);
    lt.add(&torrent, src.path());
    let transmission = Transmission::start(None);
    transmission.add(&torrent, src.path());
    lt.wait_seeding(&torrent);
    transmission.wait_complete(&torrent);
    tracker.wait_seeders(&torrent, 2);

    let mut peers = peers_of(&torrent);
    peers.sort();
    let mut want = vec![
        format!("127.0.0.1:{}", lt.port),
        format!("127.0.0.1:{}", transmission.peer_port),
    ];
    want.sort();
    assert_eq!(peers, want, "bt-trace peers over UDP");

    download(&torrent, src.path());

    // a libtorrent leecher finds the seeders through the tracker too
    let out = temp_dir("builtin-udp-lt");
    let run = Command::new(PYTHON)
        .arg(support("lt_leech.py"))
        .arg(&torrent.path)
        .arg(out.path())
        .arg("--timeout")
        .arg("100")
        .output()
        .expect("run lt_leech.py");
    assert!(
        run.status.success(),
        "lt_leech.py failed: {}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_same_files(
        &torrent,
        src.path(),
        &DownloadedAt::File(out.path().join(&torrent.name)),
    );
    let s = tracker.scrape(&torrent);
    assert!(s.complete >= 3, "{s:?}");
    tracker.child.assert_running();
}
