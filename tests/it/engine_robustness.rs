//! The engine never waits on a tracker or a disk it cannot use:
//! - a tracker that accepts (HTTP) or receives (UDP) and never answers does not delay peers
//!   given with `--peer` (`download`, `download_piece`, `magnet_download`);
//! - Ctrl-C while such a tracker is silent ends the command at once, cleanly: exit 130,
//!   "interrupted", trace files closed (tshark reads them);
//! - a disk error (a full tmpfs, a file size limit, an output that is no regular file) ends the
//!   download quickly with exit 1 and the path in the message, drops no peer (the seeder sees
//!   one connection), and keeps the verified pieces for a later resume;
//! - idle peers give their slots up; an unrelated file at `-o` is named before it is
//!   overwritten; a peer that closes every connection is redialed less and less often, and
//!   stderr says which peers were tried.
//!
//! The seeder and the trackers are written here, in Rust; aria2c serves the metadata for the
//! magnet case. Bounds on time are generous (the bugs they catch took 13-35 s, or forever).

use crate::common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const RUN: Duration = Duration::from_secs(90);
/// A download from a fast local seeder must end well within this, whatever the tracker does.
const FAST: Duration = Duration::from_secs(8);
/// Ctrl-C must end the command within this (it took 8-35 s with a silent tracker).
const CTRL_C: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Fakes

/// A tracker that takes requests and never answers: HTTP (accepts, reads, keeps the socket
/// open) and UDP (receives) on one port. Counts what it got.
struct SilentTracker {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl SilentTracker {
    fn start() -> SilentTracker {
        let port = free_port();
        let requests = Arc::new(AtomicUsize::new(0));
        let tcp = TcpListener::bind(("127.0.0.1", port)).expect("bind silent tracker");
        let udp = UdpSocket::bind(("127.0.0.1", port)).expect("bind silent tracker");
        let n = requests.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for s in tcp.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                held.push(s); // never answered, never closed
            }
        });
        let n = requests.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while udp.recv_from(&mut buf).is_ok() {
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        SilentTracker { port, requests }
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    fn udp(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }
}

/// An honest seeder of one file: handshake, full bitfield, unchoke, then every request is
/// answered from the data. Counts connections.
struct FakeSeeder {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl FakeSeeder {
    fn start(info_hash: [u8; 20], data: Arc<Vec<u8>>, piece_len: usize) -> FakeSeeder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind seeder");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let n = connections.clone();
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                let data = data.clone();
                thread::spawn(move || {
                    let _ = seed_one(s, info_hash, &data, piece_len);
                });
            }
        });
        FakeSeeder { addr, connections }
    }
}

fn seed_one(
    mut s: TcpStream,
    info_hash: [u8; 20],
    data: &[u8],
    piece_len: usize,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)?;
    let mut reply = b"\x13BitTorrent protocol".to_vec();
    reply.extend_from_slice(&[0; 8]);
    reply.extend_from_slice(&info_hash);
    reply.extend_from_slice(b"-FS0001-fakeseeder00");
    let pieces = data.len().div_ceil(piece_len);
    let mut bits = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bits[i / 8] |= 0x80 >> (i % 8);
    }
    reply.extend_from_slice(&(1 + bits.len() as u32).to_be_bytes());
    reply.push(5);
    reply.extend_from_slice(&bits);
    reply.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
    s.write_all(&reply)?;
    loop {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body)?;
        if body.first() != Some(&6) || body.len() != 13 {
            continue; // only requests matter
        }
        let field = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap()) as usize;
        let (index, begin, length) = (field(1), field(5), field(9));
        let start = index * piece_len + begin;
        let Some(block) = data.get(start..start + length) else {
            return Ok(());
        };
        let mut m = ((9 + length) as u32).to_be_bytes().to_vec();
        m.push(7);
        m.extend_from_slice(&body[1..9]);
        m.extend_from_slice(block);
        s.write_all(&m)?;
    }
}

/// A file of `len` pseudo-random bytes and its torrent (`piece_len` = 2^`log2`) naming
/// `trackers`, one a tier.
struct Case {
    dir: TempDir,
    torrent: Torrent,
    data: Arc<Vec<u8>>,
}

