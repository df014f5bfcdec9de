//! How fast the recorder's writer thread turns received bytes into a trace: 256 MiB of
//! 16 KiB `piece` messages fed in 256 KiB reads, as a download would, then `finish()`.
//!
//!   cargo run --release --example recorder_throughput [MiB] [snaplen]
//!
//! Prints the time the "download" side spent feeding the observer (it waits for room, as a
//! connection does, when the writer lags behind) and the total until the files are closed.

use std::time::Instant;

use bt_trace::peer::conn::ConnObserver;
use bt_trace::trace::{Recorder, RecorderOptions};
use bt_trace::wire::{Handshake, Message, Reserved};

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let snaplen: Option<u32> = std::env::args().nth(2).and_then(|s| s.parse().ok());
    let dir = tempfile::tempdir().unwrap();
    let opts = RecorderOptions {
        snaplen,
        ..RecorderOptions::in_dir(dir.path(), "bench")
    };
    let rec = Recorder::start(opts).unwrap();
    let hs = Handshake::new(
        Reserved::new().with_extended(),
        [1; 20],
        *b"-bt0100-aaaaaaaaaaaa",
    )
    .emit();
    rec.opened(
        0,
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:6881".parse().unwrap(),
    );
    rec.sent(0, &hs);
    rec.received(0, &hs);
    let block: Vec<u8> = (0..16384u32).map(|i| (i * 7) as u8).collect();
    let mut stream = Vec::new();
    for i in 0..16u32 {
        Message::Piece {
            index: i / 16,
            begin: (i % 16) * 16384,
            data: &block,
        }
        .emit(&mut stream);
    }
    let reads = mib * 1024 * 1024 / stream.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let t0 = Instant::now();
    for _ in 0..reads {
        // 256 KiB reads, not aligned to messages (as TCP delivers them).
        for chunk in stream.chunks(256 * 1024) {
            rt.block_on(rec.room());
            rec.received(0, chunk);
        }
        rec.sent(0, &[0, 0, 0, 5, 4, 0, 0, 0, 1]);
    }
    let fed = t0.elapsed();
    rec.closed(0, None);
    let s = rec.finish().unwrap();
    let total = t0.elapsed();
    let bytes = (reads * stream.len()) as f64;
    println!(
        "{:.0} MiB: fed in {:.2} s, trace closed after {:.2} s ({:.0} MiB/s); {} frames, pcapng {:.1} MiB, jsonl {:.1} MiB",
        bytes / 1048576.0,
        fed.as_secs_f64(),
        total.as_secs_f64(),
        bytes / 1048576.0 / total.as_secs_f64(),
        s.frames,
        s.pcapng_bytes as f64 / 1048576.0,
        s.jsonl_bytes as f64 / 1048576.0
    );
}
