//! Throughput and peak memory of the capture layer alone (reader -> link -> TCP reassembly), with a sink that
//! only counts. usage: `cargo run --release --example capture_bench -- [--sha1] FILE...` (`-` reads standard
//! input). `--sha1` also prints the SHA-1 of every stream direction (to compare with `tshark -z follow,tcp,raw`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use bt_trace::capture::{
    process, CaptureReader, ConnId, ConnInfo, Datagram, Direction, Gap, Stats, StreamSink,
};
use sha1::{Digest, Sha1};

#[derive(Default)]
struct Count {
    bytes: u64,
    chunks: u64,
    gaps: u64,
    udp: u64,
    touch: u64,
    sha1: Option<BTreeMap<(u64, usize), (Sha1, u64)>>,
    conns: BTreeMap<u64, ConnInfo>,
}

impl StreamSink for Count {
    fn on_data(&mut self, _c: ConnId, _d: Direction, _off: u64, data: &[u8], _f: u64, _ts: i64) {
        self.bytes += data.len() as u64;
        self.chunks += 1;
        self.touch = self
            .touch
            .wrapping_add(u64::from(data[0]) + u64::from(data[data.len() - 1]));
        if let Some(h) = &mut self.sha1 {
            let e = h
                .entry((_c.0, _d.index()))
                .or_insert_with(|| (Sha1::new(), 0));
            e.0.update(data);
            e.1 += data.len() as u64;
        }
    }
    fn on_open(&mut self, info: &ConnInfo) {
        if self.sha1.is_some() {
            self.conns.insert(info.id.0, *info);
        }
    }
    fn on_gap(&mut self, _c: ConnId, _d: Direction, _g: &Gap) {
        self.gaps += 1;
    }
    fn on_udp(&mut self, _dg: &Datagram<'_>) {
        self.udp += 1;
    }
}

fn peak_rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let want_sha1 = std::env::args().any(|a| a == "--sha1");
    for arg in std::env::args().skip(1).filter(|a| a != "--sha1") {
        let t = Instant::now();
        let mut reader = match CaptureReader::open(Path::new(&arg)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{arg}: {e}");
                std::process::exit(1);
            }
        };
        let mut sink = Count {
            sha1: want_sha1.then(BTreeMap::new),
            ..Count::default()
        };
        let mut stats = Stats::default();
        let res = process(&mut reader, &mut sink, &mut stats);
        let secs = t.elapsed().as_secs_f64();
        let size = reader.offset();
        println!(
            "{arg}: {} frames, {:.1} MB in {:.3} s = {:.0} MB/s; {} connections, {} stream bytes in {} chunks, {} gaps, {} out-of-order segments, {} duplicate bytes, {} UDP; peak RSS {:.1} MiB{}",
            stats.frames,
            size as f64 / 1e6,
            secs,
            size as f64 / 1e6 / secs,
            stats.reassembly.connections,
            sink.bytes,
            sink.chunks,
            sink.gaps,
            stats.reassembly.out_of_order_segments,
            stats.reassembly.duplicate_bytes,
            sink.udp,
            peak_rss_kib() as f64 / 1024.0,
            res.map(|_| String::new()).unwrap_or_else(|e| format!(" (stopped: {e})")),
        );
        for ((conn, dir), (h, n)) in sink.sha1.take().unwrap_or_default() {
            let info = sink.conns[&conn];
            let from = if dir == 0 { info.a } else { info.b };
            println!(
                "  stream {conn} from {from}: {n} bytes, sha1 {}",
                hex::encode(h.finalize())
            );
        }
        if sink.touch == 1 {
            println!();
        }
    }
}