impl Case {
    fn new(tag: &str, len: u64, log2: u32, trackers: &[String]) -> Case {
        let dir = temp_dir(tag);
        let content = dir.path().join("src").join(format!("{tag}.bin"));
        std::fs::create_dir_all(content.parent().unwrap()).unwrap();
        make_data(&content, len, 7);
        let tiers: Vec<Vec<&str>> = trackers.iter().map(|t| vec![t.as_str()]).collect();
        let tiers: Vec<&[&str]> = tiers.iter().map(Vec::as_slice).collect();
        let torrent = mktorrent(
            &content,
            &dir.path().join(format!("{tag}.torrent")),
            log2,
            &tiers,
        );
        let data = Arc::new(std::fs::read(&content).unwrap());
        Case { dir, torrent, data }
    }

    fn seeder(&self) -> FakeSeeder {
        FakeSeeder::start(
            self.torrent.info_hash_bytes(),
            self.data.clone(),
            self.torrent.piece_length as usize,
        )
    }

    fn src_parent(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn torrent_arg(&self) -> &str {
        self.torrent.path.to_str().unwrap()
    }
}

fn magnet(t: &Torrent, tr: &str) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn={}&tr={}",
        t.info_hash,
        t.name,
        url_escape(tr.as_bytes())
    )
}

fn tshark_reads(pcapng: &Path) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcapng)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("cut short"),
        "tshark cannot read {}: {}",
        pcapng.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Silent trackers

#[test]
fn silent_trackers_do_not_delay_peers_given_by_hand() {
    skip_unless_installed!(&[Program::Mktorrent]);
    let silent = SilentTracker::start();
    for tracker in [silent.http(), silent.udp()] {
        let c = Case::new("silent", 4 << 20, 18, std::slice::from_ref(&tracker));
        let seeder = c.seeder();
        let peer = seeder.addr.to_string();
        let out = c.out("whole");
        let o = out.to_str().unwrap();
        let r = bt_trace(
            ["download", "-o", o, c.torrent_arg(), "--peer", &peer, "-q"],
            RUN,
        );
        r.assert_ok();
        assert!(r.elapsed < FAST, "{tracker}: download took {:?}", r.elapsed);
        assert_eq!(std::fs::read(&out).unwrap(), *c.data);

        let piece = c.out("piece");
        let p = piece.to_str().unwrap();
        let r = bt_trace(
            [
                "download_piece",
                "-o",
                p,
                c.torrent_arg(),
                "3",
                "--peer",
                &peer,
                "-q",
            ],
            RUN,
        );
        r.assert_ok();
        assert!(
            r.elapsed < FAST,
            "{tracker}: download_piece took {:?}",
            r.elapsed
        );
        assert_eq!(
            std::fs::read(&piece).unwrap(),
            c.torrent.piece_bytes(&c.src_parent(), 3)
        );
    }
    // three silent tiers: each would have been waited for in turn
    let tiers = [silent.http(), silent.udp(), silent.http()];
    let c = Case::new("tiers", 2 << 20, 17, &tiers);
    let seeder = c.seeder();
    let out = c.out("whole");
    let r = bt_trace(
        [
            "download",
            "-o",
            out.to_str().unwrap(),
            c.torrent_arg(),
            "--peer",
            &seeder.addr.to_string(),
            "-q",
        ],
        RUN,
    );
    r.assert_ok();
    assert!(
        r.elapsed < FAST,
        "three silent tiers: download took {:?}",
        r.elapsed
    );
}

#[test]
fn magnet_download_with_a_silent_tracker_uses_the_peer_at_once() {
    skip_unless_installed!(&[Program::Aria2c, Program::Mktorrent]);
    let silent = SilentTracker::start();
    let c = Case::new("silent-magnet", 2 << 20, 17, &[silent.http()]);
    let seeder = Aria2::seed(&c.torrent, &c.src_parent(), c.dir.path(), &[]);
    let out = c.out("whole");
    let r = bt_trace(
        [
            "magnet_download",
            "-o",
            out.to_str().unwrap(),
            &magnet(&c.torrent, &silent.http()),
            "--peer",
            &format!("127.0.0.1:{}", seeder.port),
            "-q",
        ],
        RUN,
    );
    r.assert_ok();
    assert!(r.elapsed < FAST, "magnet_download took {:?}", r.elapsed);
    assert_eq!(std::fs::read(&out).unwrap(), *c.data);
}

