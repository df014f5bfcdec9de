//! .torrent files (BEP 3/12/47 and BitTorrent v2, BEP 52: v2-only and hybrid torrents, the
//! `file tree`, `piece layers`, the hybrid consistency check) and BEP 9 metadata: parsing, what
//! the client then asks of the result (piece ranges, file spans, paths), and everything `info`
//! and `info --json` print for it.
#![no_main]
use bt_trace::cli::output;
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
    // the byte space has no hole and no overlap, and adds up to the total
    let mut end = 0u64;
    for f in &info.files {
        assert_eq!(
            f.offset, end,
            "file {:?} does not start where the last one ended",
            f.path
        );
        end = f.range().end;
    }
    assert_eq!(end, info.total_length);
    if info.has_v1() {
        assert_eq!(info.piece_count(), n as u64);
    }
    if let Some(v2) = &info.v2 {
        assert_eq!(info.meta_version(), 2);
        let pl = info.piece_length;
        for f in &v2.files {
            let _ = f.layer_len(pl);
            assert!(f.pieces_root.is_some() || f.length == 0);
        }
        if info.has_v1() {
            // a hybrid was only accepted if its v1 files are the v2 ones
            let v1: Vec<_> = info.files.iter().filter(|f| !f.padding).collect();
            assert_eq!(v1.len(), v2.files.len());
            for (a, b) in v1.iter().zip(&v2.files) {
                assert_eq!((&a.path, a.length), (&b.path, b.length));
            }
        } else {
            // v2-only: every file starts a piece, the wire hash is the truncated SHA-256
            assert_eq!(info.info_hash(), v2.truncated_hash());
            assert_eq!(v2.num_pieces(pl), info.piece_count());
            for f in info.files.iter().filter(|f| !f.padding) {
                assert_eq!(f.offset % pl, 0, "{:?} does not start a piece", f.path);
            }
        }
    }
}

/// What `info` and `info --json` print, written to memory.
fn render(t: &Torrent) {
    let mut out = Vec::new();
    output::write_info(&mut out, t).expect("writing to memory");
    output::write_files(&mut out, t).expect("writing to memory");
    output::write_v2(&mut out, t).expect("writing to memory");
    output::write_tiers(&mut out, t).expect("writing to memory");
    output::write_json(&mut out, &output::info_json(t)).expect("writing to memory");
    let l = &t.piece_layers;
    assert!(l.present <= l.needed);
}

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    if let Ok(t) = Torrent::parse(data) {
        exercise(&t.info);
        for f in &t.info.files {
            let _ = f.relative_path();
            let _ = f.display_path();
            let _ = f.attr();
        }
        let _ = t.tiers();
        let _ = t.tracker_url();
        let _ = t.info_hash_hex();
        let _ = t.warnings();
        // what a download checks first: v1 piece hashes, or a v2-only torrent's piece layers
        // against their `pieces root`s
        if let Ok(h) = bt_trace::download::verify::PieceHashes::of(&t) {
            let _ = h.num_pieces();
            if let Some(v2) = h.v2() {
                let n = v2.num_pieces();
                for i in [0, n / 2, n.saturating_sub(1)] {
                    let _ = v2.data_len(i);
                    let _ = v2.block_request(i);
                }
            }
        }
        render(&t);
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
        let t = Torrent::from_info(info, vec![vec!["http://127.0.0.1:1/announce".into()]]);
        render(&t);
    }
});
