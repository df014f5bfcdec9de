//! `bt-trace demo`: the classroom swarm, on 127.0.0.1 only and with nothing outside
//! bt-trace. It starts the built-in tracker in-process, makes deterministic content
//! ([`content`]), creates its torrent, starts bt-trace seeders in-process (the code of
//! `bt-trace seed`, each with its own port and peer id) and real clients when asked
//! ([`real`]), runs a traced download (the code of `download --trace`, or of
//! `magnet_download` with `--magnet`), and then shows a table per peer computed from the
//! trace ([`report`]). See docs/demo.md.
//!
//! The command layer (`cli/dispatch.rs`) runs it in two steps: [`prepare`] (blocking: checks
//! the output directory, the tracker's port and the real clients, writes the content and the
//! torrent) before the runtime, then [`run`] inside `networked`, which owns the runtime,
//! the signals and the trace. Everything the demo writes is under `--out DIR`; it never
//! replaces an earlier run without `--force`, and with `--force` it removes only the entries
//! it makes itself. Every task and child process it starts ends before [`run`] returns.
//!
//! Everything the downloader does reaches the trace through `ClientConfig::conn_observer` and
//! `tracker_observer`, set by `networked`; `--live` and `--report` observe the recorder's
//! events there, and need nothing else from this module.
//!
//! `--reproducible` ([`reproducible`]) fixes what varies from run to run: peer ids, ports,
//! the clock and the order of the connections, and which seeder gives which piece.

pub mod content;
pub mod real;
pub mod report;
pub mod reproducible;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::client::{self, ClientConfig};
use crate::download::Summary;
use crate::magnet::Magnet;
use crate::tracker::server::{ServerConfig, Tracker, TrackerHandle};

pub use content::Content;
pub use real::RealClient;

/// The default `--out`.
pub const DEFAULT_OUT: &str = "bt-trace-demo";
/// The default `--size`.
pub const DEFAULT_SIZE: u64 = 4 * 1024 * 1024;
/// The default `--seeders`.
pub const DEFAULT_SEEDERS: usize = 3;
/// The default `--port`: the tracker's (HTTP and UDP).
pub const DEFAULT_PORT: u16 = 6969;

/// How long seeders may take to check their data and announce.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long stopping seeders and clients may take at the end.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The entries of the output directory that the demo makes (and `--force` removes).
const ENTRIES: [&str; 5] = ["data", "download", "trace", "clients", "classroom.torrent"];

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub out: PathBuf,
    pub force: bool,
    /// Approximate bytes of content.
    pub size: u64,
    /// bt-trace seeders started in-process.
    pub seeders: usize,
    /// The tracker's port (HTTP and UDP), on 127.0.0.1.
    pub port: u16,
    /// Real clients that join as seeders.
    pub with: Vec<RealClient>,
    /// Start the download from a magnet link.
    pub magnet: bool,
    pub reproducible: bool,
    /// No progress lines on stderr.
    pub quiet: bool,
}

/// Everything made before the runtime starts.
pub struct Plan {
    pub opts: DemoOptions,
    pub content: Content,
    /// Where the download goes (the torrent's directory is created inside).
    pub download_dir: PathBuf,
    /// Where the trace goes.
    pub trace_dir: PathBuf,
    /// The downloader's listening port.
    pub downloader_port: u16,
    /// The magnet link (with `--magnet`).
    pub magnet: Option<String>,
}

impl Plan {
    /// The tracker's address.
    pub fn tracker_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.opts.port))
    }

    /// The port of in-process seeder `i` (0-based), fixed in reproducible mode (0: any).
    fn seeder_port(&self, i: usize) -> u16 {
        if self.opts.reproducible {
            reproducible::seeder_port(self.opts.port, i)
        } else {
            0
        }
    }
}

/// Checks everything that can be checked before anything is written (the output directory,
/// the tracker's port, the real clients), then writes the content and its torrent.
/// Blocking: run it before the runtime.
pub fn prepare(mut opts: DemoOptions) -> Result<Plan> {
    if opts.port == 0 {
        if opts.reproducible {
            bail!("--reproducible needs a fixed tracker port: leave out --port 0");
        }
        // the torrent names the tracker's port: pick it now, free for TCP and UDP
        opts.port = (0..100)
            .find_map(|_| {
                free_port(false)
                    .ok()
                    .filter(|&p| check_port_free(p).is_ok())
            })
            .ok_or_else(|| anyhow::anyhow!("found no free port on 127.0.0.1"))?;
    }
    if opts.seeders == 0 && opts.with.is_empty() {
        bail!("the demo needs at least one seeder: --seeders 1 or more, or --with a client");
    }
    if opts.reproducible && (!opts.with.is_empty() || opts.magnet) {
        bail!(
            "--reproducible runs bt-trace seeders from the .torrent: leave out --with and --magnet"
        );
    }
    for c in &opts.with {
        c.check_installed()?;
    }
    check_port_free(opts.port)?;
    let downloader_port = if opts.reproducible {
        let p = reproducible::downloader_port(opts.port, opts.seeders);
        for i in 0..opts.seeders {
            check_fixed_port(reproducible::seeder_port(opts.port, i), opts.port)?;
        }
        check_fixed_port(p, opts.port)?;
        p
    } else {
        free_port(false)?
    };
    clear_out(&opts.out, opts.force)?;
    let announce = format!(
        "http://{}/announce",
        SocketAddr::from(([127, 0, 0, 1], opts.port))
    );
    let content = content::make(
        &opts.out.join("data"),
        &opts.out.join("classroom.torrent"),
        opts.size,
        &announce,
    )?;
    let magnet = opts
        .magnet
        .then(|| Magnet::from_torrent(&content.torrent).to_uri());
    Ok(Plan {
        download_dir: opts.out.join("download"),
        trace_dir: opts.out.join("trace"),
        downloader_port,
        magnet,
        content,
        opts,
    })
}

