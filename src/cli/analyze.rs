//! The `analyze` command: opens each capture, picks the output (tables, `--messages`,
//! `--json`), runs [`bt_trace::analyze::analyze`] and reports problems on stderr.
//!
//! Exit status: 0 when every capture was read (a capture cut short is analyzed up to the
//! damage and only warned about); 1 when a file could not be opened or is not a capture at
//! all (the other files are still analyzed), or when writing the output failed.
//!
//! Only the command's plumbing lives here; decoding and the reports are `crate::analyze`'s.

use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::args::AnalyzeArgs;
use super::{check_dir, check_parent, is_broken_pipe, read_torrent, Interrupted, UsageError};
use crate::analyze::report::{write_pieces, write_report, JsonOut, MessagesOut};
use crate::analyze::{analyze, AnalyzeError, Filter, NoEvents, Options, PieceChecker};
use crate::capture::CaptureReader;
use crate::trace::jsonl::JsonlWriter;
use crate::view::report::ReportBuilder;
use crate::view::source::read_events;

/// Runs `analyze`: every capture in turn into `out`; a capture that fails is reported on stderr
/// and the others are still analyzed.
pub fn run(args: &AnalyzeArgs, out: &mut dyn Write) -> Result<()> {
    if args.ladder {
        if args.torrent.is_some() || args.info_hash.is_some() {
            tracing::warn!("--torrent and --info-hash do not apply to --ladder");
        }
        return super::ladder::run(
            &args.captures,
            &args.conns,
            &args.types,
            args.ladder_style,
            out,
        );
    }
    if let Some(html) = &args.html {
        return html_report(args, html, out);
    }
    if args.ladder_style.ascii || args.ladder_style.no_fold {
        tracing::warn!("--ascii and --no-fold apply to --ladder");
    }
    let filter = Filter {
        conns: args.conns.iter().copied().collect(),
        info_hash: args
            .info_hash
            .as_deref()
            .map(Filter::parse_info_hash)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        types: Filter::parse_types(&args.types).map_err(anyhow::Error::msg)?,
    };
    if let Some(dir) = &args.extract {
        check_dir(dir).context("--extract")?;
    }
    let mut checker = match &args.torrent {
        Some(p) => Some(
            PieceChecker::new(Arc::new(read_torrent(p)?), args.extract.as_deref()).with_context(
                || {
                    format!(
                        "creating {}",
                        args.extract.as_deref().unwrap_or(Path::new("")).display()
                    )
                },
            )?,
        ),
        None => None,
    };
    if !args.types.is_empty() && !args.messages && !args.json {
        tracing::warn!("--type applies to --messages and --json; the tables show every type");
    }
    let mut out = BufWriter::with_capacity(256 * 1024, out);
    let mut failed = 0;
    let reading = Arc::new(AtomicBool::new(true));
    let stop = interrupt_flag(reading.clone());
    let want = checker.as_ref().map(|c| *c.info_hash());
    let mut hash_seen = false;
    for path in &args.captures {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (name, res) = if path.as_os_str() == "-" {
            let stdin = io::stdin();
            let r = one(
                stdin.lock(),
                "(standard input)",
                args,
                &filter,
                &mut out,
                checker.as_mut(),
                &stop,
            );
            ("standard input".to_string(), r)
        } else {
            let name = path.display().to_string();
            let r = match super::open_input(path) {
                Ok(f) => one(f, &name, args, &filter, &mut out, checker.as_mut(), &stop),
                Err(e) => Err(e),
            };
            (name, r)
        };
        let res = res.map(|seen| hash_seen |= seen);
        if let Err(e) = res {
            if is_broken_pipe(&e) || e.is::<UsageError>() {
                return Err(e);
            }
            eprintln!("error: {name}: {e:#}");
            failed += 1;
        }
    }
    reading.store(false, Ordering::Relaxed);
    if let Some(c) = checker {
        let p = c.finish().context("finishing the extracted files")?;
        if !hash_seen {
            let h = hex::encode(want.unwrap_or_default());
            let msg = format!(
                "the torrent's info hash {h} appears in no peer handshake of \
                 the capture"
            );
            if args.json || args.messages {
                eprintln!("note: {msg}");
            } else {
                writeln!(out)?;
                writeln!(out, "Note: {msg}")?;
            }
        }
        if args.json || args.messages {
            write_pieces(&mut io::stderr(), &p)?;
        } else {
            writeln!(out)?;
            write_pieces(&mut out, &p)?;
        }
    }
    out.flush()?;
    if stop.load(Ordering::Relaxed) {
        return Err(Interrupted {
            detail: Some("the report covers what was read".into()),
        }
        .into());
    }
    if failed > 0 {
        bail!(
            "{failed} of {} captures could not be analyzed",
            args.captures.len()
        );
    }
    Ok(())
}

