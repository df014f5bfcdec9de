//! UDP tracker datagrams (BEP 15) both ways: replies as the client reads them (IPv4 and IPv6
//! peer lists), requests as the built-in tracker reads them, and the recorder's words for
//! both; what parses is emitted and parsed again.
#![no_main]
use bt_trace::event::decode::decode_udp;
use bt_trace::tracker::udp::{parse_request, parse_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    for ipv6 in [false, true] {
        if let Ok((r, used)) = parse_response(data, ipv6) {
            assert!(used <= data.len());
            let again = parse_response(&r.emit(), ipv6);
            assert_eq!(again.ok().map(|(a, _)| a), Some(r));
        }
        for to_tracker in [false, true] {
            let _ = decode_udp(data, to_tracker, ipv6);
        }
    }
    if let Ok((r, used)) = parse_request(data) {
        assert!(used <= data.len());
        let again = parse_request(&r.emit());
        assert_eq!(again.ok().map(|(a, _)| a), Some(r));
    }
});
