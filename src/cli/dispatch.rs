//! One dispatch for every command ([`run`]), and [`networked`]: the one place where a command
//! that talks to trackers and peers gets its client settings, its trace, an async runtime and
//! its signal handling, and where the trace is finished on every way out.
//!
//! Ctrl-C (SIGINT), SIGTERM and SIGHUP all end a networked command the same way: the client's
//! cancellation token fires, a download stops (verified pieces stay on disk, `stopped` goes to
//! the tracker), the other commands are dropped, the runtime shuts down (every open connection
//! records its close), the trace files are flushed and closed, and the error is
//! [`Interrupted`] (exit status 130). The handlers are installed before the trace starts, so
//! no signal can leave a half-written pcapng. Here only commands are sequenced; what they print
//! is [`super::output`]'s, and what they do is the library's (`client`).

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use super::args::{
    Cli, Command, CreateArgs, DemoArgs, NetArgs, PeerAddr, PeersArg, TraceArgs, TrackerArgs,
};
use super::{
    analyze, check_dir, check_parent, ladder, output, read_magnet, read_torrent, Interrupted,
};
use crate::bencode::{self, Value};
use crate::client::{self, ClientConfig};
use crate::download::Summary;
use crate::magnet::Magnet;
use crate::trace::{EventObserver, Recorder, RecorderOptions, TraceStats};
use crate::view::live::LiveLadder;
use crate::view::report::ReportBuilder;
use crate::wire::Reserved;

/// How long a command that watches the cancellation token may take to stop after a signal: a
/// download lets its sessions finish their step (2 s) and tells the tracker `stopped` (3 s).
const STOP_GRACE: Duration = Duration::from_secs(6);

