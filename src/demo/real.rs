//! Real BitTorrent clients that join the demo's swarm as seeders (`--with`): aria2c,
//! libtorrent (Debian's `/usr/bin/python3` with `python3-libtorrent`, running the test suite's
//! `lt_seed.py`) and transmission-daemon. Each runs as a child process on 127.0.0.1 with its
//! files under the demo's `clients/<name>/`, announces to the demo's tracker, and is killed
//! when the demo ends, however it ends (on a panic or an early return too: `kill_on_drop`;
//! aria2c and the libtorrent script also exit by themselves when bt-trace is gone).
//!
//! The traps of each client are in /work/shared/interop.md and docs/testing.md: aria2c tries
//! an encrypted handshake first and then plaintext, Transmission never dials 127.x peers (so
//! the demo's downloader dials it: it learns its address from the tracker) and unchokes on its
//! 10 s rechoke. Owns only those child processes and their directories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

/// Debian's python3, which has the `libtorrent` module (another python3 may come first on PATH).
const PYTHON: &str = "/usr/bin/python3";

/// A real client the demo can start as a seeder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RealClient {
    Aria2,
    Libtorrent,
    Transmission,
}

impl FromStr for RealClient {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "aria2" | "aria2c" => Ok(RealClient::Aria2),
            "libtorrent" | "lt" => Ok(RealClient::Libtorrent),
            "transmission" => Ok(RealClient::Transmission),
            _ => Err(format!(
                "{s:?} is not a client the demo can start: aria2, libtorrent or transmission"
            )),
        }
    }
}

impl RealClient {
    /// The name used in `--with`, messages and directories.
    pub fn name(self) -> &'static str {
        match self {
            RealClient::Aria2 => "aria2",
            RealClient::Libtorrent => "libtorrent",
            RealClient::Transmission => "transmission",
        }
    }

    /// Fails with a message that says what to install unless the client can run here.
    /// Blocking (it may run python3): call it before the runtime starts.
    pub fn check_installed(self) -> Result<()> {
        let (missing, package) = match self {
            RealClient::Aria2 => (find_program("aria2c").is_none(), "aria2"),
            RealClient::Transmission => (
                find_program("transmission-daemon").is_none()
                    || find_program("transmission-remote").is_none(),
                "transmission-daemon transmission-cli",
            ),
            RealClient::Libtorrent => {
                let ok = std::process::Command::new(PYTHON)
                    .args(["-c", "import libtorrent"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                (!ok, "python3-libtorrent")
            }
        };
        if missing {
            bail!(
                "--with {}: {} is not installed (on Debian: apt-get install {package}); \
                 leave it out of --with to run the demo without it",
                self.name(),
                match self {
                    RealClient::Aria2 => "aria2c",
                    RealClient::Transmission => "transmission-daemon",
                    RealClient::Libtorrent => "python3-libtorrent (for /usr/bin/python3)",
                }
            );
        }
        Ok(())
    }
}

/// The first `name` on `PATH` that is a file.
fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// A running real seeder.
pub struct Running {
    pub client: RealClient,
    /// Where it accepts peers.
    pub addr: SocketAddr,
    /// Its output.
    pub log: PathBuf,
    child: Child,
}

impl Running {
    /// Fails when the process has already exited (its log says why).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!(
                "{} exited early ({status}); see {}",
                self.client.name(),
                self.log.display()
            );
        }
        Ok(())
    }

    /// Kills the process and waits for it to be gone (its sockets are closed then).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
    }
}

/// What a real seeder needs to know.
pub struct SeedJob<'a> {
    pub torrent: &'a Path,
    /// The directory that holds the torrent's top directory.
    pub data_parent: &'a Path,
    /// Its own directory (config, logs).
    pub dir: &'a Path,
    /// Where it listens for peers.
    pub port: u16,
}

