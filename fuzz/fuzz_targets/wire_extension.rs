//! BEP 10 extension payloads: the extended handshake, ut_metadata (BEP 9) and ut_pex (BEP 11),
//! parsed alone and as `ExtensionMessage` with a receiver's table, and described in words;
//! what parses is emitted and parsed again.
#![no_main]
use bt_trace::event::decode::message_words;
use bt_trace::wire::{ExtendedHandshake, ExtensionMessage, Message, UtMetadata, UtPex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bt_trace_fuzz::HEAP_CAP;
    let Some((&ext_id, payload)) = data.split_first() else {
        return;
    };
    let receiver = ExtendedHandshake::new()
        .with_extension("ut_metadata", 1)
        .with_extension("ut_pex", 2);
    if let Ok(hs) = ExtendedHandshake::parse(payload) {
        let again = ExtendedHandshake::parse(&hs.emit());
        assert!(again.is_ok());
        let _ = hs.to_string();
    }
    if let Ok(m) = UtMetadata::parse(payload) {
        let bytes = m.to_vec();
        assert_eq!(UtMetadata::parse(&bytes).ok(), Some(m));
        let _ = m.to_string();
    }
    if let Ok(p) = UtPex::parse(payload) {
        let _ = UtPex::parse(&p.emit())
            .map(|q| assert_eq!(q.all_added().count(), p.all_added().count()));
        let _ = p.to_string();
        let _ = p.all_dropped().count();
    }
    for recv in [None, Some(&receiver)] {
        if let Ok(m) = ExtensionMessage::parse(ext_id, payload, recv) {
            let _ = m.to_string();
        }
        let _ = message_words(&Message::Extended { ext_id, payload }, recv);
    }
});
