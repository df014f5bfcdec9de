//! The `bt-trace` binary: parse the arguments, run the command, report errors.
//!
//! As in ripgrep: `main` parses and calls `run`; an error is printed as one line
//! `error: <context>: <cause>` on stderr. Exit status 0 on success, 1 on a runtime error, 2 on a
//! usage error. A closed stdout (`bt-trace info x.torrent | head -3`) is not an error: exit 0.
//! Results go to stdout only; logs (tracing) go to stderr.

mod analyze_cmd;
mod cli;

use anyhow::{Context, Result};
use bt_trace::bencode::{self, Value};
use bt_trace::client;
use bt_trace::magnet::Magnet;
use bt_trace::metainfo::Torrent;
use bt_trace::trace::{Recorder, RecorderOptions};
use bt_trace::wire::Reserved;
use clap::Parser;
use cli::{Cli, Command};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and succeed; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Decode { bencoded, hex } => {
            let bytes = os_bytes(&bencoded);
            let v = bencode::decode(&bytes).context("decoding the argument")?;
            let json = if hex { v.to_json_hex() } else { v.to_json() };
            writeln!(out, "{json}")?;
        }
        Command::Encode { json } => {
            let j: serde_json::Value = serde_json::from_str(&json).context("reading the JSON")?;
            let v = Value::from_json(&j)
                .map_err(anyhow::Error::msg)
                .context("converting JSON to bencode")?;
            out.write_all(&v.encode())?;
        }
        Command::Info { torrent, json } => {
            let t = read_torrent(&torrent)?;
            if json {
                writeln!(out, "{:#}", info_json(&t))?;
            } else {
                write_info(&mut out, &t)?;
                write_files(&mut out, &t)?;
                write_tiers(&mut out, &t)?;
            }
        }
        Command::MagnetParse { link, json } => {
            let m = Magnet::parse(&link).context("parsing the magnet link")?;
            if json {
                writeln!(out, "{:#}", magnet_json(&m))?;
            } else {
                let tracker = m.trackers.first().map(String::as_str);
                if tracker.is_none() {
                    tracing::warn!("the magnet link has no tracker (`tr`)");
                }
                writeln!(out, "Tracker URL: {}", tracker.unwrap_or(""))?;
                writeln!(out, "Info Hash: {}", m.info_hash_hex())?;
            }
        }
        Command::Peers { torrent, net } => {
            let t = read_torrent(&torrent)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "peers", &t.info.name, &mut cfg)?;
            let rt = runtime()?;
            let result = rt.block_on(interruptible(client::peers(&t, &cfg)));
            let traced = finish_trace(rt, trace);
            let peers = result?;
            traced?;
            for p in peers {
                writeln!(out, "{p}")?;
            }
        }
        Command::Handshake { torrent, peer, net } => {
            let t = read_torrent(&torrent)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "handshake", &t.info.name, &mut cfg)?;
            let rt = runtime()?;
            // the course's peers accept exactly these reserved bytes (design.md)
            let result = rt.block_on(interruptible(client::handshake(
                peer,
                t.info_hash,
                Reserved::EXTENSION_ONLY,
                &cfg,
            )));
            let traced = finish_trace(rt, trace);
            let h = result?;
            traced?;
            writeln!(out, "Peer ID: {}", hex::encode(h.peer_id))?;
        }
        Command::DownloadPiece {
            output,
            torrent,
            index,
            net,
        } => {
            let t = read_torrent(&torrent)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "download_piece", &t.info.name, &mut cfg)?;
            let rt = runtime()?;
            let result = rt.block_on(with_ctrl_c(
                &cfg,
                client::download_piece(&t, index, &output, &cfg),
            ));
            let traced = finish_trace(rt, trace);
            finish(&result?, &net)?;
            traced?;
            writeln!(out, "Piece {index} downloaded to {}.", output.display())?;
        }
        Command::Download {
            output,
            torrent,
            net,
        } => {
            let t = read_torrent(&torrent)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "download", &t.info.name, &mut cfg)?;
            let rt = runtime()?;
            let result = rt.block_on(with_ctrl_c(&cfg, client::download(&t, &output, &cfg)));
            let traced = finish_trace(rt, trace);
            finish(&result?, &net)?;
            traced?;
            writeln!(
                out,
                "Downloaded {} to {}.",
                torrent.display(),
                output.display()
            )?;
        }
        Command::MagnetHandshake { link, net } => {
            let m = read_magnet(&link)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "magnet_handshake", &magnet_name(&m), &mut cfg)?;
            let rt = runtime()?;
            let result = rt.block_on(interruptible(client::magnet_handshake(&m, &cfg)));
            let traced = finish_trace(rt, trace);
            let p = result?;
            traced?;
            writeln!(out, "Peer ID: {}", hex::encode(p.handshake.peer_id))?;
            // magnet_handshake only returns peers that announced ut_metadata
            let id = p.ut_metadata_id().unwrap_or(0);
            writeln!(out, "Peer Metadata Extension ID: {id}")?;
        }
        Command::MagnetInfo { link, net } => {
            let m = read_magnet(&link)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "magnet_info", &magnet_name(&m), &mut cfg)?;
            let rt = runtime()?;
            let result = rt.block_on(interruptible(client::magnet_info(&m, &cfg)));
            let traced = finish_trace(rt, trace);
            let (t, _) = result?;
            traced?;
            // the `info` lines; the tracker tiers are the link's `tr`, not shown again
            write_info(&mut out, &t)?;
            write_files(&mut out, &t)?;
        }
        Command::MagnetDownloadPiece {
            output,
            link,
            index,
            net,
        } => {
            let m = read_magnet(&link)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "magnet_download_piece", &magnet_name(&m), &mut cfg)?;
            let rt = runtime()?;
            let result = rt.block_on(with_ctrl_c(
                &cfg,
                client::magnet_download_piece(&m, index, &output, &cfg),
            ));
            let traced = finish_trace(rt, trace);
            let (_, s) = result?;
            finish(&s, &net)?;
            traced?;
            writeln!(out, "Piece {index} downloaded to {}.", output.display())?;
        }
        Command::MagnetDownload { output, link, net } => {
            let m = read_magnet(&link)?;
            let mut cfg = client_config(&net);
            let trace = start_trace(&net, "magnet_download", &magnet_name(&m), &mut cfg)?;
            let rt = runtime()?;
            let result = rt.block_on(with_ctrl_c(
                &cfg,
                client::magnet_download(&m, &output, &cfg),
            ));
            let traced = finish_trace(rt, trace);
            let (t, s) = result?;
            finish(&s, &net)?;
            traced?;
            writeln!(out, "Downloaded {} to {}.", t.info.name, output.display())?;
        }
        Command::Analyze(args) => analyze_cmd::run(&args, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// A name for a magnet link's trace files: its display name, or its info hash.
fn magnet_name(m: &Magnet) -> String {
    m.display_name.clone().unwrap_or_else(|| m.info_hash_hex())
}

fn read_magnet(link: &str) -> Result<Magnet> {
    Magnet::parse(link).context("parsing the magnet link")
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn client_config(net: &cli::NetArgs) -> client::ClientConfig {
    client::ClientConfig {
        port: net.port,
        max_peers: net.max_peers.max(1),
        extra_peers: net.peers.clone(),
        progress: !net.quiet,
        ..Default::default()
    }
}

/// Runs a download, cancelling it cleanly on Ctrl-C (verified pieces stay on disk).
async fn with_ctrl_c<T>(
    cfg: &client::ClientConfig,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let cancel = cfg.cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    fut.await
}

/// Runs a command that has no cancellation of its own; Ctrl-C makes it fail with
/// "interrupted" (so that the trace is still finished).
async fn interruptible<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

/// With `--trace DIR`: starts the recorder on `DIR/<command>-<name>.pcapng/.jsonl` (the
/// torrent's name; for a magnet link its display name, or its info hash)
/// and hooks it into the client's connections and tracker exchanges.
fn start_trace(
    net: &cli::NetArgs,
    command: &str,
    name: &str,
    cfg: &mut client::ClientConfig,
) -> Result<Option<Recorder>> {
    let Some(dir) = &net.trace.trace else {
        return Ok(None);
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
        snaplen: net.trace.trace_snaplen,
        deterministic: net.trace.trace_deterministic,
        listen_port: Some(net.port),
        ..RecorderOptions::in_dir(dir, &stem)
    };
    let rec = Recorder::start(opts)
        .with_context(|| format!("starting the trace in {}", dir.display()))?;
    cfg.conn_observer = Some(std::sync::Arc::new(rec.clone()));
    cfg.tracker_observer = Some(std::sync::Arc::new(std::sync::Mutex::new(rec.clone())));
    Ok(Some(rec))
}

/// Shuts the runtime down (every connection still open reports its close), then flushes
/// and closes the trace files and says where they are on stderr.
fn finish_trace(rt: tokio::runtime::Runtime, trace: Option<Recorder>) -> Result<()> {
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    let Some(rec) = trace else {
        return Ok(());
    };
    let s = rec.finish().context("writing the trace")?;
    eprintln!(
        "trace: {} ({} frames, {:.1} MiB) and {} ({} events)",
        s.pcapng.display(),
        s.frames,
        s.pcapng_bytes as f64 / 1048576.0,
        s.jsonl.display(),
        s.events
    );
    Ok(())
}

/// Reports a download's outcome on stderr; an incomplete download is an error.
fn finish(s: &bt_trace::download::Summary, net: &cli::NetArgs) -> Result<()> {
    let secs = s.elapsed.as_secs_f64().max(1e-6);
    if !net.quiet {
        eprintln!(
            "{} of {} pieces verified ({} resumed from disk); {:.1} MiB in {:.2} s ({:.1} MiB/s) from {} peer(s){}{}",
            s.pieces_have,
            s.pieces_total,
            s.pieces_resumed,
            s.bytes_downloaded as f64 / 1048576.0,
            secs,
            s.bytes_downloaded as f64 / 1048576.0 / secs,
            s.peers_used,
            if s.pieces_failed > 0 { format!(", {} piece(s) failed verification", s.pieces_failed) } else { String::new() },
            if s.peers_banned > 0 { format!(", {} peer(s) dropped for bad data", s.peers_banned) } else { String::new() },
        );
    }
    if s.interrupted {
        anyhow::bail!(
            "interrupted: {} of {} pieces are verified on disk; run the same command again to resume",
            s.pieces_have,
            s.pieces_total
        );
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

/// Reads and parses a .torrent file; errors name the file.
fn read_torrent(path: &std::path::Path) -> Result<Torrent> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Torrent::parse(&bytes).with_context(|| format!("{} is not a usable torrent", path.display()))
}

/// The CodeCrafters `info` lines, byte-exact: `Tracker URL`, `Length` (the total for
/// multi-file torrents), `Info Hash`, `Piece Length`, `Piece Hashes` and one hash a line.
/// `magnet_info` prints the same lines.
fn write_info(out: &mut impl Write, t: &Torrent) -> std::io::Result<()> {
    let tracker = t.tracker_url();
    if tracker.is_none() {
        tracing::warn!("the torrent has no tracker (no `announce` or `announce-list`)");
    }
    writeln!(out, "Tracker URL: {}", tracker.unwrap_or(""))?;
    writeln!(out, "Length: {}", t.info.total_length)?;
    writeln!(out, "Info Hash: {}", t.info_hash_hex())?;
    writeln!(out, "Piece Length: {}", t.info.piece_length)?;
    writeln!(out, "Piece Hashes:")?;
    for h in &t.info.pieces {
        writeln!(out, "{}", hex::encode(h))?;
    }
    Ok(())
}

/// What `info` (and `magnet_info`) shows after the CodeCrafters lines for a multi-file
/// torrent: its files.
fn write_files(out: &mut impl Write, t: &Torrent) -> std::io::Result<()> {
    if t.info.multi_file {
        writeln!(out, "Files:")?;
        for f in &t.info.files {
            let pad = if f.padding { "  (padding)" } else { "" };
            writeln!(out, "  {}  {}{pad}", f.length, f.display_path())?;
        }
    }
    Ok(())
}

/// What `info` shows last: the announce-list tiers, if any.
fn write_tiers(out: &mut impl Write, t: &Torrent) -> std::io::Result<()> {
    if !t.announce_list.is_empty() {
        writeln!(out, "Announce List:")?;
        for (i, tier) in t.announce_list.iter().enumerate() {
            writeln!(out, "  tier {}: {}", i + 1, tier.join(", "))?;
        }
    }
    Ok(())
}

fn info_json(t: &Torrent) -> serde_json::Value {
    let i = &t.info;
    serde_json::json!({
        "tracker_url": t.tracker_url(),
        "announce": t.announce,
        "announce_list": t.announce_list,
        "comment": t.comment,
        "created_by": t.created_by,
        "creation_date": t.creation_date,
        "info_hash": t.info_hash_hex(),
        "name": i.name,
        "length": i.total_length,
        "piece_length": i.piece_length,
        "num_pieces": i.num_pieces(),
        "piece_hashes": i.pieces.iter().map(hex::encode).collect::<Vec<_>>(),
        "private": i.private,
        "multi_file": i.multi_file,
        "files": i.files.iter().map(|f| serde_json::json!({
            "path": f.display_path(),
            "length": f.length,
            "offset": f.offset,
            "padding": f.padding,
        })).collect::<Vec<_>>(),
    })
}

fn magnet_json(m: &Magnet) -> serde_json::Value {
    serde_json::json!({
        "info_hash": m.info_hash_hex(),
        "display_name": m.display_name,
        "trackers": m.trackers,
        "peers": m.peers,
        "exact_length": m.exact_length,
        "other": m.other.iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>(),
    })
}

/// The argument's bytes. On Unix an argument may hold any bytes (bencoded piece hashes).
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        s.as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        s.to_string_lossy().into_owned().into_bytes()
    }
}

/// Logs go to stderr. `-v` sets the level; without it RUST_LOG decides, default `warn`.
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => None,
        1 => Some("info"),
        2 => Some("debug"),
        _ => Some("trace"),
    };
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(verbose >= 2)
        .without_time()
        .try_init();
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