/// How long the runtime's shutdown waits for tasks that are still running.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one parsed command line; results go to `out`, diagnostics to stderr.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<()> {
    match cli.command {
        Command::Decode {
            bencoded,
            file,
            hex,
        } => decode(bencoded.as_deref(), file.as_deref(), hex, out)?,
        Command::Encode { json } => {
            let j: serde_json::Value = serde_json::from_str(&json).context("reading the JSON")?;
            let v = Value::from_json(&j)
                .map_err(anyhow::Error::msg)
                .context("converting JSON to bencode")?;
            out.write_all(&v.encode())?;
        }
        Command::Info { torrent, json } => {
            let t = read_torrent(&torrent)?;
            if json.json {
                output::write_json(out, &output::info_json(&t))?;
            } else {
                output::write_info(out, &t)?;
                output::write_files(out, &t)?;
                output::write_v2(out, &t)?;
                output::write_tiers(out, &t)?;
            }
        }
        Command::MagnetParse { link, json } => {
            let m = read_magnet(&link)?;
            if json.json {
                output::write_json(out, &output::magnet_json(&m))?;
            } else {
                output::write_magnet(out, &m)?;
            }
        }
        Command::Peers {
            torrent,
            port,
            trace,
        } => {
            let t = &read_torrent(&torrent)?;
            let net = Net::lookup(&PeersArg::default(), port.port, trace);
            let peers = networked(&net, "peers", &t.info.name, Stop::Drop, |cfg| async move {
                client::peers(t, &cfg).await
            })?;
            output::write_peers(out, &peers)?;
        }
        Command::Handshake {
            torrent,
            peer,
            port,
            trace,
        } => {
            let t = &read_torrent(&torrent)?;
            let net = Net::lookup(&PeersArg::default(), port, trace);
            let peer = &peer;
            let h = networked(
                &net,
                "handshake",
                &t.info.name,
                Stop::Drop,
                |cfg| async move { handshake(peer, t.info_hash, &cfg).await },
            )?;
            output::write_peer_id(out, &h.peer_id)?;
        }
        Command::DownloadPiece {
            output: o,
            torrent,
            index,
            net,
        } => {
            let net = Net::from(net);
            let t = &read_torrent(&torrent)?;
            piece_in_range(t, index)?;
            let path = output_path(&o.output, false)?;
            let s = networked(
                &net,
                "download_piece",
                &t.info.name,
                Stop::Cancel,
                |cfg| async move { client::download_piece(t, index, path, &cfg).await },
            )?;
            check_download(&s, &net)?;
            output::write_piece_done(out, index, path)?;
        }
        Command::Download {
            output: o,
            torrent,
            seed,
            slots,
            net,
        } => {
            let net = Net::from(net);
            let t = &read_torrent(&torrent)?;
            let path = output_path(&o.output, t.info.multi_file)?;
            let s = networked(
                &net,
                "download",
                &t.info.name,
                Stop::Cancel,
                |mut cfg| async move {
                    cfg.seed = seed;
                    cfg.upload_slots = slots.upload_slots;
                    client::download(t, path, &cfg).await
                },
            )?;
            if seed && s.complete {
                // Ctrl-C is how seeding ends: not an interruption of the download
                if !net.quiet {
                    eprintln!("{}", output::download_report(&s));
                    eprintln!("{}", output::seed_report(&s));
                }
            } else {
                check_download(&s, &net)?;
            }
            output::write_download_done(out, &torrent.display().to_string(), path)?;
        }
        Command::Seed {
            torrent,
            data,
            slots,
            net,
        } => {
            let net = Net::from(net);
            let t = &read_torrent(&torrent)?;
            let data = &data;
            let s = networked(&net, "seed", &t.info.name, Stop::Cancel, |mut cfg| {
                cfg.upload_slots = slots.upload_slots;
                let checked =
                    Arc::new(|v: u32, n: u32| eprintln!("{}", output::seed_checked(v, n)));
                async move { client::seed(t, data, &cfg, checked).await }
            })?;
            if !net.quiet {
                eprintln!("{}", output::seed_report(&s));
            }
        }
        Command::MagnetHandshake {
            link,
            peers,
            port,
            trace,
        } => {
            let net = Net::lookup(&peers, port.port, trace);
            let m = &read_magnet(&link)?;
            let name = magnet_name(m);
            let p = networked(
                &net,
                "magnet_handshake",
                &name,
                Stop::Drop,
                |cfg| async move { client::magnet_handshake(m, &cfg).await },
            )?;
            // magnet_handshake only returns peers that announced ut_metadata
            let id = p.ut_metadata_id().unwrap_or(0);
            output::write_magnet_handshake(out, &p.handshake.peer_id, id)?;
        }
        Command::MagnetInfo {
            link,
            peers,
            port,
            trace,
        } => {
            let net = Net::lookup(&peers, port.port, trace);
            let m = &read_magnet(&link)?;
            let name = magnet_name(m);
            let (t, _) = networked(&net, "magnet_info", &name, Stop::Drop, |cfg| async move {
                client::magnet_info(m, &cfg).await
            })?;
            // the `info` lines; the tracker tiers are the link's `tr`, not shown again
            output::write_info(out, &t)?;
            output::write_files(out, &t)?;
            output::write_v2(out, &t)?;
        }
        Command::MagnetDownloadPiece {
            output: o,
            link,
            index,
            net,
        } => {
            let net = Net::from(net);
            let m = &read_magnet(&link)?;
            let name = magnet_name(m);
            let path = output_path(&o.output, false)?;
            let (_, s) = networked(
                &net,
                "magnet_download_piece",
                &name,
                Stop::Cancel,
                |cfg| async move { client::magnet_download_piece(m, index, path, &cfg).await },
            )?;
            check_download(&s, &net)?;
            output::write_piece_done(out, index, path)?;
        }
        Command::MagnetDownload {
            output: o,
            link,
            net,
        } => {
            let net = Net::from(net);
            let m = &read_magnet(&link)?;
            let name = magnet_name(m);
            let path = output_path(&o.output, false)?;
            let (t, s) = networked(
                &net,
                "magnet_download",
                &name,
                Stop::Cancel,
                |cfg| async move { client::magnet_download(m, path, &cfg).await },
            )?;
            check_download(&s, &net)?;
            output::write_download_done(out, &t.info.name, path)?;
        }
        Command::Analyze(args) => analyze::run(&args, out)?,
        Command::Ladder(a) => ladder::run(&a.files, &a.conns, &a.types, a.style, out)?,
        Command::Create(args) => create(&args, out)?,
        Command::Tracker(args) => tracker(&args)?,
        Command::Demo(args) => demo(&args, out)?,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "bt-trace", out);
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command()).render(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `decode`: the argument as the course has it (one line of JSON), or a file / standard input
/// (`-`) shown indented with binary strings as hex, so a .torrent can be read.
fn decode(
    arg: Option<&std::ffi::OsStr>,
    file: Option<&std::path::Path>,
    hex: bool,
    out: &mut impl Write,
) -> Result<()> {
    use std::io::Read;
    let (bytes, what) = match (arg, file) {
        (_, Some(path)) => {
            let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (b, format!("decoding {}", path.display()))
        }
        (Some(a), None) if a == "-" => {
            let mut b = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut b)
                .context("reading standard input")?;
            (b, "decoding standard input".to_string())
        }
        (Some(a), None) => {
            let v = bencode::decode(a.as_bytes()).context("decoding the argument")?;
            let json = if hex { v.to_json_hex() } else { v.to_json() };
            writeln!(out, "{json}")?;
            return Ok(());
        }
        (None, None) => {
            return Err(super::UsageError("decode needs a value, - or --file".into()).into())
        }
    };
    let v = bencode::decode(&bytes).context(what)?;
    writeln!(out, "{:#}", v.to_json_hex())?;
    Ok(())
}

