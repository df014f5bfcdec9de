//! .torrent files (BEP 3/12/52-free v1 metainfo) and BEP 9 metadata: parsing and what the
//! client then asks of the result (piece ranges, file spans, paths).
#![no_main]
use bt_trace::metainfo::{Info, InfoHashes, Torrent};
use libfuzzer_sys::fuzz_target;

fn exercise(info: &Info) {
    let n = info.num_pieces();
    for i in [0, 1, n.saturating_sub(1), n, n + 1] {
        let _ = info.piece_len(i);
        let _ = info.piece_hash(i);
        if let Some(r) = info.piece_range(i) {
            let _ = info.file_spans(r);
        }
    }
    let _ = info.file_spans(0..u64::MAX);
    let _ = info.info_hash();
}

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    if let Ok(t) = Torrent::parse(data) {
        exercise(&t.info);
        for f in &t.info.files {
            let _ = f.relative_path();
            let _ = f.display_path();
            let _ = f.range();
        }
        let _ = t.tiers();
        let _ = t.tracker_url();
        let _ = t.info_hash_hex();
        let _ = bt_trace::magnet::Magnet::from_torrent(&t).to_uri();
    }
    if let Ok(info) = Info::from_raw_bytes(data) {
        exercise(&info);
        // BEP 9: the metadata checks against every hash a magnet link for it would name
        let expected = match &info.v2 {
            None => InfoHashes::V1(info.info_hash()),
            Some(v2) if info.has_v1() => InfoHashes::Hybrid(info.info_hash(), v2.info_hash),
            Some(v2) => InfoHashes::V2(v2.info_hash),
        };
        assert_eq!(expected.wire(), info.info_hash());
        assert!(Info::from_metadata(data, &expected).is_ok());
    }
});
