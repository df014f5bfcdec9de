//! The peer wire protocol as the recorder and the analyzer decode it: both directions of a
//! connection through `event::decode::ConnectionDecoder` (handshake, messages, piece data,
//! BEP 10 extension payloads named with each side's table), in any chunking, with gaps, from a
//! handshake or mid-stream; and every decoded item turned into its event and words.
#![no_main]
use bt_trace::event::decode::{ConnectionDecoder, PeerItem, Start};
use bt_trace::event::Dir;
use bt_trace::wire::{Handshake, Message};
use bt_trace_fuzz::Ops;
use libfuzzer_sys::fuzz_target;

fn on_item(item: PeerItem<'_>) {
    let _ = item.to_decoded();
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops::new(data);
    let cfg = ops.u8();
    let start = |bit: u8| {
        if cfg & bit != 0 {
            Start::Hunt
        } else {
            Start::Handshake
        }
    };
    let mut dec = ConnectionDecoder::with_starts([start(1), start(2)]).hash_pieces(cfg & 4 != 0);
    let mut pos = [0u64; 2];
    if cfg & 8 != 0 {
        pos[1] = u64::from(ops.u16());
        dec.set_start_offset(Dir::S2c, pos[1]);
    }
    let f = &mut on_item;
    while !ops.is_empty() {
        let op = ops.u8();
        let dir = if op & 1 == 0 { Dir::C2s } else { Dir::S2c };
        let i = dir.index();
        if op & 0xe0 == 0xe0 {
            // bytes of this direction never seen
            let lost = u64::from(ops.u16()) + 1;
            pos[i] += lost;
            let _ = dec.gap(dir, lost, pos[i], f);
        } else {
            let chunk = ops.take(usize::from(op >> 1) * 7 + 1);
            pos[i] += chunk.len() as u64;
            dec.push(dir, chunk, f);
        }
        let _ = (
            dec.pending_offset(dir),
            dec.unfinished(dir),
            dec.hunting(dir),
            dec.stopped(dir),
        );
    }
    dec.end(Dir::C2s, f);
    dec.end(Dir::S2c, f);
    // The one-shot parsers on the raw bytes.
    let _ = Handshake::parse(data);
    if let Ok((m, used)) = Message::parse(data) {
        assert!(used <= data.len());
        let _ = format!("{m} {m:?}");
    }
});
