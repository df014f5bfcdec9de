//! The mainline DHT (BEP 5) in a capture: KRPC messages (bencoded dicts over UDP, on any
//! port) decoded into [`DhtPacket`] event fields, queries paired with their responses by
//! transaction id, and a summary (queries by method, info hashes looked up, peers and nodes
//! learned).
//!
//! A datagram is KRPC when it is a whole bencoded dict (parsed with the depth-capped
//! [`crate::bencode`]) with a `y` of `q`, `r` or `e` and a transaction id `t`; real clients
//! run the DHT and uTP on one UDP port, and a uTP packet never starts with `d`.
//!
//! This module owns the DHT decoding only; it never sees TCP, uTP or trackers, and keeps
//! bounded state (pending queries and summary sets are capped).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::bencode::{self, Value};
use crate::wire::compact;

/// Queries remembered while waiting for their response.
const MAX_PENDING: usize = 4096;
/// Info hashes and peers kept for the summary (later ones are only counted).
const MAX_SET: usize = 1000;

/// One KRPC message, as event fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhtPacket {
    /// `query`, `response` or `error`.
    pub y: String,
    /// The query's method (`ping`, `find_node`, `get_peers`, `announce_peer`, ...); for a
    /// response or error, the method of the query it answers when that query was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Transaction id in hex.
    pub tid: String,
    /// The sender's node id in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// `find_node`'s target, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `get_peers` / `announce_peer`'s info hash, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_hash: Option<String>,
    /// `announce_peer`'s port and `implied_port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implied_port: bool,
    /// The token (hex) of a `get_peers` response or an `announce_peer` query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Nodes of a response (`nodes` and `nodes6`), as `id@address`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Peers of a `get_peers` response (`values`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<SocketAddr>,
    /// An error's code and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The client version `v`, printable bytes as text, others escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

fn hex20(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_bytes)
        .filter(|b| b.len() == 20)
        .map(hex::encode)
}

/// Compact node infos (26 or 38 bytes each: id, then address) as `id@address`.
fn nodes(b: &[u8], v6: bool) -> Vec<String> {
    let each = if v6 { 38 } else { 26 };
    b.chunks_exact(each)
        .filter_map(|n| {
            let addr = compact::parse(&n[20..], v6).ok()?.into_iter().next()?;
            Some(format!("{}@{addr}", hex::encode(&n[..20])))
        })
        .collect()
}

/// Decodes a datagram as a KRPC message, or `None` if it is not one.
pub fn parse_krpc(bytes: &[u8]) -> Option<DhtPacket> {
    if bytes.first() != Some(&b'd') {
        return None;
    }
    let v = bencode::decode(bytes).ok()?;
    let tid = v.get("t")?.as_bytes()?;
    let y = match v.get("y")?.as_bytes()? {
        b"q" => "query",
        b"r" => "response",
        b"e" => "error",
        _ => return None,
    };
    let body = match y {
        "query" => v.get("a"),
        "response" => v.get("r"),
        _ => None,
    };
    let body = body.and_then(|b| b.as_dict().map(|_| b));
    let field = |k: &str| body.and_then(|b| b.get(k));
    let mut p = DhtPacket {
        y: y.into(),
        method: (y == "query")
            .then(|| v.get("q").and_then(Value::as_bytes))
            .flatten()
            .map(|m| String::from_utf8_lossy(m).into_owned()),
        tid: hex::encode(tid),
        node_id: hex20(field("id")),
        target: hex20(field("target")),
        info_hash: hex20(field("info_hash")),
        port: field("port")
            .and_then(Value::as_int)
            .and_then(|p| u16::try_from(p).ok()),
        implied_port: field("implied_port").and_then(Value::as_int) == Some(1),
        token: field("token").and_then(Value::as_bytes).map(hex::encode),
        nodes: Vec::new(),
        peers: Vec::new(),
        error_code: None,
        error: None,
        version: v
            .get("v")
            .and_then(Value::as_bytes)
            .map(|b| b.escape_ascii().to_string()),
    };
    if let Some(b) = field("nodes").and_then(Value::as_bytes) {
        p.nodes.extend(nodes(b, false));
    }
    if let Some(b) = field("nodes6").and_then(Value::as_bytes) {
        p.nodes.extend(nodes(b, true));
    }
    for peer in field("values").and_then(Value::as_list).unwrap_or_default() {
        if let Some(b) = peer.as_bytes() {
            if let Ok(mut a) = compact::parse(b, b.len() == 18) {
                p.peers.append(&mut a);
            }
        }
    }
    if y == "error" {
        let e = v.get("e").and_then(Value::as_list).unwrap_or_default();
        p.error_code = e.first().and_then(Value::as_int);
        p.error = e
            .get(1)
            .and_then(Value::as_bytes)
            .map(|m| String::from_utf8_lossy(m).into_owned());
    }
    Some(p)
}

/// A KRPC message in words: "DHT get_peers query 1a2b… info hash …", "DHT get_peers
/// response: 2 peers, 8 nodes".
pub fn words(p: &DhtPacket) -> String {
    let method = p.method.as_deref().unwrap_or("(unpaired)");
    let mut s = format!("DHT {method} {} t={}", p.y, p.tid);
    let short = |h: &str| h.get(..8).unwrap_or(h).to_string();
    if let Some(h) = &p.info_hash {
        s += &format!(" info_hash {h}");
    }
    if let Some(t) = &p.target {
        s += &format!(" target {}", short(t));
    }
    if let Some(port) = p.port {
        s += &format!(" port {port}");
    }
    if p.implied_port {
        s += " (implied port)";
    }
    if p.y == "response" {
        s += &format!(": {} peers, {} nodes", p.peers.len(), p.nodes.len());
    }
    if let Some(e) = &p.error {
        s += &format!(": error {} {e}", p.error_code.unwrap_or_default());
    }
    s
}