/// `handshake`: the peer's addresses in turn (a host name may have several) until one
/// answers; the error of the last one otherwise.
async fn handshake(
    peer: &PeerAddr,
    info_hash: [u8; 20],
    cfg: &ClientConfig,
) -> Result<crate::wire::Handshake> {
    let mut last = None;
    for &addr in &peer.addrs {
        // the course's peers accept exactly these reserved bytes (design.md)
        match client::handshake(addr, info_hash, Reserved::EXTENSION_ONLY, cfg).await {
            Ok(h) => return Ok(h),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("{} has no address", peer.text)))
}

/// Inputs at least this big get a progress bar while they are hashed (when stderr is a
/// terminal).
const CREATE_PROGRESS_MIN: u64 = 64 * 1024 * 1024;

/// `create`: scans and hashes the data (synchronously: no runtime is involved), writes the
/// .torrent file and prints its info hash; a summary goes to stderr.
fn create(args: &CreateArgs, out: &mut impl Write) -> Result<()> {
    use crate::create::{CreateOptions, Layout, MetaVersion};
    let layout = Layout::scan(&args.path)?; // its errors name the file
    let creation_date = (!args.no_date).then(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    });
    let opts = CreateOptions {
        announce: args.announce.clone(),
        piece_length: args.piece_length,
        private: args.private,
        web_seeds: args.web_seeds.clone(),
        comment: args.comment.clone(),
        created_by: Some(format!("bt-trace {}", env!("CARGO_PKG_VERSION"))),
        creation_date,
        version: if args.v2 {
            MetaVersion::V2
        } else if args.hybrid {
            MetaVersion::Hybrid
        } else {
            MetaVersion::V1
        },
        pad: args.pad,
    };
    let show = !args.quiet
        && layout.total_length >= CREATE_PROGRESS_MIN
        && std::io::stderr().is_terminal();
    let bar = show.then(|| output::hashing_bar(layout.total_length));
    let made = layout.build(&opts, |done| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let made = made.with_context(|| format!("hashing {}", args.path.display()))?;
    std::fs::write(&args.output, &made.bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    if !args.quiet {
        eprintln!("{}", output::created_report(&made, &args.output));
    }
    output::write_created_hashes(out, &made)?;
    Ok(())
}

/// `tracker`: serves until a signal, then stops cleanly (that is its normal end: exit 0).
fn tracker(args: &TrackerArgs) -> Result<()> {
    use crate::tracker::server::{ServerConfig, Tracker};
    let interval = Duration::from_secs(args.interval);
    let cfg = ServerConfig {
        interval,
        min_interval: interval / 4,
        peer_timeout: interval * 2 + Duration::from_secs(60),
        ..Default::default()
    };
    let bind = std::net::SocketAddr::new(args.bind, args.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signals = {
        let _entered = rt.enter();
        Signals::new().context("installing the signal handlers")?
    };
    let cancel = CancellationToken::new();
    let served = rt.block_on(async {
        let (handle, task) = Tracker::start(cfg, bind, cancel.clone())
            .await
            .with_context(|| format!("listening on {bind}"))?;
        eprintln!("{}", output::tracker_listening(&handle));
        let serve = async { task.await.context("the tracker failed") };
        until_signal(signals, cancel, Stop::Cancel, serve).await
    });
    rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
    served
}

/// `demo`: writes the content and the torrent, runs the swarm and the traced download as a
/// networked command, then prints the table per peer (read back from the trace) and the
/// commands to look at the trace.
fn demo(args: &DemoArgs, out: &mut impl Write) -> Result<()> {
    use crate::demo::{self, DemoOptions};
    check_dir(&args.out).context("--out")?;
    if let Some(file) = &args.report {
        check_parent(file).context("--report")?;
    }
    let plan = demo::prepare(DemoOptions {
        out: args.out.clone(),
        force: args.force,
        size: args.size,
        seeders: args.seeders,
        port: args.port,
        with: args.with.clone(),
        magnet: args.magnet,
        reproducible: args.reproducible,
        quiet: args.quiet,
    })?;
    let net = Net {
        quiet: args.quiet,
        ..Net::lookup(
            &PeersArg::default(),
            plan.downloader_port,
            TraceArgs {
                trace: Some(plan.trace_dir.clone()),
                trace_deterministic: args.reproducible,
                live: args.live,
                report: args.report.clone(),
            },
        )
    };
    let plan = &plan;
    let (outcome, trace) = networked_traced(
        &net,
        "demo",
        demo::content::NAME,
        Stop::Cancel,
        |cfg| async move { demo::run(plan, cfg).await },
    )?;
    let s = &outcome.summary;
    if s.interrupted {
        // the demo starts afresh (`--force`) rather than resuming: say so, not "run it again"
        if !args.quiet {
            eprintln!("{}", output::download_report(s));
        }
        return Err(Interrupted {
            detail: Some(format!(
                "the download stopped at {} of {} pieces; the trace is finished and readable",
                s.pieces_have, s.pieces_total
            )),
        }
        .into());
    }
    check_download(s, &net)?;
    let Some(trace) = trace else {
        anyhow::bail!("the demo's trace is missing");
    };
    let rows = demo::report::peers_from_jsonl(&trace.jsonl)?;
    let who = |a| {
        outcome
            .peers
            .iter()
            .find(|p| p.addr == a)
            .map(|p| p.label.clone())
    };
    output::write_demo(out, &outcome, &demo::report::table(&rows, who), &trace)?;
    Ok(())
}

/// What [`networked`] takes from a command line; a command without an option gets its
/// default (`peers` and `handshake` have no `--max-peers`, `-q` or `--trace-snaplen`).
#[derive(Debug, Clone)]
struct Net {
    peers: Vec<std::net::SocketAddr>,
    port: u16,
    max_peers: usize,
    quiet: bool,
    snaplen: Option<u32>,
    trace: TraceArgs,
}

impl Net {
    /// The settings of a command that only looks peers up or talks to one (`peers`,
    /// `handshake`, `magnet_handshake`, `magnet_info`).
    fn lookup(peers: &PeersArg, port: u16, trace: TraceArgs) -> Net {
        Net {
            peers: peers.addrs(),
            port,
            max_peers: 50,
            quiet: false,
            snaplen: None,
            trace,
        }
    }
}

impl From<NetArgs> for Net {
    fn from(a: NetArgs) -> Net {
        Net {
            peers: a.peers.addrs(),
            port: a.port.port,
            max_peers: a.max_peers,
            quiet: a.quiet,
            snaplen: a.trace_snaplen,
            trace: a.trace,
        }
    }
}

/// How a networked command stops after a signal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    /// It watches [`ClientConfig::cancel`] and returns what it has (a download: its summary,
    /// which records the interruption); wait for that, at most [`STOP_GRACE`].
    Cancel,
    /// It has nothing to save: drop it at once (its connections record their close).
    Drop,
}

/// Runs a networked command: client settings from `net`, the trace (`--trace`) named after
/// `command` and `name`, a runtime with the signal handlers, `job`, then the runtime's shutdown
/// and the trace's end, whatever the job's outcome.
fn networked<T, F, Fut>(net: &Net, command: &str, name: &str, stop: Stop, job: F) -> Result<T>
where
    F: FnOnce(ClientConfig) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    networked_traced(net, command, name, stop, job).map(|(v, _)| v)
}

