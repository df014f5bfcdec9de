//! From bytes to trace events, with no I/O: the one place where a connection's byte streams
//! become [`EventKind`]s. The recorder feeds it the bytes bt-trace wrote and read; the capture
//! analyzer feeds it reassembled TCP streams. Both therefore describe the same bytes with the
//! same events (`analyze` on a bt-trace trace gives back the trace's JSON Lines).
//!
//! - [`ConnectionDecoder`]: a BitTorrent peer connection, two [`StreamDecoder`]s (one per
//!   direction) plus each side's BEP 10 extension table, so that an extended message is
//!   named with the ids its *receiver* announced.
//! - [`decode_http_request`] / [`decode_http_response`]: an HTTP tracker exchange.
//! - [`decode_udp`]: a BEP 15 datagram.
//!
//! Every decoded item comes with its stream offset and length, so the caller can tell which
//! frames carry it, and with a sentence for a packet comment ("request piece 7 begin 16384
//! length 16384").
//!
//! Contract: nothing here panics, for any bytes in any chunking. A direction that stops
//! making sense gives one [`EventKind::ProtocolError`] and is not decoded further.

use crate::tracker::http1::{parse_http_request, parse_http_response, HttpError};
use crate::tracker::query::parse_announce_query;
use crate::tracker::reply::{parse_announce_response, parse_scrape_response};
use crate::tracker::TrackerError;
use crate::wire::{
    extension::EXTENDED_HANDSHAKE_ID, ExtendedHandshake, ExtensionMessage, Item, Message,
    StreamDecoder,
};

use super::event::{scrape_entries, AnnounceFields, Dir, EventKind, HandshakeFields, Msg};
use super::event::{TrackerReply, UdpPacket};

/// One decoded item of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The direction whose stream it is in.
    pub dir: Dir,
    /// Stream offset of its first byte.
    pub offset: u64,
    /// Its length on the wire.
    pub len: u64,
    /// The event ([`EventKind::Handshake`], [`EventKind::Message`],
    /// [`EventKind::ProtocolError`], or for HTTP the tracker request/response).
    pub kind: EventKind,
    /// The item in words, for a packet comment.
    pub words: String,
}

impl Decoded {
    /// Stream offset one past its last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// One direction of a peer connection.
#[derive(Debug)]
struct Side {
    dec: StreamDecoder,
    /// The extended handshake this side sent (its `m` names the ids it wants to receive).
    ext: Option<ExtendedHandshake>,
    /// Stopped after a protocol error.
    failed: bool,
}

/// Decodes both directions of one BitTorrent peer connection. See the [module docs](self).
#[derive(Debug)]
pub struct ConnectionDecoder {
    sides: [Side; 2],
}

impl Default for ConnectionDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionDecoder {
    /// A decoder for a connection seen from its start: each direction begins with the
    /// 68-byte handshake.
    pub fn new() -> Self {
        Self::with(StreamDecoder::new)
    }

    /// A decoder for streams that may start with a handshake or with a message (a capture
    /// picked up mid-connection).
    pub fn auto_detect() -> Self {
        Self::with(StreamDecoder::auto_detect)
    }

    fn with(make: fn() -> StreamDecoder) -> Self {
        let side = || Side {
            dec: make(),
            ext: None,
            failed: false,
        };
        ConnectionDecoder {
            sides: [side(), side()],
        }
    }

    /// The extended handshake the sender of `dir` announced, if seen.
    pub fn extensions(&self, dir: Dir) -> Option<&ExtendedHandshake> {
        self.sides[dir.index()].ext.as_ref()
    }

    /// Whether `dir` stopped at a protocol error.
    pub fn failed(&self, dir: Dir) -> bool {
        self.sides[dir.index()].failed
    }

    /// Stream offset of the first byte of `dir` not yet decoded (the start of an unfinished
    /// message).
    pub fn pending_offset(&self, dir: Dir) -> u64 {
        self.sides[dir.index()].dec.offset()
    }

