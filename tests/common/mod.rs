//! Test harness: real third-party BitTorrent programs on 127.0.0.1.
//!
//! The integration tests (`tests/it/`, one binary) declare it as `crate::common` and get:
//! - [`free_port`], [`temp_dir`] and [`ChildGuard`] (a process killed and reaped on drop, with
//!   readiness waits on a TCP port or a log line, always bounded by a timeout);
//! - deterministic data and torrents ([`data`]: `make_data`, `mktorrent`, `transmission_show`);
//! - opentracker, started once per test binary ([`tracker::Tracker::shared`]);
//! - seeders: aria2c, transmission-daemon and libtorrent ([`seeders`]), and an aria2c leecher;
//! - [`bt_trace`], which runs the binary under test with a timeout;
//! - [`programs`]: which programs are installed, and [`skip_unless_installed!`], the one rule for a
//!   test whose program is missing (skip with one line, or fail under `BT_TRACE_REQUIRE_ALL=1`).
//!
//! The programs and their traps are described in `docs/testing.md`. Timing never decides a test: every
//! wait below is a readiness wait with a generous bound, and a test fails only on wrong results.
#![allow(dead_code)] // a harness API: not every helper is used by the tests of the moment

pub mod data;
pub mod programs;
pub mod seeders;
pub mod tracker;

pub use data::*;
pub use programs::*;
pub use seeders::*;
pub use tracker::*;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// How long a program may take to become ready (listen, verify its data, announce). Generous: CI has
/// two cores shared by parallel tests.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Debian's python3, which has the `libtorrent` module (another python3 may come first on PATH).
pub const PYTHON: &str = "/usr/bin/python3";

/// A file in `tests/support/`.
pub fn support(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(file)
}

// ---------------------------------------------------------------------------------------------
// Ports and directories

/// Ports already handed out by this process, so parallel tests never get the same one.
static PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port that is free for both TCP and UDP on 127.0.0.1 right now and was never returned before by
/// this process. It is taken below the kernel's ephemeral range (`ip_local_port_range`), so an
/// outgoing connection of some other test cannot grab it between this check and the daemon's bind.
pub fn free_port() -> u16 {
    use rand::Rng;
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (lo, hi) = (10_000u16, ephemeral_low.max(10_001));
    let mut taken = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::thread_rng();
    for _ in 0..10_000 {
        let port = rng.gen_range(lo..hi);
        if taken.contains(&port) {
            continue;
        }
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port in {lo}..{hi}");
}

/// Every temp dir made by this process, removed again at exit: the shared daemons' dirs live in
/// `static`s, which are never dropped.
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_temp_dirs() {
    let dirs = TEMP_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    for d in dirs.iter() {
        let _ = fs::remove_dir_all(d);
    }
}

/// A fresh temporary directory, removed on drop and in any case when the test process exits. It is
/// world-readable (0755) because opentracker runs as `nobody` inside it. Set `BT_TEST_KEEP=1` to keep
/// every directory (logs!) for a look.
pub fn temp_dir(tag: &str) -> TempDir {
    static AT_EXIT: OnceLock<()> = OnceLock::new();
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("bt-trace-{tag}-"))
        .tempdir()
        .expect("create temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    if std::env::var_os("BT_TEST_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    } else {
        AT_EXIT.get_or_init(|| {
            // SAFETY: registers a plain extern "C" function; libtest exits through exit(3).
            unsafe { libc::atexit(remove_temp_dirs) };
        });
        TEMP_DIRS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir.path().to_path_buf());
    }
    dir
}

