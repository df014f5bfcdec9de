//! The demo's table per peer, computed from the trace's JSON Lines (so the table shows what
//! the trace holds, and a student can recompute it): the peer's client, the pieces and bytes
//! it sent us, and the messages each way.
//!
//! Reads only the `.jsonl` file it is given; never writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use comfy_table::{presets, Cell, CellAlignment, ContentArrangement, Table};
use serde_json::Value;

/// What one peer did in the trace (all its connections together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerRow {
    pub addr: Option<SocketAddr>,
    /// The client its peer id names.
    pub client: String,
    /// Distinct pieces it sent us blocks of.
    pub pieces: u64,
    /// Blocks (`piece` messages) it sent us.
    pub blocks: u64,
    /// Block bytes it sent us.
    pub bytes: u64,
    /// Messages we sent it (handshake included).
    pub sent: u64,
    /// Messages it sent us (handshake included).
    pub received: u64,
    /// ut_metadata messages it sent us (a magnet download's metadata exchange).
    pub metadata: u64,
}

#[derive(Default)]
struct Conn {
    ours: Option<SocketAddr>,
    theirs: Option<SocketAddr>,
    peer_wire: bool,
    row: PeerRow,
    pieces: BTreeSet<u64>,
}

/// Reads the trace's events and sums them per peer address, in address order.
pub fn peers_from_jsonl(path: &Path) -> Result<Vec<PeerRow>> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    for (n, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let e: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), n + 1))?;
        let Some(id) = e.get("conn").and_then(Value::as_u64) else {
            continue;
        };
        let addr = |k: &str| {
            e.get(k)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
        };
        let (src, dst): (Option<SocketAddr>, Option<SocketAddr>) = (addr("src"), addr("dst"));
        let c = conns.entry(id).or_default();
        match e.get("kind").and_then(Value::as_str) {
            Some("conn_opened") => {
                let we_dialed = e.get("local").and_then(Value::as_str) != Some("server");
                (c.ours, c.theirs) = if we_dialed { (src, dst) } else { (dst, src) };
            }
            Some("handshake") => {
                c.peer_wire = true;
                if src == c.ours {
                    c.row.sent += 1;
                } else {
                    c.row.received += 1;
                    let client = e.get("client").and_then(Value::as_str).unwrap_or("?");
                    c.row.client = client.to_string();
                }
            }
            Some("message") => {
                if src == c.ours {
                    c.row.sent += 1;
                    continue;
                }
                c.row.received += 1;
                let msg = e.get("msg");
                let field = |k: &str| msg.and_then(|m| m.get(k)).and_then(Value::as_u64);
                match msg.and_then(|m| m.get("type")).and_then(Value::as_str) {
                    Some("piece") => {
                        c.row.blocks += 1;
                        c.row.bytes += field("length").unwrap_or(0);
                        c.pieces.extend(field("index"));
                    }
                    Some("extended")
                        if msg.and_then(|m| m.get("name")).and_then(Value::as_str)
                            == Some("ut_metadata") =>
                    {
                        c.row.metadata += 1
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut peers: BTreeMap<Option<SocketAddr>, (PeerRow, BTreeSet<u64>)> = BTreeMap::new();
    for c in conns.into_values().filter(|c| c.peer_wire) {
        let (row, pieces) = peers.entry(c.theirs).or_default();
        row.addr = c.theirs;
        if row.client.is_empty() {
            row.client = c.row.client;
        }
        row.blocks += c.row.blocks;
        row.bytes += c.row.bytes;
        row.sent += c.row.sent;
        row.received += c.row.received;
        row.metadata += c.row.metadata;
        pieces.extend(c.pieces);
    }
    Ok(peers
        .into_values()
        .map(|(mut row, pieces)| {
            row.pieces = pieces.len() as u64;
            row
        })
        .collect())
}

/// The table: one row per peer, `who` naming the peers the demo started (by address).
pub fn table(rows: &[PeerRow], who: impl Fn(SocketAddr) -> Option<String>) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            "peer",
            "started as",
            "client (peer id)",
            "pieces",
            "blocks",
            "MiB received",
            "messages sent",
            "messages received",
        ]);
    for r in rows {
        let addr = r.addr.map_or_else(|| "?".to_string(), |a| a.to_string());
        let started = r.addr.and_then(&who).unwrap_or_else(|| "-".into());
        let mut received = r.received.to_string();
        if r.metadata > 0 {
            received += &format!(" ({} ut_metadata)", r.metadata);
        }
        let num = |n: String| Cell::new(n).set_alignment(CellAlignment::Right);
        t.add_row(vec![
            Cell::new(addr),
            Cell::new(started),
            Cell::new(&r.client),
            num(r.pieces.to_string()),
            num(r.blocks.to_string()),
            num(format!("{:.2}", r.bytes as f64 / 1048576.0)),
            num(r.sent.to_string()),
            num(received),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_per_peer_from_events() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("t.jsonl");
        let lines = [
            r#"{"v":1,"ts":1,"conn":0,"src":"127.0.0.1:5000","dst":"127.0.0.1:6969","frames":[1],"kind":"conn_opened","local":"client"}"#,
            r#"{"v":1,"ts":2,"conn":1,"src":"127.0.0.1:5001","dst":"127.0.0.1:7000","frames":[1],"kind":"conn_opened","local":"client"}"#,
            r#"{"v":1,"ts":3,"conn":1,"src":"127.0.0.1:5001","dst":"127.0.0.1:7000","dir":"c2s","frames":[4],"kind":"handshake","offset":0,"len":68,"reserved":"","extensions":[],"info_hash":"","peer_id":"","client":"bt-trace 0.1.0"}"#,
            r#"{"v":1,"ts":4,"conn":1,"src":"127.0.0.1:7000","dst":"127.0.0.1:5001","dir":"s2c","frames":[5],"kind":"handshake","offset":0,"len":68,"reserved":"","extensions":[],"info_hash":"","peer_id":"","client":"aria2 1.36.0"}"#,
            r#"{"v":1,"ts":5,"conn":1,"src":"127.0.0.1:5001","dst":"127.0.0.1:7000","dir":"c2s","frames":[6],"kind":"message","offset":68,"len":17,"msg":{"type":"request","index":2,"begin":0,"length":16384}}"#,
            r#"{"v":1,"ts":6,"conn":1,"src":"127.0.0.1:7000","dst":"127.0.0.1:5001","dir":"s2c","frames":[7],"kind":"message","offset":68,"len":16397,"msg":{"type":"piece","index":2,"begin":0,"length":16384,"sha1":""}}"#,
            r#"{"v":1,"ts":7,"conn":1,"src":"127.0.0.1:7000","dst":"127.0.0.1:5001","dir":"s2c","frames":[8],"kind":"message","offset":68,"len":16397,"msg":{"type":"piece","index":2,"begin":16384,"length":16384,"sha1":""}}"#,
            r#"{"v":1,"ts":8,"conn":1,"src":"127.0.0.1:7000","dst":"127.0.0.1:5001","dir":"s2c","frames":[9],"kind":"message","offset":0,"len":580,"msg":{"type":"extended","ext_id":1,"name":"ut_metadata","payload":{"ext":"ut_metadata","msg_type":1,"piece":0,"total_size":531,"data_len":531}}}"#,
        ];
        std::fs::write(&p, lines.join("\n") + "\n").expect("write");
        let rows = peers_from_jsonl(&p).expect("read");
        assert_eq!(
            rows.len(),
            1,
            "the tracker connection is not a peer: {rows:?}"
        );
        let r = &rows[0];
        assert_eq!(r.addr, Some("127.0.0.1:7000".parse().expect("addr")));
        assert_eq!(r.client, "aria2 1.36.0");
        assert_eq!((r.pieces, r.blocks, r.bytes), (1, 2, 32768));
        assert_eq!((r.sent, r.received, r.metadata), (2, 4, 1));
        let shown = table(&rows, |_| Some("aria2c".into())).to_string();
        assert!(
            shown.contains("aria2 1.36.0") && shown.contains("0.03"),
            "{shown}"
        );
        assert!(shown.contains("4 (1 ut_metadata)"), "{shown}");
    }
}