/// The error for a tracker port that is taken.
fn port_taken(port: u16, e: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "port {port} on 127.0.0.1 is taken ({e}): the demo's tracker needs it for HTTP and UDP; \
         choose another one with --port"
    )
}

/// The tracker's port must be free for TCP and UDP.
fn check_port_free(port: u16) -> Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    std::net::TcpListener::bind(addr).map_err(|e| port_taken(port, &e))?;
    std::net::UdpSocket::bind(addr).map_err(|e| port_taken(port, &e))?;
    Ok(())
}

/// A fixed port of the reproducible swarm must be free.
fn check_fixed_port(port: u16, tracker: u16) -> Result<()> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| {
        anyhow::anyhow!(
            "port {port} on 127.0.0.1 is taken ({e}): --reproducible uses the ports after the \
             tracker's ({tracker}); choose another one with --port"
        )
    })?;
    Ok(())
}

/// A port that is free on 127.0.0.1 now (with `pair`, the next one too).
fn free_port(pair: bool) -> Result<u16> {
    for _ in 0..100 {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let p = l.local_addr()?.port();
        if !pair || std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p.wrapping_add(1))).is_ok() {
            return Ok(p);
        }
    }
    bail!("found no free port on 127.0.0.1")
}

/// An earlier run is never replaced without `force`; with it, only the demo's own entries go.
fn clear_out(out: &Path, force: bool) -> Result<()> {
    let used = std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some());
    if used && !force {
        bail!(
            "{} is not empty (an earlier demo run?): use --force to replace the demo's files in \
             it, or --out to choose another directory",
            out.display()
        );
    }
    for entry in ENTRIES {
        let p = out.join(entry);
        let r = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(_) => continue,
        };
        r.with_context(|| format!("removing {}", p.display()))?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    Ok(())
}

/// A peer the demo started, for the table.
#[derive(Debug, Clone)]
pub struct Started {
    pub addr: SocketAddr,
    pub label: String,
}

/// What [`run`] did.
pub struct Outcome {
    pub summary: Summary,
    pub peers: Vec<Started>,
    /// Seconds from the tracker's start to the end of the download.
    pub elapsed: Duration,
}

/// Prints a progress line on stderr unless quiet.
fn say(plan: &Plan, line: impl std::fmt::Display) {
    if !plan.opts.quiet {
        eprintln!("demo: {line}");
    }
}

/// The running swarm: tracker, seeders and real clients. [`Swarm::stop`] ends them in order
/// (seeders first, so their `stopped` announces reach the tracker); dropping it without
/// `stop` (a panic, Ctrl-C's second signal) still cancels every task and kills every child.
struct Swarm {
    cancel: CancellationToken,
    tracker: TrackerHandle,
    tracker_task: Option<JoinHandle<()>>,
    seeders: Vec<(String, JoinHandle<Result<Summary>>)>,
    clients: Vec<real::Running>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.tracker.stop();
    }
}

impl Swarm {
    async fn stop(mut self) {
        self.cancel.cancel();
        for (_, task) in self.seeders.drain(..) {
            let _ = tokio::time::timeout(STOP_TIMEOUT, task).await;
        }
        for c in self.clients.drain(..) {
            c.stop().await;
        }
        self.tracker.stop();
        if let Some(t) = self.tracker_task.take() {
            let _ = tokio::time::timeout(STOP_TIMEOUT, t).await;
        }
    }

    /// Fails when a seeder or a client has already stopped.
    fn check_alive(&mut self) -> Result<()> {
        for (name, task) in &self.seeders {
            if task.is_finished() {
                bail!("{name} stopped before the download began");
            }
        }
        for c in &mut self.clients {
            c.check_alive()?;
        }
        Ok(())
    }
}

