//! The UDP protocols `analyze` decodes besides trackers and uTP: DHT KRPC messages (BEP 5)
//! and Local Service Discovery announces (BEP 14), parsed, described in words and (for the
//! DHT) written as JSON as the event log does.
#![no_main]
use bt_trace::analyze::{dht, lsd};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    if let Some(p) = dht::parse_krpc(data) {
        let _ = dht::words(&p);
        let json = serde_json::to_string(&p).expect("a DHT packet is JSON");
        let back: dht::DhtPacket = serde_json::from_str(&json).expect("and back");
        assert_eq!(back, p);
    }
    if let Some(a) = lsd::parse(data) {
        let _ = lsd::words(&a);
    }
});
