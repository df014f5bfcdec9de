//! The capture reader (pcap in both byte orders and time units, pcapng with its blocks and
//! options) with a small read buffer, and the link, IP and TCP/UDP dissection of every frame
//! it returns.
#![no_main]
use bt_trace::capture::link::dissect;
use bt_trace::capture::reader::CaptureReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    let Ok(mut r) = CaptureReader::with_buffer_len(data, 64) else {
        return;
    };
    let _ = (r.format(), r.link_type());
    while let Ok(Some(p)) = r.next_packet() {
        assert!(p.data.len() <= data.len());
        let _ = dissect(p.link_type, p.data);
    }
    let _ = r.interfaces().len();
    let _ = r.take_warnings();
});
