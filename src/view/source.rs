//! The events of a file the views read: a capture (pcap or pcapng, through the analyzer,
//! which also gives each event its connection's report) or one of bt-trace's JSON Lines
//! traces, told apart by their first bytes.

use std::io::{BufRead, BufReader, Read};

use anyhow::{Context, Result};

use crate::analyze::{analyze, AnalyzeError, CaptureReport, EventOut, Options};
use crate::capture::CaptureReader;
use crate::event::Event;

/// Reads `src` and hands every event to `out`, in file order. Returns the analyzer's report
/// for a capture, `None` for JSON Lines.
pub fn read_events<R: Read>(src: R, out: &mut dyn EventOut) -> Result<Option<CaptureReport>> {
    let mut src = BufReader::with_capacity(256 * 1024, src);
    let head = src.fill_buf().context("reading")?;
    let jsonl = head
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if jsonl {
        for (n, line) in src.lines().enumerate() {
            let line = line.context("reading")?;
            if line.trim().is_empty() {
                continue;
            }
            let e: Event = serde_json::from_str(&line)
                .with_context(|| format!("line {}: not a bt-trace event", n + 1))?;
            out.event(&e, "", None).context("writing")?;
        }
        return Ok(None);
    }
    let mut reader = CaptureReader::new(src)
        .context("neither a capture this tool can read nor bt-trace JSON Lines")?;
    let opts = Options {
        events: true,
        ..Options::default()
    };
    match analyze(&mut reader, opts, out, None) {
        Ok(r) => Ok(Some(r)),
        Err(AnalyzeError::Io(e)) => Err(e).context("writing the output"),
        Err(e) => Err(e.into()),
    }
}
