//! bencode: decoding any bytes, and the round trip of whatever decodes.
#![no_main]
use bt_trace::bencode::{decode, decode_prefix, dict_value_span, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    if let Ok(v) = decode(data) {
        // Decoded keys are sorted, so the encoding is canonical and decodes to the same value.
        let again = encode(&v);
        assert_eq!(decode(&again).ok().as_ref(), Some(&v));
        let _ = v.to_json();
        let _ = v.to_json_hex();
        let _ = format!("{v:?}");
    }
    if let Ok((v, used)) = decode_prefix(data) {
        assert!(used <= data.len());
        assert_eq!(decode(&data[..used]).ok(), Some(v));
    }
    if let Ok(Some(span)) = dict_value_span(data, b"info") {
        assert!(decode(&data[span]).is_ok());
    }
});
