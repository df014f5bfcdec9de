//! Link-layer, IPv4/IPv6 and TCP/UDP header parsing of one frame, for every link type the
//! reader knows (the first byte chooses it, see `LINKS`).
#![no_main]
use bt_trace::capture::link::{dissect, LinkType};
use libfuzzer_sys::fuzz_target;

/// The LINKTYPE codes the first byte picks from (modulo their number); 147 is one the reader
/// does not know. `fuzz/seeds.py` writes the same index.
const LINKS: [u32; 9] = [0, 1, 101, 108, 113, 276, 228, 229, 147];

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let link = LinkType::from_code(LINKS[usize::from(pick) % LINKS.len()]);
    if let Ok(d) = dissect(link, frame) {
        let _ = format!("{d:?}");
    } else if let Err(e) = dissect(link, frame) {
        let _ = e.to_string();
    }
});