/// [`networked`], also returning what the trace holds (with `--trace`).
fn networked_traced<T, F, Fut>(
    net: &Net,
    command: &str,
    name: &str,
    stop: Stop,
    job: F,
) -> Result<(T, Option<TraceStats>)>
where
    F: FnOnce(ClientConfig) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let signals = {
        let _entered = rt.enter();
        Signals::new().context("installing the signal handlers")?
    };
    let mut cfg = client_config(net);
    let trace = start_trace(net, command, name, &mut cfg)?;
    let cancel = cfg.cancel.clone();
    let result = rt.block_on(until_signal(signals, cancel, stop, job(cfg)));
    rt.shutdown_timeout(SHUTDOWN_TIMEOUT);
    let traced = finish_trace(trace);
    match (result, traced) {
        (Ok(v), Ok(stats)) => Ok((v, stats)),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(te)) => {
            tracing::error!("{te:#}");
            Err(e)
        }
    }
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP, installed together so that all three end a command the
/// same way. Once installed they no longer kill the process for the rest of its life.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers; must run inside the runtime.
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next of the three; returns its name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.int.recv() => "SIGINT",
            Some(()) = self.term.recv() => "SIGTERM",
            Some(()) = self.hup.recv() => "SIGHUP",
            else => std::future::pending().await,
        }
    }
}