/// Starts a command that waits on the silent tracker, sends SIGINT once the tracker got the
/// request, and checks that it ends at once and cleanly, with its trace readable.
fn ctrl_c_ends(command: &str, tracker: &SilentTracker, url: &str) {
    let c = Case::new("ctrl-c", 1 << 20, 16, &[url.to_string()]);
    let traces = c.out("traces");
    let out = c.out("out");
    let magnet = magnet(&c.torrent, url);
    let what = if command.starts_with("magnet") {
        magnet.as_str()
    } else {
        c.torrent_arg()
    };
    let mut args = vec![command, "-o", out.to_str().unwrap(), what];
    if command.ends_with("piece") {
        args.push("0");
    }
    args.extend(["--trace", traces.to_str().unwrap(), "-q"]);
    let before = tracker.requests.load(Ordering::SeqCst);
    let child = bt_trace_spawn(&args, &c.out("log"));
    let deadline = Instant::now() + READY_TIMEOUT;
    while tracker.requests.load(Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "{command}: no request reached the tracker"
        );
        child.assert_running();
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200)); // well inside the tracker's wait
    let sent = Instant::now();
    // SAFETY: a plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait_exit(Duration::from_secs(60));
    let took = sent.elapsed();
    let log = child.log_text();
    assert!(
        took < CTRL_C,
        "{command} ({url}): Ctrl-C took {took:?}; log:\n{log}"
    );
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{command}: {log}");
    assert!(log.contains("interrupted"), "{command}: {log}");
    assert!(!log.contains("timed out"), "{command}: {log}");
    let pcapng: Vec<PathBuf> = std::fs::read_dir(&traces)
        .expect("trace dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcapng"))
        .collect();
    assert_eq!(pcapng.len(), 1, "{command}: {pcapng:?}");
    tshark_reads(&pcapng[0]);
}

#[test]
fn ctrl_c_during_a_silent_tracker_ends_the_command_at_once() {
    skip_unless_installed!(&[Program::Mktorrent, Program::Tshark]);
    let silent = SilentTracker::start();
    ctrl_c_ends("download", &silent, &silent.udp());
    ctrl_c_ends("download", &silent, &silent.http());
    ctrl_c_ends("download_piece", &silent, &silent.http());
    ctrl_c_ends("magnet_download", &silent, &silent.http());
    ctrl_c_ends("magnet_download", &silent, &silent.udp());
}

// ---------------------------------------------------------------------------------------------
// Disk errors

/// A tmpfs of `size` at `dir`, unmounted on drop. `None` when we may not mount (not root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The `K` of "N of M pieces verified (K resumed from disk)".
fn resumed(stderr: &str) -> u32 {
    let at = stderr.find(" resumed from disk").expect("a summary line");
    let head = &stderr[..at];
    head[head.rfind('(').expect("(") + 1..]
        .parse()
        .expect("a count")
}

#[test]
fn a_full_disk_ends_the_download_and_keeps_verified_pieces() {
    skip_unless_installed!(&[Program::Mktorrent]);
    let c = Case::new("full", 8 << 20, 18, &[]);
    let Some(fs) = Tmpfs::mount(&c.out("small"), "2m") else {
        eprintln!("NOTE: cannot mount a tmpfs (not root?); skipping the full-disk test");
        return;
    };
    let seeder = c.seeder();
    let peer = seeder.addr.to_string();
    let out = fs.0.join("data.bin");
    let r = bt_trace(
        [
            "download",
            "-o",
            out.to_str().unwrap(),
            c.torrent_arg(),
            "--peer",
            &peer,
        ],
        RUN,
    );
    r.assert_clean_failure();
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(
        r.elapsed < FAST,
        "a full disk took {:?} to end the download",
        r.elapsed
    );
    let want = format!("error: writing {}: No space left on device", out.display());
    assert!(r.stderr.contains(&want), "{}", r.describe());
    // our disk, not the peer's fault: one connection, never dropped nor redialed
    assert_eq!(
        seeder.connections.load(Ordering::SeqCst),
        1,
        "{}",
        r.describe()
    );
    // the verified pieces are kept: a resume elsewhere starts from them
    let moved = c.out("data.bin");
    std::fs::copy(&out, &moved).unwrap();
    drop(fs);
    let r = bt_trace(
        [
            "download",
            "-o",
            moved.to_str().unwrap(),
            c.torrent_arg(),
            "--peer",
            &peer,
        ],
        RUN,
    );
    r.assert_ok();
    assert!(resumed(&r.stderr) >= 1, "{}", r.describe());
    assert_eq!(std::fs::read(&moved).unwrap(), *c.data);
}

