//! What the built-in tracker reads from a client: the HTTP request head, then the announce
//! and scrape query strings of its target.
#![no_main]
use bt_trace::tracker::http1::parse_http_request;
use bt_trace::tracker::query::{parse_announce_query, parse_scrape_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    if let Ok((head, used)) = parse_http_request(data) {
        assert!(used <= data.len());
        let _ = head.header("host");
        let query = head.target.split_once('?').map_or("", |(_, q)| q);
        if let Ok(q) = parse_announce_query(query) {
            let _ = q.event();
        }
        let _ = parse_scrape_query(query);
    }
    let text = String::from_utf8_lossy(data);
    let _ = parse_announce_query(&text);
    let _ = parse_scrape_query(&text);
});
