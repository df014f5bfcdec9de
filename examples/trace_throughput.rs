//! How fast frames are synthesized and written as pcapng, in MB/s of BitTorrent payload.
//!
//! `cargo run --release --example trace_throughput [MiB]` (default 512 MiB per case).
//! A download at 300 MiB/s may lose at most 10% to tracing, so the recorder needs to
//! sustain well over 300 MiB/s / 0.1 = 3 GiB/s of *extra* capacity if it ran on the download's
//! own thread, or just > 300 MiB/s on a thread of its own. Cases:
//! - synth only: frames built (checksums included), handed to a callback that drops them;
//! - full frames to io::sink / to a file: everything, as `--trace` writes by default
//!   (file: written into the page cache; "incl. fsync" waits for the disk as well);
//! - pieces cut: piece frames keep headers + the 13-byte message header (file);
//! - snaplen 96: every frame cut at 96 bytes, like `tcpdump -s 96` (file).

use std::io::{self, Write};
use std::time::Instant;

use bt_trace::trace::pcapng::{PcapngOptions, PcapngWriter};
use bt_trace::trace::synth::{Frame, TcpConversation};

const BLOCK: usize = 16 * 1024;

#[derive(Clone, Copy)]
enum Mode {
    SynthOnly,
    Full,
    CutPieces,
    Snaplen96,
}

/// Plays a download of `total` bytes: the client asks for 16 blocks at a time, the server
/// answers with one `piece` message (13 + 16384 bytes) per socket write.
fn run<W: Write>(mode: Mode, out: Option<&mut PcapngWriter<W>>, total: usize) -> io::Result<u64> {
    let client = "192.0.2.10:50001".parse().unwrap();
    let server = "198.51.100.7:6881".parse().unwrap();
    let mut conv = TcpConversation::new(client, server, 1, 2, 1460).unwrap();
    let mut piece = vec![0u8; 13 + BLOCK];
    piece[..5].copy_from_slice(&[0, 0, 0x40, 0x09, 7]);
    for (i, b) in piece[13..].iter_mut().enumerate() {
        *b = (i * 31) as u8;
    }
    let request = [0u8, 0, 0, 13, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0];
    let requests: Vec<u8> = request.iter().copied().cycle().take(17 * 16).collect();

    let mut ts = 1_700_000_000_000_000_000u64;
    let mut frames = 0u64;
    let mut out = out;
    let mut sink = |f: &Frame<'_>, is_piece: bool| -> io::Result<()> {
        ts += 1_000;
        frames += 1;
        let Some(w) = out.as_deref_mut() else {
            std::hint::black_box(f.headers);
            return Ok(());
        };
        let comment = f.carries_end(f.data_range.end.max(1)) && f.payload.len() < 1460;
        let comment = comment.then_some("piece 7 begin 16384 length 16384");
        match mode {
            Mode::CutPieces if is_piece => {
                let keep = if f.data_range.start == 0 { 13 } else { 0 };
                w.write_frame_keep(ts, f, keep, comment)?;
            }
            _ => {
                w.write_frame(ts, f, comment)?;
            }
        }
        Ok(())
    };
    conv.open(|f| sink(f, false)).map_err(io::Error::other)?;
    let mut sent = 0;
    while sent < total {
        conv.data(true, &requests, |f| sink(f, false))
            .map_err(io::Error::other)?;
        for _ in 0..16 {
            conv.data(false, &piece, |f| sink(f, true))
                .map_err(io::Error::other)?;
            sent += piece.len();
        }
    }
    conv.close_fin(true, |f| sink(f, false))
        .map_err(io::Error::other)?;
    Ok(frames)
}

fn report(name: &str, total: usize, secs: f64, frames: u64, size: Option<u64>) {
    let mbs = total as f64 / secs / 1e6;
    let size = size.map_or(String::new(), |s| {
        format!(", file {:.1}% of payload", 100.0 * s as f64 / total as f64)
    });
    println!("{name:<28} {mbs:>8.0} MB/s payload  ({frames} frames in {secs:.2} s{size})");
}

fn main() -> io::Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let total = mib << 20;
    let dir = tempfile::tempdir()?;
    println!("{mib} MiB of piece messages per case, MSS 1460");

    let t = Instant::now();
    let frames = run::<io::Sink>(Mode::SynthOnly, None, total)?;
    report("synth only", total, t.elapsed().as_secs_f64(), frames, None);

    let mut w = PcapngWriter::new(io::sink(), &PcapngOptions::default())?;
    let t = Instant::now();
    let frames = run(Mode::Full, Some(&mut w), total)?;
    w.flush()?;
    report(
        "full frames -> io::sink",
        total,
        t.elapsed().as_secs_f64(),
        frames,
        Some(w.bytes_written()),
    );

    for (name, mode, snaplen) in [
        ("full frames -> file", Mode::Full, None),
        ("pieces cut -> file", Mode::CutPieces, None),
        ("snaplen 96 -> file", Mode::Snaplen96, Some(96)),
    ] {
        let path = dir.path().join("bench.pcapng");
        let opts = PcapngOptions {
            snaplen,
            ..PcapngOptions::default()
        };
        let mut w = PcapngWriter::new(std::fs::File::create(&path)?, &opts)?;
        let t = Instant::now();
        let frames = run(mode, Some(&mut w), total)?;
        let size = w.bytes_written();
        let file = w.finish()?;
        let secs = t.elapsed().as_secs_f64();
        report(name, total, secs, frames, Some(size));
        // The same, until the disk has it (depends on the disk, not on bt-trace).
        file.sync_all()?;
        let secs = t.elapsed().as_secs_f64();
        report("  ... incl. fsync", total, secs, frames, None);
        std::fs::remove_file(&path)?;
    }
    Ok(())
}