#[test]
fn a_file_size_limit_and_an_unwritable_output_fail_fast_with_the_path() {
    skip_unless_installed!(&[Program::Mktorrent]);
    let c = Case::new("limit", 2 << 20, 17, &[]);
    let seeder = c.seeder();
    let peer = seeder.addr.to_string();
    // RLIMIT_FSIZE below the file's size (SIGXFSZ ignored, so writes fail with EFBIG)
    let out = c.out("limited.bin");
    let mut cmd = Command::new(bt_trace_bin());
    cmd.args([
        "download",
        "-o",
        out.to_str().unwrap(),
        c.torrent_arg(),
        "--peer",
        &peer,
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: 1 << 20,
                rlim_max: 1 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = ChildGuard::spawn("bt-trace (file size limit)", cmd, &c.out("limit.log"));
    let started = Instant::now();
    let status = child.wait_exit(RUN);
    let log = child.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(
        started.elapsed() < FAST,
        "took {:?}: {log}",
        started.elapsed()
    );
    assert!(
        log.contains(&format!("{}: File too large", out.display())),
        "{log}"
    );

    // an output that is not a regular file
    let r = bt_trace(
        [
            "download",
            "-o",
            "/proc/self/status",
            c.torrent_arg(),
            "--peer",
            &peer,
        ],
        RUN,
    );
    r.assert_clean_failure();
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(r.elapsed < FAST, "{}", r.describe());
    assert!(r.stderr.contains("/proc/self/status"), "{}", r.describe());
}

// ---------------------------------------------------------------------------------------------
// Idle peers

/// A peer that completes the handshake, says it has every piece, and never unchokes us: it
/// reads and drops whatever we send until we close.
fn spawn_idle_peer(info_hash: [u8; 20], pieces: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind idle peer");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut hs = [0u8; 68];
            if s.read_exact(&mut hs).is_err() {
                continue;
            }
            let mut reply = b"\x13BitTorrent protocol".to_vec();
            reply.extend_from_slice(&[0; 8]);
            reply.extend_from_slice(&info_hash);
            reply.extend_from_slice(b"-ID0001-idlepeer0000");
            let bits = vec![0xffu8; pieces.div_ceil(8)];
            reply.extend_from_slice(&(1 + bits.len() as u32).to_be_bytes());
            reply.push(5);
            reply.extend_from_slice(&bits);
            if s.write_all(&reply).is_err() {
                continue;
            }
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
    });
    addr
}

/// 200 peers that never unchoke us, then the one seeder last in `--peer`: idle connections
/// park and make room, so the seeder is reached within seconds (it took 601 s when idle peers
/// held every slot until the 150 s silence timeout).
#[test]
fn idle_peers_do_not_starve_the_download() {
    skip_unless_installed!(&[Program::Mktorrent]);
    let c = Case::new("idle", 4 << 20, 18, &[]);
    let pieces = c.torrent.piece_count();
    let seeder = c.seeder();
    let mut args: Vec<String> = vec!["download".into(), "-q".into(), "-o".into()];
    let alone = c.out("alone");
    args.push(alone.display().to_string());
    args.push(c.torrent_arg().into());
    args.extend(["--peer".into(), seeder.addr.to_string()]);
    let r = bt_trace(&args, RUN);
    r.assert_ok();
    let seeder_alone = r.elapsed;

    let mut args: Vec<String> = vec!["download".into(), "-q".into(), "-o".into()];
    let crowded = c.out("crowded");
    args.push(crowded.display().to_string());
    args.push(c.torrent_arg().into());
    for _ in 0..200 {
        let idle = spawn_idle_peer(c.torrent.info_hash_bytes(), pieces);
        args.extend(["--peer".into(), idle.to_string()]);
    }
    args.extend(["--peer".into(), seeder.addr.to_string()]);
    let r = bt_trace(&args, RUN);
    r.assert_ok();
    assert_eq!(std::fs::read(&crowded).unwrap(), *c.data);
    eprintln!(
        "idle peers: seeder alone {:?}, behind 200 idle peers {:?}",
        seeder_alone, r.elapsed
    );
    assert!(
        r.elapsed < Duration::from_secs(30),
        "behind 200 idle peers the download took {:?} (seeder alone: {seeder_alone:?})",
        r.elapsed
    );
}

