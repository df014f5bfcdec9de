//! TCP reassembly: segments of a few connections in any order, overlapping, retransmitted,
//! with SYN/FIN/RST in any place and capture time jumping, under small buffer and connection
//! limits. Checks that each direction's bytes come out in order, without overlap.
#![no_main]
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use bt_trace::capture::link::{TcpFlags, TcpSegment};
use bt_trace::capture::reassembly::{
    ConnId, Direction, Gap, Reassembler, ReassemblyConfig, StreamSink,
};
use bt_trace_fuzz::Ops;
use libfuzzer_sys::fuzz_target;

/// The next stream offset each direction must deliver (data and gaps advance it).
#[derive(Default)]
struct Order {
    next: HashMap<(u64, usize), u64>,
}

impl StreamSink for Order {
    fn on_data(&mut self, conn: ConnId, dir: Direction, offset: u64, data: &[u8], _: u64, _: i64) {
        let next = self.next.entry((conn.0, dir.index())).or_insert(offset);
        assert!(offset >= *next, "data at {offset} before {next}");
        *next = offset + data.len() as u64;
    }
    fn on_gap(&mut self, conn: ConnId, dir: Direction, gap: &Gap) {
        let _ = format!("{gap:?}");
        let _ = (conn, dir);
    }
}

/// Segment payloads: reassembly never looks at the bytes, only at where they go.
static PAYLOAD: [u8; 255 * 8] = [0x5a; 255 * 8];

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data);
    let cfg = ReassemblyConfig {
        max_buffered_per_direction: 64 + usize::from(ops.u16()),
        max_buffered_total: 256 + 4 * usize::from(ops.u16()),
        idle_timeout_ns: 1_000 + i64::from(ops.u16()) * 1_000,
        max_connections: 1 + usize::from(ops.u8() & 7),
    };
    let mut reasm = Reassembler::new(cfg);
    let mut sink = Order::default();
    let hosts = [
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
    ];
    let mut seq = [0u32; 8];
    let mut ts = 0i64;
    let mut frame = 0;
    while !ops.is_empty() {
        let op = ops.u8();
        // which flow (2 port pairs x 2 directions), then flags, sequence move, length, time step
        let flow = usize::from(op & 3);
        let back = flow & 1 == 1;
        let port = 6881 + (flow >> 1) as u16;
        let flags = ops.u8();
        let step = ops.u16();
        let s = &mut seq[flow];
        *s = if op & 4 != 0 {
            s.wrapping_add(u32::from(step))
        } else {
            s.wrapping_sub(u32::from(step))
        };
        if op & 8 != 0 {
            *s = ops.u32();
        }
        let len = usize::from(ops.u8()) * 8;
        ts += i64::from(op >> 4) * 400;
        frame += 1;
        let seg = TcpSegment {
            src_port: if back { 51413 } else { port },
            dst_port: if back { port } else { 51413 },
            seq: *s,
            ack: 0,
            flags: TcpFlags(u16::from(flags)),
            window: 1024,
            payload: &PAYLOAD[..len],
        };
        let (src, dst) = if back {
            (hosts[1], hosts[0])
        } else {
            (hosts[0], hosts[1])
        };
        reasm.segment(src, dst, &seg, frame, ts, &mut sink);
        assert!(reasm.buffered_bytes() <= cfg.max_buffered_total);
        assert!(reasm.tracked_connections() <= cfg.max_connections);
    }
    reasm.finish(&mut sink);
});
