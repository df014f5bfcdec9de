//! uTP (BEP 29): packet headers and extension chains, and datagrams of one connection
//! (framed: a direction byte, a 2-byte length, the datagram) through the reassembler that
//! `analyze` uses, with the stats it keeps consistent.
#![no_main]
use bt_trace::capture::utp::{parse, reassemble_framed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    if let Ok((_, payload)) = parse(data) {
        assert!(payload.len() <= data.len());
    }
    let s = reassemble_framed(data);
    assert!(s.duplicate_packets <= s.packets);
});