/// An unrelated file at `-o` (another size, none of the pieces) is named on stderr before it
/// is overwritten; a partial download of the torrent resumes without that warning.
#[test]
fn an_unrelated_file_at_the_output_is_reported_before_it_is_overwritten() {
    skip_unless_installed!(&[Program::Mktorrent]);
    let c = Case::new("unrelated", 1 << 20, 16, &[]);
    let seeder = c.seeder();
    let peer = seeder.addr.to_string();
    let out = c.out("notes.txt");
    std::fs::write(&out, "my notes, not a download\n".repeat(100_000)).unwrap();
    let args = |o: &str| {
        [
            "download".to_string(),
            "-o".into(),
            o.into(),
            c.torrent_arg().into(),
            "--peer".into(),
            peer.clone(),
        ]
    };
    let r = bt_trace(args(out.to_str().unwrap()), RUN);
    r.assert_ok();
    let want = format!(
        "{} is already there (2.4 MiB, the torrent's file is 1 MiB) and holds none of the \
         torrent's pieces",
        out.display()
    );
    assert!(r.stderr.contains(&want), "{}", r.describe());
    assert_eq!(std::fs::read(&out).unwrap(), *c.data);
    // a download of the torrent cut short: resumed, no warning
    let partial = c.out("partial.bin");
    std::fs::write(&partial, &c.data[..c.data.len() / 2]).unwrap();
    let r = bt_trace(args(partial.to_str().unwrap()), RUN);
    r.assert_ok();
    assert!(resumed(&r.stderr) >= 1, "{}", r.describe());
    assert!(!r.stderr.contains("already there"), "{}", r.describe());
    assert_eq!(std::fs::read(&partial).unwrap(), *c.data);
}

// ---------------------------------------------------------------------------------------------
// A peer that refuses us

/// A peer that accepts, reads the handshake and closes, every time. Counts connections.
fn spawn_closing_peer() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind closing peer");
    let addr = listener.local_addr().expect("addr");
    let dials = Arc::new(AtomicUsize::new(0));
    let n = dials.clone();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            n.fetch_add(1, Ordering::SeqCst);
            let mut hs = [0u8; 68];
            let _ = s.read_exact(&mut hs);
        }
    });
    (addr, dials)
}

/// An HTTP tracker that lists `peer` in every reply, with a 5 s interval.
fn spawn_listing_tracker(peer: SocketAddr) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind tracker");
    let port = listener.local_addr().expect("addr").port();
    let SocketAddr::V4(v4) = peer else {
        unreachable!("loopback v4")
    };
    let mut body = b"d8:intervali5e5:peers6:".to_vec();
    body.extend_from_slice(&v4.ip().octets());
    body.extend_from_slice(&v4.port().to_be_bytes());
    body.push(b'e');
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut req = [0u8; 4096];
            let _ = s.read(&mut req);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/announce")
}

/// The only peer, listed in every tracker reply, closes each connection: it is dialed again
/// after 1, 2, 4, 8 … s (it was dialed again at once each time the tracker listed it), and
/// stderr says which peers were tried and what each did while the command goes on waiting.
#[test]
fn a_peer_that_closes_every_connection_is_redialed_less_and_less_often() {
    skip_unless_installed!(&[Program::Mktorrent]);
    let (peer, dials) = spawn_closing_peer();
    let tracker = spawn_listing_tracker(peer);
    let c = Case::new("closer", 1 << 20, 16, std::slice::from_ref(&tracker));
    let out = c.out("out");
    let child = bt_trace_spawn(
        ["download", "-o", out.to_str().unwrap(), c.torrent_arg()],
        &c.out("log"),
    );
    let waited = Duration::from_secs(20);
    thread::sleep(waited);
    child.assert_running();
    // SAFETY: a plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait_exit(Duration::from_secs(10));
    let log = child.log_text();
    let n = dials.load(Ordering::SeqCst);
    eprintln!("closing peer: {n} connections in {waited:?}");
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{log}");
    // at 0, 1, 3, 7, 15 s; a little slack for the tracker's timing
    assert!(
        (3..=7).contains(&n),
        "{n} connections in {waited:?}:\n{log}"
    );
    let tried = format!("peers tried: {peer}: connection closed by the peer");
    assert!(log.contains(&tried), "{log}");
    assert!(log.contains("still waiting for peers"), "{log}");
}