// ---------------------------------------------------------------------------------------------
// Processes

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that the kernel kills it (SIGKILL) when this test process dies, even by SIGKILL:
/// `PR_SET_PDEATHSIG`. That signal fires when the *thread* that forked the child exits, not the process,
/// and tests run on short-lived threads while the shared daemons live for the whole binary; so every
/// child is forked by one spawner thread that lives until the process exits.
/// (The kernel clears the setting when a child changes its user id: opentracker, see `tracker.rs`.)
pub fn spawn_tied(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                let parent = std::process::id() as libc::pid_t;
                for (mut cmd, reply) in rx {
                    // SAFETY: only async-signal-safe calls between fork and exec.
                    unsafe {
                        cmd.pre_exec(move || {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            if libc::getppid() != parent {
                                libc::_exit(1); // the test process is already gone
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("spawner thread gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("spawner thread gone"))?
}

/// A child process that is killed (SIGKILL) and reaped when this guard drops, also when a test panics.
/// Its stdout and stderr go to a log file, which readiness waits and failure messages read.
pub struct ChildGuard {
    pub name: String,
    child: Mutex<Child>,
    log: PathBuf,
}

impl ChildGuard {
    /// Starts `cmd` with stdin from /dev/null and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> ChildGuard {
        Self::spawn_inner(name, cmd, log, false).0
    }

    /// Like [`ChildGuard::spawn`] but with stdin a pipe: commands for the child, and its lifeline
    /// (our seeder scripts exit when stdin closes).
    pub fn spawn_with_stdin(name: &str, cmd: Command, log: &Path) -> (ChildGuard, ChildStdin) {
        let (guard, stdin) = Self::spawn_inner(name, cmd, log, true);
        (guard, stdin.expect("piped stdin"))
    }

    fn spawn_inner(
        name: &str,
        mut cmd: Command,
        log: &Path,
        piped_stdin: bool,
    ) -> (ChildGuard, Option<ChildStdin>) {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
        let err = out.try_clone().expect("dup log fd");
        cmd.stdout(out).stderr(err);
        cmd.stdin(if piped_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = spawn_tied(cmd).unwrap_or_else(|e| {
            panic!("{name}: cannot start {program}: {e} (is its Debian package installed? see .ci/run)")
        });
        let stdin = child.stdin.take();
        let guard = ChildGuard {
            name: name.to_string(),
            child: Mutex::new(child),
            log: log.to_path_buf(),
        };
        (guard, stdin)
    }

    /// Wraps an already started child (its output is wherever the caller sent it).
    pub fn adopt(name: &str, child: Child, log: &Path) -> ChildGuard {
        ChildGuard {
            name: name.to_string(),
            child: Mutex::new(child),
            log: log.to_path_buf(),
        }
    }

    pub fn id(&self) -> u32 {
        self.lock().id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log so far (lossy UTF-8).
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log_text(), 30)
    }

    /// `Some(exit status)` once the process has ended.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    /// Panics (with the log tail) if the process has ended.
    pub fn assert_running(&self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited early ({status}); log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
    }

    /// Polls `ready` every 50 ms until it returns true; panics if the process ends first or after
    /// `timeout`, quoting the log.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return;
            }
            self.assert_running();
            if Instant::now() > deadline {
                panic!(
                    "{}: not ready after {timeout:?}: {what}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until something accepts TCP connections on 127.0.0.1:`port`.
    pub fn wait_port(&self, port: u16) {
        self.wait_until(
            &format!("listening on 127.0.0.1:{port}"),
            READY_TIMEOUT,
            || port_open(port),
        );
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        self.wait_until(&format!("log line {needle:?}"), READY_TIMEOUT, || {
            self.log_text().contains(needle)
        });
    }

    /// Kills (SIGKILL) and reaps the process now; idempotent.
    pub fn kill(&self) {
        let mut child = self.lock();
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// Waits for the process to exit by itself, at most `timeout`; then kills it. Returns its status
    /// if it exited by itself.
    pub fn wait_exit(&self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True if a TCP connection to 127.0.0.1:`port` succeeds.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a short helper program (mktorrent, transmission-show, ...) to completion; panics with its
/// stderr if it cannot start or fails. Returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e} (is its Debian package installed?)"));
    if !out.status.success() {
        panic!(
            "{shown} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The binary under test

/// The bt-trace binary: `BT_TRACE_BIN` if set (e.g. `tests/support/ref_cli.py`, the reference
/// implementation the CLI tests were validated with), else the one cargo built for this test.
pub fn bt_trace_bin() -> PathBuf {
    match std::env::var_os("BT_TRACE_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_bt-trace")),
    }
}

/// A capture of the repository's `captures/` folder.
pub fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

/// Runs the bt-trace cargo built for these tests with `args`, stdin closed: its whole output.
pub fn bt_trace_output(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bt-trace"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run bt-trace")
}

/// `bt-trace analyze --json FILE`: its events, one per line (exit status 0 required).
pub fn analyze_json(file: &Path) -> Vec<bt_trace::event::Event> {
    let out = bt_trace_output(&["analyze", "--json", file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 JSON")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `bt-trace info --json FILE` (exit status 0 required).
pub fn info_json(torrent: &Path) -> serde_json::Value {
    let r = bt_trace(
        ["info".as_ref(), "--json".as_ref(), torrent.as_os_str()],
        Duration::from_secs(30),
    );
    r.assert_ok();
    serde_json::from_str(&r.stdout).expect("info --json")
}

/// What one run of bt-trace did.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    /// Exit code; `None` if killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl Run {
    /// Panics with everything known about the run unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.code == Some(0),
            "bt-trace {:?} failed: {}",
            self.args,
            self.describe()
        );
        self
    }

    /// Panics unless the run failed cleanly: non-zero exit, a message on stderr, no panic, no timeout.
    pub fn assert_clean_failure(&self) -> &Self {
        assert!(
            !self.timed_out,
            "bt-trace {:?} hung: {}",
            self.args,
            self.describe()
        );
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "bt-trace {:?} should fail with a non-zero exit: {}",
            self.args,
            self.describe()
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "bt-trace {:?} failed without a message on stderr: {}",
            self.args,
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "bt-trace {:?} panicked: {}",
            self.args,
            self.describe()
        );
        self
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?}{} after {:.1?}\n--- stdout:\n{}\n--- stderr (tail):\n{}",
            self.code,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
            tail(&self.stdout, 40),
            tail(&self.stderr, 40)
        )
    }

    pub fn stdout_lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

/// Runs bt-trace with `args`, killing it after `timeout`. Never panics on the run's own failure:
/// check the result with [`Run::assert_ok`] or [`Run::assert_clean_failure`].
pub fn bt_trace<I, S>(args: I, timeout: Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut cmd = Command::new(bt_trace_bin());
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    let start = Instant::now();
    let mut child = spawn_tied(cmd)
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bt_trace_bin().display()));
    let stdout = reader_thread(child.stdout.take().expect("piped stdout"));
    let stderr = reader_thread(child.stderr.take().expect("piped stderr"));
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    Run {
        args: shown,
        code: if timed_out { None } else { status.code() },
        stdout: String::from_utf8_lossy(&stdout.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
        timed_out,
        elapsed,
    }
}

/// Starts bt-trace in the background (for tests that kill it midway), output to `log`.
pub fn bt_trace_spawn<I, S>(args: I, log: &Path) -> ChildGuard
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bt_trace_bin());
    cmd.args(args).env("NO_COLOR", "1");
    ChildGuard::spawn("bt-trace", cmd, log)
}

fn reader_thread(mut r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Asserts that tshark finds no malformed frame and no error in `pcapng`, with `port`
/// dissected as BitTorrent.
pub fn assert_tshark_clean(pcapng: &Path, port: u16) {
    let bad = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcapng)
        .args(["-d", &format!("tcp.port=={port},bittorrent")])
        .args(["-Y", "_ws.malformed || _ws.expert.severity >= error"])
        .output()
        .expect("run tshark");
    assert!(
        String::from_utf8_lossy(&bad.stdout).trim().is_empty(),
        "malformed frames in {}:\n{}",
        pcapng.display(),
        String::from_utf8_lossy(&bad.stdout)
    );
}

/// tshark's BitTorrent frame numbers in `pcapng` (port `port` decoded as BitTorrent); panics
/// when tshark fails or complains about the file (a pcapng cut mid-packet makes it exit 2 with
/// "appears to have been cut short").
pub fn tshark_bittorrent_frames(pcapng: &Path, port: u16) -> Vec<String> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcapng)
        .args(["-d", &format!("tcp.port=={port},bittorrent")])
        .args(["-Y", "bittorrent", "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // (tshark notes it on stderr when run as root; that is no complaint about the file)
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Running as user"))
        .collect();
    assert!(
        out.status.success() && complaints.is_empty(),
        "tshark on {}: {:?} {stderr}",
        pcapng.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
