//! Magnet links (BEP 9 `xt` with `btih` and BEP 52 `btmh`, `dn`, `tr`, `x.pe`): parsing, the
//! hashes metadata must match, and the round trip of what parses.
#![no_main]
use bt_trace::magnet::Magnet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    let Ok(link) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Magnet::parse(link) {
        let _ = m.tiers();
        let _ = m.peer_addrs();
        let _ = m.info_hash_hex();
        assert_eq!(m.info_hashes().wire(), m.info_hash);
        let again = Magnet::parse(&m.to_uri());
        assert_eq!(again.ok().map(|a| a.info_hash), Some(m.info_hash));
    }
});