/// Runs `job` until it ends or a signal comes; then cancels `cancel` and, as `stop` says, waits
/// for the job (at most [`STOP_GRACE`], or until a second signal) or drops it. After a signal
/// the result is [`Interrupted`] unless the job returned a value (a download's summary, which
/// says itself that it was interrupted).
async fn until_signal<T>(
    mut signals: Signals,
    cancel: CancellationToken,
    stop: Stop,
    job: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::pin!(job);
    let name = tokio::select! {
        r = &mut job => return r,
        name = signals.recv() => name,
    };
    tracing::info!("{name}: stopping");
    cancel.cancel();
    let interrupted = |detail: Option<String>| anyhow::Error::new(Interrupted { detail });
    if stop == Stop::Drop {
        return Err(interrupted(None));
    }
    // a second signal stops the wait
    let ended = tokio::select! {
        r = tokio::time::timeout(STOP_GRACE, job) => r.ok(),
        _ = signals.recv() => None,
    };
    match ended {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) if e.is::<Interrupted>() => Err(e),
        Some(Err(e)) => Err(interrupted(Some(format!("{e:#}")))),
        None => Err(interrupted(Some(
            "stopped before the command could say what it kept".into(),
        ))),
    }
}

fn client_config(net: &Net) -> ClientConfig {
    ClientConfig {
        port: net.port,
        max_peers: net.max_peers.max(1),
        extra_peers: net.peers.clone(),
        progress: !net.quiet && !net.trace.live,
        ..Default::default()
    }
}