/// Runs the swarm and the traced download. `cfg` is the downloader's (with the trace's
/// observers and the cancellation token of Ctrl-C).
pub async fn run(plan: &Plan, mut cfg: ClientConfig) -> Result<Outcome> {
    let started = Instant::now();
    let torrent = &plan.content.torrent;
    let cancel = cfg.cancel.child_token();
    let tracker_cfg = ServerConfig::default();
    let (tracker, tracker_task) = Tracker::start(tracker_cfg, plan.tracker_addr(), cancel.clone())
        .await
        .map_err(|e| port_taken(plan.opts.port, &e))?;
    say(
        plan,
        format!(
            "tracker on {} and {}",
            tracker.http_url(),
            tracker.udp_url()
        ),
    );
    say(
        plan,
        format!(
            "content: {} ({} files, {:.1} MiB in {} pieces of {} KiB; info hash {})",
            plan.content.dir.display(),
            torrent.info.files.len().max(1),
            torrent.info.total_length as f64 / 1048576.0,
            torrent.info.num_pieces(),
            torrent.info.piece_length / 1024,
            torrent.info_hash_hex()
        ),
    );
    let mut swarm = Swarm {
        cancel,
        tracker,
        tracker_task: Some(tracker_task),
        seeders: Vec::new(),
        clients: Vec::new(),
    };
    let mut peers = Vec::new();
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for i in 0..plan.opts.seeders {
        let mut scfg = ClientConfig {
            peer_id: reproducible::seeder_peer_id(i, plan.opts.reproducible),
            port: plan.seeder_port(i),
            listen_ip: localhost,
            cancel: swarm.cancel.clone(),
            ..Default::default()
        };
        // a seeder that cannot bind its port would pick another: find out which it got
        let listener = std::net::TcpListener::bind((localhost, scfg.port))
            .with_context(|| format!("listening for seeder {}", i + 1))?;
        scfg.port = listener.local_addr()?.port();
        drop(listener);
        let label = format!("bt-trace seeder {}", i + 1);
        peers.push(Started {
            addr: SocketAddr::new(localhost, scfg.port),
            label: label.clone(),
        });
        let (t, data) = (torrent.clone(), plan.content.dir.clone());
        let task =
            tokio::spawn(async move { client::seed(&t, &data, &scfg, Arc::new(|_, _| {})).await });
        swarm.seeders.push((label, task));
    }
    for &c in &plan.opts.with {
        let port = free_port(c == RealClient::Transmission)?;
        let dir = plan.opts.out.join("clients").join(c.name());
        let job = real::SeedJob {
            torrent: &plan.content.torrent_path,
            data_parent: plan.content.dir.parent().unwrap_or(Path::new(".")),
            dir: &dir,
            port,
        };
        let running = real::start(c, &job).await?;
        say(
            plan,
            format!("{} started, its log: {}", c.name(), running.log.display()),
        );
        peers.push(Started {
            addr: running.addr,
            label: c.name().to_string(),
        });
        swarm.clients.push(running);
    }
    let seeders = peers.len();
    say(
        plan,
        format!(
            "{seeders} seeder(s): {}",
            peers
                .iter()
                .map(|p| format!("{} on {}", p.label, p.addr))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let result = async {
        wait_for_seeders(&mut swarm, torrent.info_hash, seeders, &cfg.cancel).await?;
        cfg.listen_ip = localhost;
        cfg.port = plan.downloader_port;
        cfg.peer_id = reproducible::downloader_peer_id(plan.opts.reproducible);
        let out = plan.download_dir.join(content::NAME);
        match &plan.magnet {
            Some(link) => {
                say(plan, format!("downloading from the magnet link {link}"));
                let m = Magnet::parse(link).context("parsing the demo's magnet link")?;
                client::magnet_download(&m, &out, &cfg)
                    .await
                    .map(|(_, s)| s)
            }
            None => {
                say(
                    plan,
                    format!("downloading {}", plan.content.torrent_path.display()),
                );
                if plan.opts.reproducible {
                    reproducible::download(plan, &out, &cfg, &peers).await
                } else {
                    client::download(torrent, &out, &cfg).await
                }
            }
        }
    }
    .await;
    swarm.stop().await;
    Ok(Outcome {
        summary: result?,
        peers,
        elapsed: started.elapsed(),
    })
}

/// Waits until `n` seeders of `info_hash` have announced to the tracker.
async fn wait_for_seeders(
    swarm: &mut Swarm,
    info_hash: [u8; 20],
    n: usize,
    stop: &CancellationToken,
) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let seen = swarm.tracker.scrape(&info_hash).complete as usize;
        if seen >= n {
            return Ok(());
        }
        swarm.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "only {seen} of {n} seeders announced to the tracker within {} s",
                READY_TIMEOUT.as_secs()
            );
        }
        tokio::select! {
            _ = stop.cancelled() => bail!("stopped while the seeders were starting"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}
