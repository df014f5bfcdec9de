//! The whole `analyze` path on a capture file: reader, link and IP layers, TCP reassembly,
//! connection detection, the peer and tracker decoders, events and the report (the first
//! byte of the input chooses the options; the rest is the capture).
#![no_main]
use std::io;

use bt_trace::analyze::{analyze, ConnReport, EventOut, Options};
use bt_trace::capture::reader::CaptureReader;
use bt_trace::capture::reassembly::ReassemblyConfig;
use bt_trace::event::Event;
use libfuzzer_sys::fuzz_target;

/// Formats every event as `--json` would, then drops it.
struct Format;

impl EventOut for Format {
    fn event(&mut self, e: &Event, words: &str, conn: Option<&ConnReport>) -> io::Result<()> {
        let _ = serde_json::to_string(e);
        let _ = (words, conn.map(|c| c.info_hash()));
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    let Some((&cfg, capture)) = data.split_first() else {
        return;
    };
    let Ok(mut reader) = CaptureReader::new(capture) else {
        return;
    };
    let opts = Options {
        events: cfg & 1 != 0,
        max_hunt: if cfg & 2 != 0 { 256 } else { 4 << 20 },
        reassembly: ReassemblyConfig {
            max_buffered_per_direction: 1 << 16,
            max_buffered_total: 1 << 20,
            idle_timeout_ns: if cfg & 4 != 0 {
                1_000_000
            } else {
                600_000_000_000
            },
            max_connections: if cfg & 8 != 0 { 2 } else { 1024 },
        },
        max_reports: 64,
        ..Options::default()
    };
    if let Ok(report) = analyze(&mut reader, opts, &mut Format, None) {
        let _ = format!("{report:?}");
    }
});
