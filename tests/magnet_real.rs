//! The magnet commands against real BEP 9 seeders on 127.0.0.1: libtorrent (Debian's
//! python3-libtorrent) and aria2c, each seeding a single-file torrent (short last piece) and a
//! multi-file torrent whose info dictionary is larger than one 16 KiB metadata piece; plus one
//! run where the only way to the peers is an opentracker named by the link's `tr`.
//!
//! The magnet links are built from the info hash alone (`x.pe=127.0.0.1:PORT` gives the peer;
//! `tr` names a tracker that refuses connections, so only `x.pe` works and the `Tracker URL`
//! line still has something to show). Checks: `magnet_handshake` prints the real peer id and
//! its ut_metadata id; `magnet_info` prints exactly what `info` prints for the .torrent file;
//! `magnet_download` and `magnet_download_piece` produce the right bytes.
//!
//! Lifetime of the helpers: the seeders read stdin (libtorrent script) or watch our pid
//! (aria2c `--stop-with-process`), and a watchdog shell removes the data directory and stops
//! opentracker when this process exits, however it exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

/// A tracker that refuses connections at once (nothing listens on port 1).
const DEAD_TRACKER: &str = "http://127.0.0.1:1/announce";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bt-trace")
}

/// Runs bt-trace (with `--quiet` on the networked commands: no progress bar).
fn run(args: &[&str]) -> Output {
    let quiet = args.first().is_some_and(|c| c.starts_with("magnet_"));
    Command::new(bin())
        .args(args)
        .args(quiet.then_some("--quiet"))
        .stdin(Stdio::null())
        .output()
        .expect("run bt-trace")
}

/// Runs bt-trace, requires exit 0, returns stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "bt-trace {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

fn sha1(b: &[u8]) -> [u8; 20] {
    Sha1::digest(b).into()
}

/// Deterministic pseudo-random bytes (xorshift64*), so info hashes are the same every run.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A torrent made by mktorrent from files in the fixture directory.
struct Torrent {
    file: PathBuf,
    /// The file (single-file) or directory (multi-file) it was made from.
    content: PathBuf,
    name: String,
    info_hash: String,
    piece_length: usize,
    multi_file: bool,
}

impl Torrent {
    fn magnet(&self, x_pe: Option<u16>, tr: Option<&str>) -> String {
        let mut link = format!("magnet:?xt=urn:btih:{}&dn={}", self.info_hash, self.name);
        if let Some(tr) = tr {
            link += &format!("&tr={}", percent_encode(tr));
        }
        if let Some(port) = x_pe {
            link += &format!("&x.pe=127.0.0.1:{port}");
        }
        link
    }

    /// The torrent's bytes in order: its files under `root` (the file itself for a
    /// single-file torrent), concatenated in the info dictionary's order.
    fn bytes_under(&self, root: &Path) -> Vec<u8> {
        if !self.multi_file {
            return std::fs::read(root).unwrap();
        }
        let t = bt_trace::metainfo::Torrent::parse(&std::fs::read(&self.file).unwrap()).unwrap();
        t.info
            .files
            .iter()
            .flat_map(|f| std::fs::read(root.join(f.relative_path())).unwrap())
            .collect()
    }