    /// Feeds the next `bytes` of direction `dir` and appends every item they complete to
    /// `out`, in stream order.
    pub fn push(&mut self, dir: Dir, bytes: &[u8], out: &mut Vec<Decoded>) {
        let (tx, rx) = match dir {
            Dir::C2s => (0, 1),
            Dir::S2c => (1, 0),
        };
        let [a, b] = &mut self.sides;
        let (side, other) = if tx == 0 { (a, b) } else { (b, a) };
        debug_assert_eq!(rx, 1 - tx);
        if side.failed {
            return;
        }
        side.dec.push(bytes);
        loop {
            let d = match side.dec.next_item() {
                Ok(Some(d)) => d,
                Ok(None) => break,
                Err(e) => {
                    side.failed = true;
                    out.push(Decoded {
                        dir,
                        offset: e.offset,
                        len: 0,
                        words: format!("protocol error: {}", e.error),
                        kind: EventKind::ProtocolError {
                            offset: e.offset,
                            error: e.error.to_string(),
                        },
                    });
                    // Free the buffer: nothing more is decoded in this direction.
                    side.dec = StreamDecoder::messages_only();
                    break;
                }
            };
            let (offset, len) = (d.offset, d.bytes.len() as u64);
            let (kind, words) = match d.item {
                Item::Handshake(h) => {
                    let hs = HandshakeFields::from_handshake(&h);
                    let words = format!("{h} ({})", hs.client);
                    (EventKind::Handshake { offset, len, hs }, words)
                }
                Item::Message(m) => {
                    let words = message_words(&m, other.ext.as_ref());
                    let msg = Msg::from_message(&m, other.ext.as_ref());
                    if let Message::Extended {
                        ext_id: EXTENDED_HANDSHAKE_ID,
                        payload,
                    } = m
                    {
                        if let Ok(h) = ExtendedHandshake::parse(payload) {
                            side.ext = Some(h);
                        }
                    }
                    (EventKind::Message { offset, len, msg }, words)
                }
            };
            out.push(Decoded {
                dir,
                offset,
                len,
                kind,
                words,
            });
        }
    }
}

/// A message in words: [`Message`]'s `Display`, with extended payloads decoded. Used for the
/// recorder's packet comments and the analyzer's `--messages` lines alike.
pub fn message_words(m: &Message<'_>, receiver: Option<&ExtendedHandshake>) -> String {
    match *m {
        Message::Extended { ext_id, payload } => {
            match ExtensionMessage::parse(ext_id, payload, receiver) {
                Ok(e) => e.to_string(),
                Err(e) => format!("extended id {ext_id}: {e}"),
            }
        }
        Message::Piece { index, begin, data } => {
            format!("piece {index} begin {begin} length {}", data.len())
        }
        _ => m.to_string(),
    }
}

/// Decodes an HTTP request to a tracker at the start of `bytes`. `None` while the head is
/// incomplete. Announce queries are decoded; other targets (scrape) are shown as they are.
pub fn decode_http_request(bytes: &[u8]) -> Option<Decoded> {
    let (kind, used, words) = match parse_http_request(bytes) {
        Ok((head, used)) => {
            let path = head.target.split('?').next().unwrap_or_default();
            let is_announce = path.rsplit('/').next().unwrap_or_default() == "announce";
            let (announce, error) = if is_announce {
                match parse_announce_query(&head.target) {
                    Ok(q) => (Some(AnnounceFields::from_query(&q)), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            } else {
                (None, None)
            };
            let words = match &announce {
                Some(a) => format!(
                    "tracker announce{}{}",
                    a.event
                        .as_deref()
                        .filter(|e| !e.is_empty())
                        .map(|e| format!(" event {e}"))
                        .unwrap_or_default(),
                    a.left.map(|l| format!(" left {l}")).unwrap_or_default()
                ),
                None => format!("tracker request {} {}", head.method, path),
            };
            let kind = EventKind::TrackerHttpRequest {
                offset: 0,
                len: used as u64,
                host: head.header("host").map(str::to_string),
                method: head.method,
                target: head.target,
                announce,
                error,
            };
            (kind, used, words)
        }
        Err(HttpError::Incomplete) => return None,
        Err(e) => {
            let kind = EventKind::ProtocolError {
                offset: 0,
                error: format!("HTTP request: {e}"),
            };
            (kind, 0, format!("bad HTTP request: {e}"))
        }
    };
    Some(Decoded {
        dir: Dir::C2s,
        offset: 0,
        len: used as u64,
        kind,
        words,
    })
}

/// Decodes a tracker's HTTP response at the start of `bytes` (`at_eof`: the server has
/// closed, so a body without a length ends here). `scrape` says the request was a scrape.
/// `None` while incomplete.
pub fn decode_http_response(bytes: &[u8], at_eof: bool, scrape: bool) -> Option<Decoded> {
    let (kind, used, words) = match parse_http_response(bytes, at_eof, bytes.len()) {
        Ok((r, used)) => {
            let (response, error) = if r.status != 200 {
                (None, None)
            } else if scrape {
                match parse_scrape_response(&r.body) {
                    Ok(files) => (
                        Some(TrackerReply::Scrape {
                            files: scrape_entries(&files),
                        }),
                        None,
                    ),
                    Err(e) => (None, Some(e.to_string())),
                }
            } else {
                match parse_announce_response(&r.body) {
                    Ok(a) => (Some(TrackerReply::from_announce(&a)), None),
                    Err(TrackerError::Failure(reason)) => {
                        (Some(TrackerReply::Failure { reason }), None)
                    }
                    Err(e) => (None, Some(e.to_string())),
                }
            };
            let words = match &response {
                Some(TrackerReply::Announce {
                    interval, peers, ..
                }) => format!(
                    "tracker response: interval {interval}, {} peer{}",
                    peers.len(),
                    if peers.len() == 1 { "" } else { "s" }
                ),
                Some(TrackerReply::Failure { reason }) => format!("tracker failure: {reason}"),
                Some(TrackerReply::Scrape { files }) => {
                    format!("tracker scrape response: {} torrents", files.len())
                }
                None => format!("tracker response HTTP {} {}", r.status, r.reason),
            };
            let kind = EventKind::TrackerHttpResponse {
                offset: 0,
                len: used as u64,
                status: r.status,
                reason: r.reason,
                body_len: r.body.len() as u64,
                response,
                error,
            };
            (kind, used, words)
        }
        Err(HttpError::Incomplete) => return None,
        Err(e) => {
            let kind = EventKind::ProtocolError {
                offset: 0,
                error: format!("HTTP response: {e}"),
            };
            (kind, 0, format!("bad HTTP response: {e}"))
        }
    };
    Some(Decoded {
        dir: Dir::S2c,
        offset: 0,
        len: used as u64,
        kind,
        words,
    })
}

/// Decodes a BEP 15 datagram sent to a tracker (`to_tracker`) or by one; `ipv6` if it went
/// over IPv6. Returns the event and its words.
pub fn decode_udp(bytes: &[u8], to_tracker: bool, ipv6: bool) -> (EventKind, String) {
    let packet = UdpPacket::decode(bytes, to_tracker, ipv6);
    let words = match &packet {
        UdpPacket::ConnectRequest { .. } => "UDP tracker connect request".to_string(),
        UdpPacket::ConnectResponse { .. } => "UDP tracker connect response".to_string(),
        UdpPacket::AnnounceRequest { event, left, .. } => {
            format!("UDP tracker announce event {event} left {left}")
        }
        UdpPacket::AnnounceResponse {
            interval, peers, ..
        } => format!(
            "UDP tracker announce response: interval {interval}, {} peers",
            peers.len()
        ),
        UdpPacket::ScrapeRequest { info_hashes, .. } => {
            format!("UDP tracker scrape of {} torrents", info_hashes.len())
        }
        UdpPacket::ScrapeResponse { .. } => "UDP tracker scrape response".to_string(),
        UdpPacket::Error { message, .. } => format!("UDP tracker error: {message}"),
        UdpPacket::Unknown { action, .. } => format!("UDP tracker action {action}"),
        UdpPacket::Invalid { error, .. } => format!("not a UDP tracker packet: {error}"),
    };
    let kind = EventKind::TrackerUdp {
        len: bytes.len() as u64,
        packet,
    };
    (kind, words)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::trace::event::ExtPayload;
    use crate::wire::{BlockRef, Handshake, Reserved};

    /// A handshake (extension protocol on, info hash all 7s) from `peer`.
    pub(crate) fn hs(peer: &[u8; 20]) -> Vec<u8> {
        Handshake::new(Reserved::new().with_extended(), [7; 20], *peer)
            .emit()
            .to_vec()
    }

    /// An extended message, encoded.
    pub(crate) fn ext(id: u8, payload: &[u8]) -> Vec<u8> {
        Message::Extended {
            ext_id: id,
            payload,
        }
        .to_vec()
    }

    /// Both directions, fed one byte at a time, interleaved: the same items as fed whole.
    #[test]
    fn decodes_both_directions_in_any_chunking() {
        let mut c2s = hs(b"-bt0100-aaaaaaaaaaaa");
        c2s.extend(ext(0, b"d1:md11:ut_metadatai3eee"));
        c2s.extend(Message::Request(BlockRef::new(1, 0, 4)).to_vec());
        let mut s2c = hs(b"-TR3000-bbbbbbbbbbbb");
        s2c.extend(ext(0, b"d1:md11:ut_metadatai5eee"));
        // The server sends ut_metadata with the *client's* id 3.
        s2c.extend(ext(3, b"d8:msg_typei0e5:piecei0ee"));
        s2c.extend(
            Message::Piece {
                index: 1,
                begin: 0,
                data: b"abcd",
            }
            .to_vec(),
        );

        let mut whole = Vec::new();
        let mut d = ConnectionDecoder::new();
        d.push(Dir::C2s, &c2s, &mut whole);
        d.push(Dir::S2c, &s2c, &mut whole);

        let mut bytewise = Vec::new();
        let mut d = ConnectionDecoder::new();
        for i in 0..c2s.len().max(s2c.len()) {
            if let Some(b) = c2s.get(i) {
                d.push(Dir::C2s, &[*b], &mut bytewise);
            }
            if let Some(b) = s2c.get(i) {
                d.push(Dir::S2c, &[*b], &mut bytewise);
            }
        }
        let key = |v: &[Decoded], dir| {
            v.iter()
                .filter(|x| x.dir == dir)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&whole, Dir::C2s), key(&bytewise, Dir::C2s));
        assert_eq!(key(&whole, Dir::S2c), key(&bytewise, Dir::S2c));

        let s2c_items = key(&whole, Dir::S2c);
        assert_eq!(s2c_items.len(), 4);
        assert_eq!(s2c_items[0].offset, 0);
        assert_eq!(s2c_items[0].len, 68);
        assert!(s2c_items[0].words.contains("Transmission 3.00"));
        match &s2c_items[2].kind {
            EventKind::Message {
                msg: Msg::Extended { name, payload, .. },
                ..
            } => {
                assert_eq!(name.as_deref(), Some("ut_metadata"));
                assert!(matches!(
                    payload,
                    ExtPayload::UtMetadata { msg_type: 0, .. }
                ));
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(s2c_items[2].words, "ut_metadata request piece 0");
        assert_eq!(s2c_items[3].words, "piece 1 begin 0 length 4");
        assert_eq!(s2c_items[3].end(), s2c.len() as u64);
        let c2s_items = key(&whole, Dir::C2s);
        assert_eq!(c2s_items[2].words, "request piece 1 begin 0 length 4");
    }

    #[test]
    fn a_broken_direction_reports_once_and_stops() {
        let mut out = Vec::new();
        let mut d = ConnectionDecoder::new();
        d.push(Dir::S2c, &[0x42; 100], &mut out);
        d.push(Dir::S2c, &[0x42; 100], &mut out);
        assert_eq!(out.len(), 1);
        assert!(matches!(
            out[0].kind,
            EventKind::ProtocolError { offset: 0, .. }
        ));
        assert!(d.failed(Dir::S2c));
        assert!(!d.failed(Dir::C2s));
    }

    #[test]
    fn http_announce_and_response() {
        let req = b"GET /announce?info_hash=%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab%ab&peer_id=-bt0100-aaaaaaaaaaaa&port=6881&uploaded=0&downloaded=0&left=10&compact=1&event=started HTTP/1.1\r\nHost: t:1\r\n\r\n";
        let d = decode_http_request(req).unwrap();
        assert_eq!(d.len, req.len() as u64);
        assert_eq!(d.words, "tracker announce event started left 10");
        match d.kind {
            EventKind::TrackerHttpRequest { announce, host, .. } => {
                let a = announce.unwrap();
                assert_eq!(a.client.as_deref(), Some("bt-trace 0.1.0"));
                assert_eq!(a.left, Some(10));
                assert_eq!(host.as_deref(), Some("t:1"));
            }
            k => panic!("{k:?}"),
        }
        assert!(decode_http_request(&req[..20]).is_none());

        let body = b"d8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e";
        let mut resp =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        resp.extend_from_slice(body);
        assert!(decode_http_response(&resp[..resp.len() - 1], false, false).is_none());
        let d = decode_http_response(&resp, false, false).unwrap();
        assert_eq!(d.words, "tracker response: interval 1800, 1 peer");
        let failure = b"HTTP/1.1 200 OK\r\n\r\nd14:failure reason4:nopee";
        let d = decode_http_response(failure, true, false).unwrap();
        assert_eq!(d.words, "tracker failure: nope");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                        b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
                        cut in 0usize..300) {
            let mut out = Vec::new();
            let mut d = ConnectionDecoder::auto_detect();
            let cut = cut.min(a.len());
            d.push(Dir::C2s, &a[..cut], &mut out);
            d.push(Dir::S2c, &b, &mut out);
            d.push(Dir::C2s, &a[cut..], &mut out);
            let _ = decode_http_request(&a);
            let _ = decode_http_response(&b, true, false);
            let _ = decode_udp(&a, true, false);
            let _ = decode_udp(&b, false, true);
        }
    }
}