/// A piece index of the command line that the torrent does not have is a usage error.
fn piece_in_range(t: &crate::metainfo::Torrent, index: u32) -> Result<()> {
    let n = t.info.piece_count() as usize;
    if index as usize >= n {
        let e = format!(
            "piece index {index} is out of range: the torrent has {n} pieces (0..={})",
            n.saturating_sub(1)
        );
        return Err(super::UsageError(e).into());
    }
    Ok(())
}

/// `-o PATH` of the download commands, once [`check_dir`] finds that it can be made: the
/// directory of a multi-file torrent, else the file (its parent must be a directory).
fn output_path(path: &std::path::Path, dir: bool) -> Result<&std::path::Path> {
    if dir {
        check_dir(path)
    } else {
        check_parent(path)
    }
    .context("-o")?;
    Ok(path)
}

/// A name for a magnet link's trace files: its display name, or its info hash.
fn magnet_name(m: &Magnet) -> String {
    m.display_name.clone().unwrap_or_else(|| m.info_hash_hex())
}

/// With `--trace DIR`: starts the recorder on `DIR/<command>-<name>.pcapng/.jsonl` (`name`
/// with anything but letters, digits, `-_.` replaced by `_` and no leading dots) and hooks it
/// into the client's connections and tracker exchanges.
fn start_trace(
    net: &Net,
    command: &str,
    name: &str,
    cfg: &mut ClientConfig,
) -> Result<Option<Recorder>> {
    if let Some(dir) = &net.trace.trace {
        check_dir(dir).context("--trace")?;
    }
    if let Some(file) = &net.trace.report {
        check_parent(file).context("--report")?;
    }
    // `--live` and `--report` observe the recorder's events, with or without files.
    let mut observers: Vec<Box<dyn EventObserver>> = Vec::new();
    if net.trace.live {
        observers.push(Box::new(LiveLadder::stderr()));
    }
    if let Some(path) = &net.trace.report {
        let title = format!("{command} {name}");
        observers.push(Box::new(ReportBuilder::new(&title, Some(path.clone()))));
    }
    let Some(dir) = &net.trace.trace else {
        if observers.is_empty() {
            return Ok(None);
        }
        let opts = RecorderOptions {
            listen_port: Some(net.port),
            ..RecorderOptions::events_only()
        };
        let rec = Recorder::start_observed(opts, observers).context("starting --live")?;
        cfg.conn_observer = Some(Arc::new(rec.clone()));
        cfg.tracker_observer = Some(Arc::new(Mutex::new(rec.clone())));
        return Ok(Some(rec));
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = format!("{command}-{}", name.trim_start_matches('.'));
    let opts = RecorderOptions {
        snaplen: net.snaplen,
        deterministic: net.trace.trace_deterministic,
        listen_port: Some(net.port),
        ..RecorderOptions::in_dir(dir, &stem)
    };
    let asked = opts.pcapng.clone();
    let rec = Recorder::start_observed(opts, observers)
        .with_context(|| format!("starting the trace in {}", dir.display()))?;
    let (pcapng, jsonl) = rec.paths();
    if pcapng != asked {
        eprintln!(
            "trace: {} is an earlier run's; this run's trace goes to {} and {}",
            asked.display(),
            pcapng.display(),
            jsonl.display()
        );
    }
    cfg.conn_observer = Some(Arc::new(rec.clone()));
    cfg.tracker_observer = Some(Arc::new(Mutex::new(rec.clone())));
    Ok(Some(rec))
}

/// Flushes and closes the trace files (after the runtime is down, so every connection has
/// recorded its close) and says where they are on stderr.
fn finish_trace(trace: Option<Recorder>) -> Result<Option<TraceStats>> {
    let Some(rec) = trace else {
        return Ok(None);
    };
    let s = rec.finish().context("writing the trace")?;
    if s.pcapng.as_os_str().is_empty() {
        return Ok(None); // no files: only --live/--report observed the events
    }
    eprintln!(
        "trace: {} ({} frames, {:.1} MiB) and {} ({} events)",
        s.pcapng.display(),
        s.frames,
        s.pcapng_bytes as f64 / 1048576.0,
        s.jsonl.display(),
        s.events
    );
    Ok(Some(s))
}

/// A download's outcome: the report line on stderr (unless `--quiet`), then [`Interrupted`]
/// when a signal stopped it, or an error when it is incomplete.
fn check_download(s: &Summary, net: &Net) -> Result<()> {
    if !net.quiet {
        eprintln!("{}", output::download_report(s));
    }
    if s.interrupted {
        return Err(Interrupted {
            detail: Some(format!(
                "{} of {} pieces are verified on disk; run the same command again to resume",
                s.pieces_have, s.pieces_total
            )),
        }
        .into());
    }
    if !s.complete {
        anyhow::bail!(
            "download incomplete: {} of {} pieces",
            s.pieces_have,
            s.pieces_total
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn run_args(args: &[&str]) -> Result<Vec<u8>> {
        let cli = Cli::try_parse_from(std::iter::once("bt-trace").chain(args.iter().copied()))?;
        let mut out = Vec::new();
        run(cli, &mut out)?;
        Ok(out)
    }

    #[test]
    fn offline_commands_write_to_out() {
        assert_eq!(
            run_args(&["decode", "d3:foo3:bare"]).expect("decode"),
            b"{\"foo\":\"bar\"}\n"
        );
        assert_eq!(
            run_args(&["encode", "[1,\"a\"]"]).expect("encode"),
            b"li1e1:ae"
        );
        let e = run_args(&["decode", "5:abc"]).expect_err("truncated");
        assert!(format!("{e:#}").starts_with("decoding the argument: "));
    }

    /// Runs `until_signal` on the job `make` builds from the cancellation token, raising `sig` at
    /// ourselves once the handlers are in place. One test at a time: every handler of the
    /// process sees every signal.
    fn interrupt<F, Fut>(sig: &str, stop: Stop, make: F) -> Result<u32>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<u32>>,
    {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let signals = Signals::new().expect("signal handlers");
            let cancel = CancellationToken::new();
            let job = make(cancel.clone());
            raise(sig);
            until_signal(signals, cancel, stop, job).await
        })
    }

    /// Sends signal `name` (`INT`, `TERM`, `HUP`) to this process with kill(1), so the crate needs
    /// no `unsafe` for `raise(3)`. kill(1) returns once the signal is queued.
    fn raise(name: &str) {
        let pid = std::process::id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .expect("running kill(1)");
        assert!(status.success(), "kill -s {name} {pid}: {status}");
    }

    #[test]
    fn every_signal_interrupts() {
        for sig in ["INT", "TERM", "HUP"] {
            let e =
                interrupt(sig, Stop::Drop, |_| std::future::pending()).expect_err("interrupted");
            assert!(e.is::<Interrupted>(), "{e:#}");
            assert_eq!(format!("{e:#}"), "interrupted");
        }
    }

    #[test]
    fn a_cancel_job_is_waited_for() {
        // the job sees the token fire and returns what it has
        let v = interrupt("TERM", Stop::Cancel, |token| async move {
            token.cancelled().await;
            Ok(7)
        });
        assert_eq!(v.expect("the job's value"), 7);

        // a job that fails once cancelled is still an interruption
        let e = interrupt("HUP", Stop::Cancel, |token| async move {
            token.cancelled().await;
            anyhow::bail!("connection reset")
        })
        .expect_err("interrupted");
        assert_eq!(format!("{e:#}"), "interrupted: connection reset");
        assert!(e.is::<Interrupted>());
    }

    #[test]
    fn a_second_signal_stops_the_wait() {
        let e = interrupt("TERM", Stop::Cancel, |token| async move {
            token.cancelled().await;
            raise("INT");
            std::future::pending().await
        })
        .expect_err("interrupted");
        assert!(e.is::<Interrupted>(), "{e:#}");
    }
}