    fn bytes(&self) -> Vec<u8> {
        self.bytes_under(&self.content)
    }
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

/// The files of the multi-file torrent, `(path, relative path)`, sorted by path.
fn multi_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v: Vec<(PathBuf, String)> = Vec::new();
    for d in std::fs::read_dir(dir).unwrap() {
        let d = d.unwrap().path();
        for f in std::fs::read_dir(&d).unwrap() {
            let f = f.unwrap().path();
            let rel = f.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            v.push((f, rel));
        }
    }
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

fn mktorrent(source: &Path, out: &Path, piece_log2: u32, announce: &str) {
    let _ = std::fs::remove_file(out);
    let st = Command::new("mktorrent")
        .args(["-l", &piece_log2.to_string(), "-a", announce, "-o"])
        .arg(out)
        .arg(source)
        .stdout(Stdio::null())
        .status()
        .expect("mktorrent (apt-get install mktorrent)");
    assert!(st.success(), "mktorrent failed");
}

fn info_hash_of(torrent: &Path) -> String {
    let t = bt_trace::metainfo::Torrent::parse(&std::fs::read(torrent).unwrap()).unwrap();
    t.info_hash_hex()
}

struct Fixture {
    dir: PathBuf,
    single: Torrent,
    multi: Torrent,
    libtorrent: u16,
    aria2: [u16; 2],
    _keep: Vec<Child>,
    _stdin: Vec<ChildStdin>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(make_fixture)
}

/// Removes `dir` and kills `pids` once this process is gone (the pipe to it closes).
fn watchdog(dir: &Path, pids: &[u32]) -> Child {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    Command::new("sh")
        .arg("-c")
        .arg(r#"read _; d="$1"; shift; for p in "$@"; do kill "$p" 2>/dev/null; done; rm -rf "$d""#)
        .arg("watchdog")
        .arg(dir)
        .args(&pids)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("watchdog shell")
}

const SEEDER_PY: &str = r#"
import sys, time, libtorrent as lt
s = lt.session({
    'listen_interfaces': '127.0.0.1:%s' % sys.argv[1],
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'allow_multiple_connections_per_ip': True,
    'in_enc_policy': lt.enc_policy.disabled, 'out_enc_policy': lt.enc_policy.disabled,
    'alert_mask': lt.alert.category_t.error_notification,
})
hs = []
for i in range(2, len(sys.argv), 2):
    hs.append(s.add_torrent({'ti': lt.torrent_info(sys.argv[i]), 'save_path': sys.argv[i + 1]}))
deadline = time.time() + 60
while any(h.status().state != lt.torrent_status.seeding for h in hs):
    if time.time() > deadline:
        print('not seeding: %s' % [str(h.status().state) for h in hs], flush=True)
        sys.exit(1)
    time.sleep(0.05)
print('ready %d' % s.listen_port(), flush=True)
sys.stdin.read()
"#;

/// Starts a libtorrent seeder of `torrents` (`(torrent file, save path)`); returns its port.
fn start_libtorrent(dir: &Path, torrents: &[(&Path, &Path)]) -> (Child, ChildStdin, u16) {
    let script = dir.join("seeder.py");
    std::fs::write(&script, SEEDER_PY).unwrap();
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(&script).arg("0");
    for (t, save) in torrents {
        cmd.arg(t).arg(save);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with libtorrent (apt-get install python3-libtorrent)");
    let stdin = child.stdin.take().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .strip_prefix("ready ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("libtorrent seeder did not start: {line:?}"));
    (child, stdin, port)
}

/// A TCP port free on 127.0.0.1 at the moment of asking.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts aria2c seeding `torrent` from `dir`; returns it and its port once it accepts
/// connections and answers the extended handshake.
fn start_aria2(dir: &Path, torrent: &Torrent) -> (Child, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("aria2c")
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--bt-require-crypto=false",
                "--bt-min-crypto-level=plain",
                "--file-allocation=none",
                "--disable-ipv6=true",
                "--seed-ratio=0.0",
                "--check-integrity=true",
                "--bt-tracker-connect-timeout=1",
                "--summary-interval=0",
                "--console-log-level=error",
                &format!("--listen-port={port}"),
                &format!("--stop-with-process={}", std::process::id()),
            ])
            .arg(format!("--dir={}", dir.display()))
            .arg(&torrent.file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aria2c (apt-get install aria2)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break; // the port was taken meanwhile: try another
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && serves_metadata(torrent, port) {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("aria2c did not start seeding");
}

/// Whether the seeder on `port` completes a magnet handshake for `t`.
fn serves_metadata(t: &Torrent, port: u16) -> bool {
    run(&["magnet_handshake", &t.magnet(Some(port), None)])
        .status
        .success()
}

fn make_fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("bt-trace-magnet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("single")).unwrap();
    let mut keep = Vec::new();
    let mut stdin = Vec::new();
    let mut dog = watchdog(&dir, &[]);
    stdin.push(dog.stdin.take().unwrap());
    keep.push(dog);

    // single file, 32 KiB pieces, a short last piece
    let content = dir.join("single").join("magnet-single.bin");
    std::fs::write(&content, data(3 * 1024 * 1024 + 1234, 1)).unwrap();
    let file = dir.join("single.torrent");
    mktorrent(&content, &file, 15, DEAD_TRACKER);
    let single = Torrent {
        info_hash: info_hash_of(&file),
        file,
        content,
        name: "magnet-single.bin".into(),
        piece_length: 32 * 1024,
        multi_file: false,
    };

    // multi-file: 400 small files with long names, so the info dictionary spans two 16 KiB
    // metadata pieces
    let root = dir.join("multi").join("magnet-multi");
    for i in 0..400u64 {
        let sub = root.join(format!("directory-{:02}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        let name = format!("file-{i:04}-with-a-rather-long-name-to-grow-the-metadata.bin");
        std::fs::write(
            sub.join(name),
            data(1000 + (i as usize * 37) % 5000, 100 + i),
        )
        .unwrap();
    }
    let file = dir.join("multi.torrent");
    mktorrent(&root, &file, 16, DEAD_TRACKER);
    let multi = Torrent {
        info_hash: info_hash_of(&file),
        file,
        content: root,
        name: "magnet-multi".into(),
        piece_length: 64 * 1024,
        multi_file: true,
    };
    let t = bt_trace::metainfo::Torrent::parse(&std::fs::read(&multi.file).unwrap()).unwrap();
    assert!(
        t.info.raw_bytes().len() > 16 * 1024,
        "metadata spans 2+ pieces"
    );

    let (child, input, libtorrent) = start_libtorrent(
        &dir,
        &[
            (&single.file, &dir.join("single")),
            (&multi.file, &dir.join("multi")),
        ],
    );
    keep.push(child);
    stdin.push(input);
    let (a1, p1) = start_aria2(&dir.join("single"), &single);
    let (a2, p2) = start_aria2(&dir.join("multi"), &multi);
    keep.push(a1);
    keep.push(a2);
    Fixture {
        dir,
        single,
        multi,
        libtorrent,
        aria2: [p1, p2],
        _keep: keep,
        _stdin: stdin,
    }
}

fn seeders(f: &Fixture, t: &Torrent) -> [(&'static str, u16); 2] {
    let aria2 = if t.multi_file { f.aria2[1] } else { f.aria2[0] };
    [("libtorrent", f.libtorrent), ("aria2", aria2)]
}

fn out_dir(name: &str) -> PathBuf {
    let d = fixture().dir.join("out").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `Peer ID: <40 hex>` then `Peer Metadata Extension ID: <1..255>`, nothing else.
fn check_handshake_output(stdout: &str, peer_id_prefix: &[u8]) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout:?}");
    let id = lines[0].strip_prefix("Peer ID: ").expect(lines[0]);
    assert_eq!(id.len(), 40);
    assert_eq!(id, id.to_lowercase());
    let id = hex::decode(id).unwrap();
    assert!(
        id.starts_with(peer_id_prefix),
        "peer id {:?}",
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
    let f = fixture();
    for t in [&f.single, &f.multi] {
        let [(_, lt), (_, a2)] = seeders(f, t);
        check_handshake_output(
            &ok(&["magnet_handshake", &t.magnet(Some(lt), None)]),
            b"-LT",
        );
        check_handshake_output(
            &ok(&["magnet_handshake", &t.magnet(Some(a2), None)]),
            b"A2-",
        );
    }
}

#[test]
fn magnet_info_prints_what_info_prints() {
    let f = fixture();
    for t in [&f.single, &f.multi] {
        let want = ok(&["info", t.file.to_str().unwrap()]);
        for (who, port) in seeders(f, t) {
            let got = ok(&["magnet_info", &t.magnet(Some(port), Some(DEAD_TRACKER))]);
            assert_eq!(got, want, "magnet_info from {who} for {}", t.name);
        }
    }
}

#[test]
fn magnet_download_gets_every_byte() {
    let f = fixture();
    for t in [&f.single, &f.multi] {
        let want = t.bytes();
        for (who, port) in seeders(f, t) {
            let dir = out_dir(&format!("download-{who}-{}", t.name));
            let out = dir.join(&t.name);
            let link = t.magnet(Some(port), Some(DEAD_TRACKER));
            ok(&["magnet_download", "-o", out.to_str().unwrap(), &link]);
            let got = t.bytes_under(&out);
            if t.multi_file {
                let names = |d: &Path| -> Vec<String> {
                    multi_files(d).into_iter().map(|(_, rel)| rel).collect()
                };
                assert_eq!(names(&out), names(&t.content), "{who}");
            }
            assert_eq!(sha1(&got), sha1(&want), "{who} {}", t.name);
        }
    }
}

#[test]
fn magnet_download_piece_gets_the_piece() {
    let f = fixture();
    for t in [&f.single, &f.multi] {
        let all = t.bytes();
        let n = all.len().div_ceil(t.piece_length);
        for (who, port) in seeders(f, t) {
            let dir = out_dir(&format!("piece-{who}-{}", t.name));
            let link = t.magnet(Some(port), Some(DEAD_TRACKER));
            // the first piece and the short last one
            for index in [0, n - 1] {
                let out = dir.join(format!("piece-{index}"));
                let stdout = ok(&[
                    "magnet_download_piece",
                    "-o",
                    out.to_str().unwrap(),
                    &link,
                    &index.to_string(),
                ]);
                assert!(stdout.starts_with(&format!("Piece {index} downloaded to ")));
                let start = index * t.piece_length;
                let end = (start + t.piece_length).min(all.len());
                assert_eq!(std::fs::read(&out).unwrap(), &all[start..end], "{who}");
            }
            // an index past the end is a clear error after the metadata arrived
            let out = run(&[
                "magnet_download_piece",
                "-o",
                dir.join("nope").to_str().unwrap(),
                &link,
                &n.to_string(),
            ]);
            assert_eq!(out.status.code(), Some(1));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("out of range"), "{err}");
        }
    }
}

#[test]
fn no_peer_at_all_is_a_clear_error() {
    let f = fixture();
    let port = free_port(); // nothing listens there
    let out = run(&["magnet_info", &f.single.magnet(Some(port), None)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no peer could give us the metadata"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Through a real tracker: the link has only `tr`, and opentracker knows the libtorrent seeder.

struct Opentracker {
    port: u16,
    daemon: Child,
    dog: Child,
}

impl Drop for Opentracker {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        if let Some(mut s) = self.dog.stdin.take() {
            let _ = s.write_all(b"\n");
        }
        let _ = self.dog.wait();
    }
}

/// Debian's opentracker (whitelist-only) for `info_hash`, on a free port; see
/// tests/tracker_opentracker.rs for why the watchdog and the chroot-relative whitelist.
fn start_opentracker(work: &Path, info_hash: &str) -> Opentracker {
    use std::os::unix::fs::PermissionsExt;
    for attempt in 0..10 {
        let dir = work.join(format!("opentracker-{attempt}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let wl = dir.join("whitelist.txt");
        std::fs::write(&wl, format!("{info_hash}\n")).unwrap();
        std::fs::set_permissions(&wl, std::fs::Permissions::from_mode(0o644)).unwrap();
        let port = free_port();
        let p = port.to_string();
        let daemon = Command::new("opentracker")
            .args(["-i", "127.0.0.1", "-p", &p, "-P", &p, "-A", "127.0.0.1"])
            .args(["-w", "whitelist.txt", "-d"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("opentracker (apt-get install opentracker)");
        let mut ot = Opentracker {
            port,
            dog: watchdog(&dir, &[daemon.id()]),
            daemon,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = ot.daemon.try_wait() {
                break;
            }
            if whitelist_loaded(port, info_hash) {
                return ot;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(ot);
    }
    panic!("opentracker did not start");
}

/// One HTTP GET to the tracker; the body of a 200 response.
fn http_get(port: u16, path_and_query: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    if !resp.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    let body = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    Some(resp[body..].to_vec())
}

fn query_hash(info_hash: &str) -> String {
    let raw = hex::decode(info_hash).unwrap();
    raw.iter().map(|b| format!("%{b:02X}")).collect()
}

/// opentracker loads its whitelist after it starts listening and refuses every torrent until
/// then: ready = a `stopped` announce for our hash (which leaves no peer behind) is accepted.
fn whitelist_loaded(port: u16, info_hash: &str) -> bool {
    let q = format!(
        "/announce?info_hash={}&peer_id=-BT0001-readyreadyre&port=1&uploaded=0&downloaded=0\
         &left=0&compact=1&event=stopped",
        query_hash(info_hash)
    );
    http_get(port, &q).is_some_and(|b| !b.windows(7).any(|w| w == b"failure"))
}

/// The tracker's `complete` count (seeders) for `info_hash`.
fn scrape_complete(port: u16, info_hash: &str) -> Option<i64> {
    let raw = hex::decode(info_hash).unwrap();
    let body = http_get(
        port,
        &format!("/scrape?info_hash={}", query_hash(info_hash)),
    )?;
    let v = bt_trace::bencode::decode(&body).ok()?;
    let files = v.get("files")?.as_dict()?;
    files.get(raw.as_slice())?.get("complete")?.as_int()
}

#[test]
fn magnet_through_opentracker() {
    let f = fixture();
    let work = f.dir.join("tracker");
    std::fs::create_dir_all(&work).unwrap();
    let ot = start_opentracker(&work, &f.single.info_hash);
    let url = format!("http://127.0.0.1:{}/announce", ot.port);
    // The same data with the live tracker in `announce` (same info hash: `announce` is
    // outside the info dictionary), seeded by a libtorrent that announces there.
    let file = work.join("tracked.torrent");
    mktorrent(&f.single.content, &file, 15, &url);
    assert_eq!(info_hash_of(&file), f.single.info_hash);
    let save = f.single.content.parent().unwrap();
    let (_seeder, _stdin, _) = start_libtorrent(&work, &[(&file, save)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape_complete(ot.port, &f.single.info_hash).unwrap_or(0) < 1 {
        assert!(Instant::now() < deadline, "the seeder never announced");
        std::thread::sleep(Duration::from_millis(100));
    }

    let link = f.single.magnet(None, Some(&url));
    let got = ok(&["magnet_info", &link, "--port", "1"]);
    assert_eq!(got, ok(&["info", file.to_str().unwrap()]));
    let out = out_dir("tracker").join("download.bin");
    ok(&[
        "magnet_download",
        "-o",
        out.to_str().unwrap(),
        &link,
        "--port",
        "1",
    ]);
    assert_eq!(sha1(&std::fs::read(&out).unwrap()), sha1(&f.single.bytes()));
}
