//! Real BitTorrent clients as seeders (and aria2c as a leecher), all on 127.0.0.1, plaintext, TCP only.
//!
//! - aria2c: one process per torrent, each on its own port (`Aria2::seed`).
//! - transmission-daemon: one daemon, torrents added over RPC with transmission-remote.
//! - libtorrent: one `tests/support/lt_seed.py` session, torrents added through its stdin.
//!
//! [`Swarm`] puts the three together and seeds torrents with any subset of them.

use super::*;
use std::ffi::OsString;
use std::io::Write;

/// The three real clients the tests use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    Aria2,
    Transmission,
    Libtorrent,
}

impl Client {
    pub const ALL: [Client; 3] = [Client::Aria2, Client::Transmission, Client::Libtorrent];

    /// How this client's peer ids start: aria2 `A2-1-36-0-`, Transmission `-TR3000-`, libtorrent
    /// `-LT2080-` (Azureus style).
    pub fn peer_id_prefix(self) -> &'static [u8] {
        match self {
            Client::Aria2 => b"A2-",
            Client::Transmission => b"-TR",
            Client::Libtorrent => b"-LT",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// aria2c

/// The aria2c options every test run uses (see docs/testing.md): loopback only, no DHT/LPD, plaintext
/// allowed, no preallocation, and stop when this test process goes away.
pub fn aria2_base_args(listen_port: u16, dir: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = [
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--bt-require-crypto=false",
        "--bt-min-crypto-level=plain",
        "--file-allocation=none",
        "--disable-ipv6=true",
        "--interface=127.0.0.1",
        "--check-integrity=true",
        "--summary-interval=0",
        "--console-log-level=notice",
        "--enable-color=false",
        "--auto-save-interval=0",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    v.push(format!("--listen-port={listen_port}").into());
    v.push(format!("--stop-with-process={}", std::process::id()).into());
    let mut d = OsString::from("--dir=");
    d.push(dir);
    v.push(d);
    v
}

/// One aria2c process seeding one torrent.
pub struct Aria2 {
    pub port: u16,
    pub child: ChildGuard,
}

impl Aria2 {
    /// Seeds `torrent` whose content is below `parent` (`parent/<name>`), with extra aria2c options
    /// (e.g. `--max-upload-limit=8M`). Returns once its data is verified and it listens; whitelist the
    /// torrent first, and use [`Tracker::wait_seeding`] to know it has announced.
    /// `--seed-ratio=0.0` alone means "seed forever" (no `--seed-time`).
    pub fn seed(torrent: &Torrent, parent: &Path, log_dir: &Path, extra: &[&str]) -> Aria2 {
        let port = free_port();
        let mut cmd = Command::new("aria2c");
        cmd.args(aria2_base_args(port, parent))
            .arg("--seed-ratio=0.0")
            .args(extra)
            .arg(&torrent.path);
        let log = log_dir.join(format!("aria2-seed-{}-{port}.log", &torrent.info_hash[..8]));
        let child = ChildGuard::spawn("aria2c seeder", cmd, &log);
        // aria2 opens its listening socket only after checking the data.
        child.wait_port(port);
        Aria2 { port, child }
    }
}

/// Downloads `torrent` with aria2c into `dir` (content ends up at `dir/<name>`) and waits for it to
/// finish (`--seed-time=0`: exit right after). Panics if it fails or takes longer than `timeout`.
pub fn aria2_download(torrent: &Path, dir: &Path, log_dir: &Path, timeout: Duration) {
    let port = free_port();
    let mut cmd = Command::new("aria2c");
    cmd.args(aria2_base_args(port, dir))
        .arg("--seed-time=0")
        .arg(torrent);
    let log = log_dir.join(format!("aria2-leech-{port}.log"));
    let child = ChildGuard::spawn("aria2c leecher", cmd, &log);
    match child.wait_exit(timeout) {
        Some(s) if s.success() => {}
        other => panic!(
            "aria2c download failed ({other:?}; None = timed out after {timeout:?}); log:\n{}",
            child.log_tail()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// transmission-daemon

/// One transmission-daemon, foreground (`-f`), config in its own directory (`-g`).
///
/// Transmission 3.00 keeps at most ONE connection per (torrent, peer IP address) and refuses a new
/// incoming connection while another handshake from the same IP is in progress (any torrent). On
/// loopback every client is 127.0.0.1, so tests that need Transmission alone must not overlap on the
/// same daemon: give them their own daemon and serialize them.
pub struct Transmission {
    pub peer_port: u16,
    pub rpc_port: u16,
    dir: TempDir,
    pub child: ChildGuard,
}

impl Transmission {
    /// Starts a daemon; `upload_limit_kbps` caps its upload rate (kB/s) if given.
    pub fn start(upload_limit_kbps: Option<u32>) -> Transmission {
        let dir = temp_dir("transmission");
        let peer_port = free_port();
        let rpc_port = free_port();
        let settings = serde_json::json!({
            "bind-address-ipv4": "127.0.0.1",
            "bind-address-ipv6": "::1",
            "peer-port": peer_port,
            "peer-port-random-on-start": false,
            "port-forwarding-enabled": false,
            "dht-enabled": false,
            "lpd-enabled": false,
            "utp-enabled": false,
            "pex-enabled": false,
            "encryption": 0, // prefer plaintext, accept both
            "rpc-enabled": true,
            "rpc-bind-address": "127.0.0.1",
            "rpc-port": rpc_port,
            "rpc-authentication-required": false,
            "rpc-whitelist-enabled": false,
            "rpc-host-whitelist-enabled": false,
            "download-dir": dir.path().join("downloads"),
            "incomplete-dir-enabled": false,
            "watch-dir-enabled": false,
            "ratio-limit-enabled": false,
            "idle-seeding-limit-enabled": false,
            "speed-limit-up-enabled": upload_limit_kbps.is_some(),
            "speed-limit-up": upload_limit_kbps.unwrap_or(100),
            "blocklist-enabled": false,
            "start-added-torrents": true,
            "download-queue-enabled": false,
            "seed-queue-enabled": false,
            "queue-stalled-enabled": false,
            "peer-limit-global": 500,
            "peer-limit-per-torrent": 100,
            "message-level": 2,
        });
        fs::write(
            dir.path().join("settings.json"),
            serde_json::to_string_pretty(&settings).expect("json"),
        )
        .expect("write settings.json");
        let mut cmd = Command::new("transmission-daemon");
        cmd.arg("-f").arg("-g").arg(dir.path());
        let log = dir.path().join("daemon.log");
        let child = ChildGuard::spawn("transmission-daemon", cmd, &log);
        child.wait_port(rpc_port);
        child.wait_port(peer_port);
        Transmission {
            peer_port,
            rpc_port,
            dir,
            child,
        }
    }

    /// Runs `transmission-remote 127.0.0.1:RPC args...`; panics on failure.
    pub fn remote(&self, args: &[&OsStr]) -> String {
        self.child.assert_running();
        run_ok(
            Command::new("transmission-remote")
                .arg(format!("127.0.0.1:{}", self.rpc_port))
                .args(args),
        )
    }

    /// Adds `torrent` with its content below `parent` (absolute). It verifies the data, then seeds.
    pub fn add(&self, torrent: &Torrent, parent: &Path) {
        assert!(parent.is_absolute(), "transmission needs an absolute -w");
        let out = self.remote(&[
            OsStr::new("-a"),
            torrent.path.as_os_str(),
            OsStr::new("-w"),
            parent.as_os_str(),
        ]);
        assert!(out.contains("success"), "transmission-remote -a: {out}");
    }

    /// Waits until the torrent is verified and complete. transmission-remote shows a seeding torrent
    /// without peers as `State: Idle`, so look at `Percent Done` and the verified amount instead.
    pub fn wait_complete(&self, torrent: &Torrent) {
        let ih = torrent.info_hash.clone();
        self.child.wait_until(
            &format!("transmission verified {}", torrent.name),
            READY_TIMEOUT,
            || {
                let info = self.remote(&[OsStr::new("-t"), OsStr::new(&ih), OsStr::new("-i")]);
                let state = info
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("State: "))
                    .unwrap_or("");
                info.contains("Percent Done: 100%")
                    && !state.contains("Verif")
                    && !state.contains("Queued")
                    && !state.contains("Stopped")
            },
        );
    }

    /// Waits until Transmission lists no connected peer for the torrent. It drops a closed connection
    /// from its list only at its next pulse (~0.5 s later), and until then refuses a new connection
    /// from the same IP; call this before connecting to it alone.
    pub fn wait_no_peers(&self, torrent: &Torrent) {
        let ih = torrent.info_hash.clone();
        self.child.wait_until(
            &format!("no peers connected to transmission for {}", torrent.name),
            READY_TIMEOUT,
            || {
                self.remote(&[OsStr::new("-t"), OsStr::new(&ih), OsStr::new("-i")])
                    .contains("Peers: connected to 0,")
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// libtorrent (tests/support/lt_seed.py)

/// One libtorrent session seeding any number of torrents on one port.
pub struct LtSeeder {
    pub port: u16,
    pub child: ChildGuard,
    stdin: Mutex<ChildStdin>,
    _dir: TempDir,
}

impl LtSeeder {
    /// Starts the session; `upload_limit` caps its upload rate in bytes/s if given.
    pub fn start(upload_limit: Option<u64>) -> LtSeeder {
        let dir = temp_dir("libtorrent");
        let port = free_port();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(support("lt_seed.py"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--upload-limit")
            .arg(upload_limit.unwrap_or(0).to_string())
            .env("PYTHONUNBUFFERED", "1");
        let log = dir.path().join("lt_seed.log");
        let (child, stdin) = ChildGuard::spawn_with_stdin("libtorrent seeder", cmd, &log);
        child.wait_log(&format!("listening {port}"));
        LtSeeder {
            port,
            child,
            stdin: Mutex::new(stdin),
            _dir: dir,
        }
    }

    /// Adds `torrent` with its content below `parent`; it checks the data, then seeds.
    pub fn add(&self, torrent: &Torrent, parent: &Path) {
        let line = format!("add {} {}\n", torrent.path.display(), parent.display());
        assert!(
            !torrent.path.to_string_lossy().contains(' '),
            "lt_seed.py takes paths without spaces"
        );
        let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("lt_seed.py stdin: {e}\n{}", self.child.log_tail()));
    }

    /// Waits until the session reports the torrent seeding (it then announces at once).
    pub fn wait_seeding(&self, torrent: &Torrent) {
        let want = format!("seeding {}", torrent.info_hash);
        self.child
            .wait_until(&format!("log line {want:?}"), READY_TIMEOUT, || {
                let log = self.child.log_text();
                // Fail fast on a torrent that does not check out (wrong data, bad path).
                if let Some(err) = log.lines().find(|l| l.starts_with("error")) {
                    panic!("libtorrent seeder: {err}\n{}", self.child.log_tail());
                }
                log.contains(&want)
            });
    }
}

// ---------------------------------------------------------------------------------------------
// A swarm of all three

/// A tracker plus one transmission-daemon and one libtorrent session, and aria2c processes started
/// per torrent. Everything is killed when it drops (or when the test process exits).
pub struct Swarm {
    pub tracker: &'static Tracker,
    pub transmission: Transmission,
    pub lt: LtSeeder,
    pub aria2: Mutex<Vec<Aria2>>,
    pub logs: TempDir,
}

/// Who seeds one torrent, and on which port.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    pub ports: Vec<(Client, u16)>,
}

impl Seeded {
    pub fn port(&self, client: Client) -> u16 {
        self.ports
            .iter()
            .find(|(c, _)| *c == client)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("{client:?} does not seed this torrent"))
    }
}

impl Swarm {
    /// Starts transmission-daemon and the libtorrent session (`tracker` is usually `Tracker::shared()`).
    pub fn start(tracker: &'static Tracker) -> Swarm {
        Swarm::start_limited(tracker, None)
    }

    /// Same, with transmission's and libtorrent's upload capped at `upload_limit` bytes/s.
    pub fn start_limited(tracker: &'static Tracker, upload_limit: Option<u64>) -> Swarm {
        let lt = LtSeeder::start(upload_limit);
        let transmission = Transmission::start(upload_limit.map(|b| (b / 1000).max(1) as u32));
        Swarm {
            tracker,
            transmission,
            lt,
            aria2: Mutex::new(Vec::new()),
            logs: temp_dir("swarm-logs"),
        }
    }

    /// Seeds each `(torrent, parent of its content, clients)`: whitelists them all at the tracker,
    /// starts the clients, and returns once the tracker counts every seeder. Returns the seeders'
    /// ports, one `Seeded` per item.
    pub fn seed(&self, items: &[(&Torrent, &Path, &[Client])]) -> Vec<Seeded> {
        self.seed_using(&self.transmission, items)
    }

    /// Like [`Swarm::seed`], with `transmission` (e.g. a second daemon) doing Transmission's part.
    pub fn seed_using(
        &self,
        transmission: &Transmission,
        items: &[(&Torrent, &Path, &[Client])],
    ) -> Vec<Seeded> {
        let hashes: Vec<&str> = items.iter().map(|(t, _, _)| t.info_hash.as_str()).collect();
        self.tracker.allow(&hashes);
        let mut out = Vec::new();
        for (torrent, parent, clients) in items {
            let mut seeded = Seeded::default();
            for client in *clients {
                match client {
                    Client::Aria2 => {
                        let a = Aria2::seed(torrent, parent, self.logs.path(), &[]);
                        seeded.ports.push((Client::Aria2, a.port));
                        self.aria2.lock().unwrap_or_else(|e| e.into_inner()).push(a);
                    }
                    Client::Transmission => {
                        transmission.add(torrent, parent);
                        seeded
                            .ports
                            .push((Client::Transmission, transmission.peer_port));
                    }
                    Client::Libtorrent => {
                        self.lt.add(torrent, parent);
                        seeded.ports.push((Client::Libtorrent, self.lt.port));
                    }
                }
            }
            out.push(seeded);
        }
        for (torrent, _, clients) in items {
            if clients.contains(&Client::Transmission) {
                transmission.wait_complete(torrent);
            }
            if clients.contains(&Client::Libtorrent) {
                self.lt.wait_seeding(torrent);
            }
            self.tracker
                .wait_seeding(&torrent.info_hash, clients.len() as i64);
        }
        out
    }
}
