//! Link-layer, IPv4/IPv6 and TCP/UDP header parsing of one frame, for every link type the
//! reader knows (the first two bytes choose it).
#![no_main]
use bt_trace::capture::link::{dissect, LinkType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    let Some((code, frame)) = data.split_first_chunk::<2>() else {
        return;
    };
    let link = LinkType::from_code(u32::from(u16::from_le_bytes(*code)));
    if let Ok(d) = dissect(link, frame) {
        let _ = format!("{d:?}");
    } else if let Err(e) = dissect(link, frame) {
        let _ = e.to_string();
    }
});
