//! opentracker on 127.0.0.1, serving HTTP and UDP (BEP 15) on one free port.
//!
//! Debian's opentracker is built whitelist-only: it refuses every info hash not in its whitelist file.
//! It reads that file at start and again on SIGHUP (checked: `allow` below waits until a probe announce
//! is accepted), so one tracker serves a whole test binary and tests whitelist their torrents as they
//! make them. It chroots to its directory and drops to `nobody`, so the directory and file must be
//! world-readable and the whitelist path is given relative to the chroot.

use super::*;
use serde_bencode::value::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ChildStdin;

/// One opentracker process; killed when dropped (or when the test process exits, see `start`).
pub struct Tracker {
    pub port: u16,
    dir: TempDir,
    opentracker_pid: libc::pid_t,
    wrapper: ChildGuard,
    _lifeline: Mutex<ChildStdin>,
    whitelist: Mutex<BTreeSet<String>>,
}

/// What a scrape says about one torrent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scrape {
    pub complete: i64,
    pub incomplete: i64,
    pub downloaded: i64,
}

const LIFELINE_SH: &str = r#"
opentracker "$@" </dev/null >>"$OT_LOG" 2>&1 &
echo $!
read _line
kill -9 $! 2>/dev/null
"#;

impl Tracker {
    /// The tracker shared by every test of this binary, started on first use.
    pub fn shared() -> &'static Tracker {
        static TRACKER: OnceLock<Tracker> = OnceLock::new();
        TRACKER.get_or_init(Tracker::start)
    }

    /// Starts a new opentracker on a free port and waits until it accepts connections.
    ///
    /// opentracker changes its user id, which clears `PR_SET_PDEATHSIG`, and a `static` is never
    /// dropped; so it runs under a small `sh` that holds our stdin pipe and kills it when the pipe
    /// closes, which the kernel does when this test process exits, however it exits.
    pub fn start() -> Tracker {
        let port = free_port();
        let dir = temp_dir("opentracker");
        let placeholder: BTreeSet<String> = BTreeSet::new();
        write_whitelist(dir.path(), &placeholder);
        let log = dir.path().join("opentracker.log");
        // As root it chroots into the directory; otherwise the chroot fails and it stays in the
        // current directory, so then give the full path.
        let whitelist_arg = if unsafe { libc::geteuid() } == 0 {
            "/whitelist.txt".to_string()
        } else {
            dir.path().join("whitelist.txt").display().to_string()
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(LIFELINE_SH)
            .arg("sh")
            .args(["-i", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg("-P")
            .arg(port.to_string())
            .arg("-d")
            .arg(dir.path())
            .arg("-w")
            .arg(&whitelist_arg)
            .args(["-A", "127.0.0.1"])
            .env("OT_LOG", &log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start sh for opentracker");
        let lifeline = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read opentracker pid");
        let opentracker_pid: libc::pid_t = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("opentracker wrapper printed {line:?}, not a pid"));
        let wrapper = ChildGuard::adopt("opentracker", child, &log);
        let tracker = Tracker {
            port,
            dir,
            opentracker_pid,
            wrapper,
            _lifeline: Mutex::new(lifeline),
            whitelist: Mutex::new(placeholder),
        };
        tracker.wrapper.wait_until(
            &format!("opentracker listening on 127.0.0.1:{port}"),
            READY_TIMEOUT,
            || port_open(port) || !pid_alive(opentracker_pid),
        );
        assert!(
            pid_alive(opentracker_pid),
            "opentracker exited at start:\n{}",
            tracker.wrapper.log_tail()
        );
        tracker
    }

    /// `http://127.0.0.1:PORT/announce`
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    /// `udp://127.0.0.1:PORT/announce` (the same port serves UDP)
    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }

    /// Adds info hashes (40 hex) to the whitelist, makes opentracker reload it (SIGHUP), and waits until
    /// it accepts an announce for each. Call it before any seeder announces a torrent: a refused
    /// announce makes clients back off for a long time.
    pub fn allow(&self, info_hashes: &[&str]) {
        let mut wl = self.whitelist.lock().unwrap_or_else(|e| e.into_inner());
        let before = wl.len();
        for ih in info_hashes {
            assert!(
                ih.len() == 40 && ih.bytes().all(|b| b.is_ascii_hexdigit()),
                "not an info hash: {ih:?}"
            );
            wl.insert(ih.to_ascii_lowercase());
        }
        if wl.len() == before {
            return;
        }
        write_whitelist(self.dir.path(), &wl);
        // SAFETY: plain kill(2) on the pid we started.
        unsafe { libc::kill(self.opentracker_pid, libc::SIGHUP) };
        for ih in info_hashes {
            self.wrapper.wait_until(
                &format!("opentracker accepting {ih} after SIGHUP"),
                READY_TIMEOUT,
                || self.probe_accepts(ih),
            );
        }
    }

    /// Announces a throw-away peer (port 9) and removes it again; true if the tracker accepted it.
    fn probe_accepts(&self, ih: &str) -> bool {
        let ih = url_escape(&hex::decode(ih).expect("hex"));
        let peer_id = url_escape(b"-HP0001-whitelistprb");
        let base = format!(
            "/announce?info_hash={ih}&peer_id={peer_id}&port=9&uploaded=0&downloaded=0&compact=1&numwant=0"
        );
        let Ok(body) = http_get(self.port, &format!("{base}&left=1")) else {
            return false;
        };
        let accepted = !contains(&body, b"failure reason");
        if accepted {
            let _ = http_get(self.port, &format!("{base}&left=1&event=stopped"));
        }
        accepted
    }

    /// Scrape counts for one torrent (all zero if the tracker knows no peer of it).
    pub fn scrape(&self, info_hash: &str) -> Scrape {
        let raw = hex::decode(info_hash).expect("hex info hash");
        let body = http_get(
            self.port,
            &format!("/scrape?info_hash={}", url_escape(&raw)),
        )
        .unwrap_or_else(|e| panic!("scrape: {e}; opentracker log:\n{}", self.wrapper.log_tail()));
        let value: Value = serde_bencode::from_bytes(&body)
            .unwrap_or_else(|e| panic!("scrape reply is not bencode ({e}): {body:?}"));
        let Some(Value::Dict(files)) = dict_get(&value, b"files") else {
            return Scrape::default();
        };
        let Some(entry) = files.get(raw.as_slice()) else {
            return Scrape::default();
        };
        let int = |k: &[u8]| match dict_get(entry, k) {
            Some(Value::Int(i)) => *i,
            _ => 0,
        };
        Scrape {
            complete: int(b"complete"),
            incomplete: int(b"incomplete"),
            downloaded: int(b"downloaded"),
        }
    }

    /// Waits until the tracker counts at least `n` seeders (`complete`) for the torrent.
    pub fn wait_seeding(&self, info_hash: &str, n: i64) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let last = self.scrape(info_hash);
            if last.complete >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tracker counts {last:?} for {info_hash} after {READY_TIMEOUT:?}, want {n} seeders"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The peers the tracker gives for a torrent over UDP (BEP 15), from a throw-away leecher that
    /// announces itself on port 9 and leaves again. An independent check that the UDP side works.
    pub fn udp_peers(&self, info_hash: &str) -> Vec<SocketAddrV4> {
        let ih = hex::decode(info_hash).expect("hex info hash");
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        sock.connect(("127.0.0.1", self.port)).expect("connect udp");
        let exchange = |req: &[u8], min_len: usize| -> Vec<u8> {
            for _ in 0..5 {
                sock.send(req).expect("udp send");
                let mut buf = vec![0u8; 4096];
                if let Ok(n) = sock.recv(&mut buf) {
                    buf.truncate(n);
                    assert!(n >= min_len, "short UDP tracker reply {buf:?}");
                    assert_eq!(&buf[4..8], &req[12..16], "transaction id");
                    return buf;
                }
            }
            panic!("no UDP tracker reply; log:\n{}", self.wrapper.log_tail());
        };
        // connect
        let mut req = Vec::new();
        req.extend_from_slice(&0x0417_2710_1980u64.to_be_bytes());
        req.extend_from_slice(&0u32.to_be_bytes());
        req.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        let resp = exchange(&req, 16);
        assert_eq!(&resp[0..4], &0u32.to_be_bytes(), "connect action");
        let conn_id = resp[8..16].to_vec();
        let announce = |event: u32| {
            let mut req = Vec::new();
            req.extend_from_slice(&conn_id);
            req.extend_from_slice(&1u32.to_be_bytes()); // announce
            req.extend_from_slice(&(0x2345_6789u32 + event).to_be_bytes()); // transaction id
            req.extend_from_slice(&ih);
            req.extend_from_slice(b"-HP0001-udpprobe1234");
            req.extend_from_slice(&0u64.to_be_bytes()); // downloaded
            req.extend_from_slice(&1u64.to_be_bytes()); // left
            req.extend_from_slice(&0u64.to_be_bytes()); // uploaded
            req.extend_from_slice(&event.to_be_bytes());
            req.extend_from_slice(&0u32.to_be_bytes()); // ip: default
            req.extend_from_slice(&7u32.to_be_bytes()); // key
            req.extend_from_slice(&200i32.to_be_bytes()); // num_want
            req.extend_from_slice(&9u16.to_be_bytes()); // port
            exchange(&req, 8)
        };
        let resp = announce(0);
        assert_eq!(
            &resp[0..4],
            &1u32.to_be_bytes(),
            "announce action: {resp:?}"
        );
        let peers = resp[20..]
            .chunks_exact(6)
            .map(|c| {
                SocketAddrV4::new(
                    Ipv4Addr::new(c[0], c[1], c[2], c[3]),
                    u16::from_be_bytes([c[4], c[5]]),
                )
            })
            .filter(|p| p.port() != 9)
            .collect();
        announce(3); // stopped
        peers
    }

    pub fn log_tail(&self) -> String {
        self.wrapper.log_tail()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on the pid we started (the wrapper's `kill` would miss it).
        unsafe { libc::kill(self.opentracker_pid, libc::SIGKILL) };
    }
}

/// Free-function form of [`Tracker::wait_seeding`].
pub fn wait_seeding(tracker: &Tracker, info_hash: &str, n: i64) {
    tracker.wait_seeding(info_hash, n)
}

/// Writes the whitelist atomically (write + rename), world-readable. An empty file makes opentracker
/// warn that it "can't open" it, so a placeholder hash is always there.
fn write_whitelist(dir: &Path, hashes: &BTreeSet<String>) {
    let mut text = String::from("0000000000000000000000000000000000000000\n");
    for h in hashes {
        text.push_str(h);
        text.push('\n');
    }
    let tmp = dir.join("whitelist.txt.new");
    fs::write(&tmp, text).expect("write whitelist");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod whitelist");
    fs::rename(&tmp, dir.join("whitelist.txt")).expect("rename whitelist");
}

fn pid_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists. A zombie still "exists", so also look at
    // its state in /proc.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn dict_get<'a>(v: &'a Value, key: &[u8]) -> Option<&'a Value> {
    match v {
        Value::Dict(d) => d.get(key),
        _ => None,
    }
}

/// A plain HTTP/1.0 GET to 127.0.0.1:`port`; returns the body of a 200 reply.
pub fn http_get(port: u16, path: &str) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no HTTP header end in {resp:?}")))?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!("HTTP error: {head}")));
    }
    Ok(resp[split + 4..].to_vec())
}
