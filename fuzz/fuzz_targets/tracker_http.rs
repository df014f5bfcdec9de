//! HTTP tracker replies: the HTTP/1.1 response parser (chunked, Content-Length, to EOF), the
//! bencoded announce and scrape bodies (BEP 3/23/7/48), and the recorder's decoding of both
//! directions of a tracker exchange.
#![no_main]
use bt_trace::event::decode::{decode_http_request, decode_http_response};
use bt_trace::tracker::http1::{decode_chunked, parse_http_response};
use bt_trace::tracker::reply::{parse_announce_response, parse_scrape_response};
use libfuzzer_sys::fuzz_target;

const MAX_BODY: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    for at_eof in [false, true] {
        if let Ok((resp, used)) = parse_http_response(data, at_eof, MAX_BODY) {
            assert!(used <= data.len());
            let _ = resp.header("content-type");
            let _ = parse_announce_response(&resp.body);
        }
        for scrape in [false, true] {
            let _ = decode_http_response(data, at_eof, scrape);
        }
    }
    if let Ok((body, used)) = decode_chunked(data, MAX_BODY) {
        assert!(used <= data.len() && body.len() <= MAX_BODY);
    }
    let _ = parse_announce_response(data);
    let _ = parse_scrape_response(data);
    let _ = decode_http_request(data);
});