/// What the DHT traffic of a capture amounted to.
#[derive(Debug, Clone, Default)]
pub struct DhtReport {
    pub datagrams: u64,
    /// Queries by method.
    pub queries: BTreeMap<String, u64>,
    pub responses: u64,
    pub errors: u64,
    /// Responses and errors whose query was not seen.
    pub unpaired: u64,
    /// Info hashes in `get_peers` / `announce_peer` queries (hex).
    pub info_hashes: BTreeSet<String>,
    /// Peers in `get_peers` responses.
    pub peers: BTreeSet<SocketAddr>,
    /// Node infos in responses (with repeats).
    pub nodes: u64,
    /// Distinct info hashes or peers past [`MAX_SET`], counted only.
    pub dropped: u64,
}

/// Pairs queries with responses and keeps the [`DhtReport`].
#[derive(Default)]
pub struct Dht {
    /// (querier, queried node, transaction id) → method.
    pending: HashMap<(SocketAddr, SocketAddr, String), String>,
    pub report: DhtReport,
}

impl Dht {
    /// Decodes a datagram from `src` to `dst`; `None` if it is not KRPC. Responses get the
    /// method of their query.
    pub fn datagram(&mut self, src: SocketAddr, dst: SocketAddr, b: &[u8]) -> Option<DhtPacket> {
        let mut p = parse_krpc(b)?;
        let r = &mut self.report;
        r.datagrams += 1;
        if p.y == "query" {
            let m = p.method.clone().unwrap_or_default();
            *r.queries.entry(m.clone()).or_default() += 1;
            if self.pending.len() >= MAX_PENDING {
                self.pending.clear();
            }
            self.pending.insert((src, dst, p.tid.clone()), m);
            if let Some(h) = &p.info_hash {
                insert_capped(&mut r.info_hashes, h.clone(), &mut r.dropped);
            }
        } else {
            if p.y == "response" {
                r.responses += 1;
            } else {
                r.errors += 1;
            }
            p.method = self.pending.remove(&(dst, src, p.tid.clone()));
            if p.method.is_none() {
                r.unpaired += 1;
            }
            r.nodes += p.nodes.len() as u64;
            for a in &p.peers {
                insert_capped(&mut r.peers, *a, &mut r.dropped);
            }
        }
        Some(p)
    }
}

fn insert_capped<T: Ord>(set: &mut BTreeSet<T>, v: T, dropped: &mut u64) {
    if set.len() < MAX_SET {
        set.insert(v);
    } else if !set.contains(&v) {
        *dropped += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn get_peers_query_and_response_pair_up() {
        let q = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:v4:LT\x02\x081:y1:qe";
        let mut node = b"d1:rd2:id20:0123456789abcdefghij5:nodes26:".to_vec();
        node.extend_from_slice(&[7; 20]);
        node.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
        node.extend_from_slice(b"5:token4:tok16:valuesl6:\x7f\x00\x00\x02\x1a\xe2ee1:t2:aa1:y1:re");
        let mut d = Dht::default();
        let pq = d.datagram(a(1), a(2), q).unwrap();
        assert_eq!(pq.method.as_deref(), Some("get_peers"));
        assert_eq!(
            pq.info_hash.as_deref(),
            Some(hex::encode(b"mnopqrstuvwxyz123456").as_str())
        );
        assert_eq!(pq.version.as_deref(), Some("LT\\x02\\x08"));
        let pr = d.datagram(a(2), a(1), &node).unwrap();
        assert_eq!(pr.method.as_deref(), Some("get_peers"));
        assert_eq!(pr.peers, [SocketAddr::from(([127, 0, 0, 2], 6882))]);
        assert_eq!(
            pr.nodes,
            [format!("{}@127.0.0.1:6881", hex::encode([7; 20]))]
        );
        assert_eq!(pr.token.as_deref(), Some("746f6b31"));
        assert_eq!(
            words(&pr),
            "DHT get_peers response t=6161: 1 peers, 1 nodes"
        );
        assert_eq!(
            (d.report.responses, d.report.unpaired, d.report.peers.len()),
            (1, 0, 1)
        );
        assert_eq!(d.report.queries.get("get_peers"), Some(&1));
    }

    #[test]
    fn errors_and_non_krpc() {
        let e = parse_krpc(b"d1:eli201e23:A Generic Error Ocurrede1:t2:xy1:y1:ee").unwrap();
        assert_eq!(
            (e.y.as_str(), e.error_code, e.error.as_deref()),
            ("error", Some(201), Some("A Generic Error Ocurred"))
        );
        assert!(parse_krpc(b"d1:t2:xye").is_none()); // no y
        assert!(parse_krpc(b"d1:t2:xy1:y1:ze").is_none());
        assert!(parse_krpc(b"\x41\x00\x12\x34").is_none());
        assert!(parse_krpc(b"d1:t2:xy1:y1:qe trailing").is_none());
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = Dht::default();
            let _ = d.datagram(a(1), a(2), &b);
            let mut with_d = b"d1:rd5:nodes".to_vec();
            with_d.extend(format!("{}:", b.len()).as_bytes());
            with_d.extend(&b);
            with_d.extend(b"6:valuesl");
            with_d.extend(format!("{}:", b.len()).as_bytes());
            with_d.extend(&b);
            with_d.extend(b"ee1:t1:x1:y1:re");
            let p = d.datagram(a(2), a(1), &with_d);
            prop_assert!(p.is_some());
        }
    }
}