/// A flag set by Ctrl-C (SIGINT), SIGTERM or SIGHUP: the analysis stops after the packet being
/// read and reports what it has (exit status 130). The flag is set inside the signal handler
/// itself, so when `dumpcap -w - | bt-trace analyze -` is interrupted from the terminal (both
/// get the signal, and dumpcap closes the pipe), the end of the input is never taken for a
/// normal end: the handler has run before the read that sees the closed pipe returns.
///
/// A read that waits on an input that does not end (a producer that ignores the signal) would
/// never see the flag: while `reading` is true, a watchdog ends the process one second after
/// the signal, without the tables. A second Ctrl-C ends it at once.
fn interrupt_flag(reading: Arc<AtomicBool>) -> Arc<AtomicBool> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // the first signal sets the flag; a second one (the flag already set) is fatal
        let r = signal_hook::flag::register_conditional_default(sig, flag.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()));
        if let Err(e) = r {
            tracing::warn!("cannot watch signal {sig}: {e}");
        }
    }
    let seen = flag.clone();
    let spawned = std::thread::Builder::new()
        .name("interrupt-watchdog".into())
        .spawn(move || {
            while !seen.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_secs(1));
            if reading.load(Ordering::Relaxed) {
                eprintln!("interrupted: the input did not end within a second of the signal");
                std::process::exit(130);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the interrupt watchdog: {e}");
    }
    flag
}

/// Analyzes one capture into `out`.
fn one<R: Read>(
    src: R,
    name: &str,
    args: &AnalyzeArgs,
    filter: &Filter,
    out: &mut dyn Write,
    checker: Option<&mut PieceChecker>,
    stop: &Arc<AtomicBool>,
) -> Result<bool> {
    let want = checker.as_ref().map(|c| *c.info_hash());
    let wanted = checker
        .as_ref()
        .map(|c| c.info_hashes())
        .unwrap_or_default();
    let mut reader = CaptureReader::new(src).context("not a capture this tool can read")?;
    let opts = Options {
        events: args.json || args.messages,
        stop: Some(stop.clone()),
        ..Options::default()
    };
    // Standard input may be a live capture (`dumpcap -w - | …`): each line as it is found.
    let live = name == "(standard input)";
    let res = if args.json {
        let mut o = JsonOut {
            w: JsonlWriter::new(&mut *out),
            filter: filter.clone(),
        };
        let r = analyze(&mut reader, opts, &mut o, checker);
        o.w.finish()?;
        r
    } else if args.messages {
        if args.full {
            let mut o = MessagesOut::new(&mut *out, filter.clone());
            o.flush_each = live;
            analyze(&mut reader, opts, &mut o, checker)
        } else {
            let short = super::lines::ShortLines::new(&mut *out, super::lines::width());
            let mut o = MessagesOut::new(short, filter.clone());
            o.flush_each = live;
            let r = analyze(&mut reader, opts, &mut o, checker);
            o.w.flush()?;
            r
        }
    } else {
        analyze(&mut reader, opts, &mut NoEvents, checker)
    };
    let report = match res {
        Ok(r) => r,
        Err(AnalyzeError::Io(e)) => return Err(e).context("writing the output"),
        Err(e) => return Err(e.into()),
    };
    for w in &report.stats.warnings {
        match w.offset {
            Some(o) if !w.message.contains("offset") => {
                eprintln!("warning: {name}: {} (byte offset {o})", w.message)
            }
            _ => eprintln!("warning: {name}: {}", w.message),
        }
    }
    if !args.json && !args.messages {
        if args.captures.len() > 1 {
            writeln!(out)?;
        }
        write_report(out, name, &report, filter)?;
    } else if live && args.messages {
        // A live view ends (input closed, or Ctrl-C) with the tables of what was read, on
        // standard error so that standard output stays one line per event.
        out.flush()?;
        write_report(&mut io::stderr().lock(), name, &report, filter)?;
    }
    if let Some(n) = filter.conns.iter().find(|&&n| n >= report.tcp_connections) {
        out.flush()?;
        return Err(UsageError(format!(
            "--conn {n}: {name} has {} TCP connections (numbered from 0)",
            report.tcp_connections
        ))
        .into());
    }
    // Whether the torrent of `--torrent` shows in this capture.
    Ok(want.is_some_and(|h| {
        let hex = hex::encode(h);
        report
            .conns
            .iter()
            .any(|c| c.info_hash().is_some_and(|h| wanted.contains(h)))
            || report.tracker_log.iter().any(|l| l.contains(&hex))
    }))
}

/// `analyze --html FILE`: the report of one capture (or JSON Lines trace) to FILE, and the
/// usual tables to `out`.
fn html_report(args: &AnalyzeArgs, html: &Path, out: &mut dyn Write) -> Result<()> {
    let [path] = args.captures.as_slice() else {
        return Err(UsageError("--html takes one capture".into()).into());
    };
    check_parent(html).context("--html")?;
    let name = path.display().to_string();
    let mut b = ReportBuilder::new(&name, None);
    let report = if path.as_os_str() == "-" {
        read_events(io::stdin().lock(), &mut b)?
    } else {
        let f = super::open_input(path).with_context(|| format!("opening {name}"))?;
        read_events(f, &mut b)?
    };
    if let Some(r) = &report {
        b.capture_summary(&name, r);
    }
    let page = b.render().context("making the HTML report")?;
    std::fs::write(html, page).with_context(|| format!("writing {}", html.display()))?;
    if let Some(r) = &report {
        write_report(out, &name, r, &Filter::default())?;
    }
    eprintln!("report: {}", html.display());
    Ok(())
}