/// Starts `client` seeding `job.torrent`; it announces to the torrent's tracker by itself.
pub async fn start(client: RealClient, job: &SeedJob<'_>) -> Result<Running> {
    std::fs::create_dir_all(job.dir).with_context(|| format!("creating {}", job.dir.display()))?;
    let log = job.dir.join(format!("{}.log", client.name()));
    let addr = SocketAddr::from(([127, 0, 0, 1], job.port));
    let mut cmd = match client {
        RealClient::Aria2 => aria2(job),
        RealClient::Libtorrent => libtorrent(job)?,
        RealClient::Transmission => transmission(job)?,
    };
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdout(out).stderr(err).kill_on_drop(true);
    if client == RealClient::Libtorrent {
        // lt_seed.py exits when its stdin closes: it never outlives bt-trace
        cmd.stdin(Stdio::piped());
    } else {
        cmd.stdin(Stdio::null());
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", client.name()))?;
    let mut running = Running {
        client,
        addr,
        log,
        child,
    };
    if client == RealClient::Transmission {
        add_to_transmission(&mut running, job).await?;
    }
    Ok(running)
}

fn aria2(job: &SeedJob<'_>) -> Command {
    let mut cmd = Command::new("aria2c");
    cmd.args([
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
        "--seed-ratio=0.0",
    ])
    .arg(format!("--listen-port={}", job.port))
    .arg(format!("--stop-with-process={}", std::process::id()))
    .arg(format!("--dir={}", job.data_parent.display()))
    .arg(job.torrent);
    cmd
}

/// The libtorrent seeder script and its helper, from the test suite (built into the binary so
/// an installed bt-trace needs no source tree).
const LT_SEED: &str = include_str!("../../tests/support/lt_seed.py");
const LT_COMMON: &str = include_str!("../../tests/support/lt_common.py");

fn libtorrent(job: &SeedJob<'_>) -> Result<Command> {
    for (name, text) in [("lt_seed.py", LT_SEED), ("lt_common.py", LT_COMMON)] {
        let p = job.dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let mut cmd = Command::new(PYTHON);
    cmd.arg(job.dir.join("lt_seed.py"))
        .arg("--port")
        .arg(job.port.to_string())
        .arg(format!(
            "{}={}",
            job.torrent.display(),
            job.data_parent.display()
        ));
    Ok(cmd)
}

/// Transmission's RPC port: the peer port + 1 (both picked free by the demo).
fn rpc_port(job: &SeedJob<'_>) -> u16 {
    job.port.wrapping_add(1)
}

fn transmission(job: &SeedJob<'_>) -> Result<Command> {
    let settings = serde_json::json!({
        "bind-address-ipv4": "127.0.0.1",
        "bind-address-ipv6": "::1",
        "peer-port": job.port,
        "peer-port-random-on-start": false,
        "port-forwarding-enabled": false,
        "dht-enabled": false,
        "lpd-enabled": false,
        "utp-enabled": false,
        "pex-enabled": false,
        "encryption": 0,
        "rpc-enabled": true,
        "rpc-bind-address": "127.0.0.1",
        "rpc-port": rpc_port(job),
        "rpc-authentication-required": false,
        "rpc-whitelist-enabled": false,
        "rpc-host-whitelist-enabled": false,
        "download-dir": job.dir.join("downloads"),
        "incomplete-dir-enabled": false,
        "watch-dir-enabled": false,
        "ratio-limit-enabled": false,
        "idle-seeding-limit-enabled": false,
        "start-added-torrents": true,
        "download-queue-enabled": false,
        "seed-queue-enabled": false,
        "queue-stalled-enabled": false,
        "message-level": 2,
    });
    let p = job.dir.join("settings.json");
    std::fs::write(&p, serde_json::to_string_pretty(&settings)?)
        .with_context(|| format!("writing {}", p.display()))?;
    let mut cmd = Command::new("transmission-daemon");
    cmd.arg("-f").arg("-g").arg(job.dir);
    Ok(cmd)
}

/// Waits for the daemon's RPC port, then adds the torrent with `transmission-remote`.
async fn add_to_transmission(t: &mut Running, job: &SeedJob<'_>) -> Result<()> {
    let rpc = SocketAddr::from(([127, 0, 0, 1], rpc_port(job)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(rpc).await.is_err() {
        t.check_alive()?;
        if tokio::time::Instant::now() > deadline {
            bail!(
                "transmission-daemon did not open its RPC port {rpc}; see {}",
                t.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let data_parent = std::path::absolute(job.data_parent)?;
    let torrent = std::path::absolute(job.torrent)?;
    let out = Command::new("transmission-remote")
        .arg(rpc.to_string())
        .arg("-a")
        .arg(&torrent)
        .arg("-w")
        .arg(&data_parent)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running transmission-remote")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("success") {
        bail!(
            "transmission-remote -a {}: {}{}",
            torrent.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for c in [
            RealClient::Aria2,
            RealClient::Libtorrent,
            RealClient::Transmission,
        ] {
            assert_eq!(c.name().parse::<RealClient>(), Ok(c));
        }
        assert_eq!("aria2c".parse::<RealClient>(), Ok(RealClient::Aria2));
        let e = "qbittorrent".parse::<RealClient>().expect_err("unknown");
        assert!(e.contains("aria2, libtorrent or transmission"), "{e}");
    }
}
