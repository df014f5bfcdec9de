//! `bt-trace demo --reproducible`: what makes two runs give byte-identical traces.
//!
//! - **Peer ids and ports are fixed**: the seeders are `-bt0100-demo-seed-01`, `…-02`, … on
//!   the ports after the tracker's (`--port` + 1, + 2, …) and the downloader is
//!   `-bt0100-demo-leecher` on the next one.
//! - **One piece at a time, from a fixed seeder**: piece `i` comes from seeder `i mod N`. The
//!   download runs in one phase per piece; phase `i` asks seeder `i mod N` (and nobody else,
//!   no tracker) for piece `i`, with the pieces of the earlier phases already on disk. So
//!   which peer gives which piece, and in which order the blocks are asked for, is fixed by
//!   the data, and no two connections are open at once.
//! - **A logical clock and fixed sequence numbers** (the recorder's deterministic mode), and
//!   each connection handed to the recorder whole, in a canonical form ([`Canonical`]):
//!   a fixed local port, one message per frame group, the two openings in a fixed order.
//!
//! Owns only these choices; the download itself is `client::download_from_peers`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use super::{Plan, Started};
use crate::bitfield::Bitfield;
use crate::client::{self, ClientConfig};
use crate::download::Summary;
use crate::peer::conn::ConnObserver;

/// The [`ConnObserver`] of the reproducible download, in front of the recorder. It keeps
/// each connection until it closes and then hands it on whole, so that timing no longer
/// shapes the trace:
/// - the local port of each connection is shown as the next of a fixed series (`first`,
///   `first + 1`, … in the order the connections open): the kernel picks a different
///   ephemeral port every run;
/// - the bytes are handed on one whole message per call, not as the socket reads cut them;
/// - the two sides' openings (the extension handshake and the bitfield, `have all` or
///   `have none` that each side sends right after the handshakes without waiting for the
///   other) are put in a fixed order, the dialer's first; every other message keeps the
///   order in which it was seen (each of them answers something of the other side).
///
/// Only for connections that open one after another.
pub struct Canonical {
    inner: Arc<dyn ConnObserver>,
    next_port: AtomicU16,
    conns: Mutex<HashMap<u64, ConnLog>>,
}

struct ConnLog {
    local: SocketAddr,
    remote: SocketAddr,
    /// Per direction (0: sent, 1: received): bytes not yet cut into whole messages, and
    /// whether the handshake is through.
    pending: [Vec<u8>; 2],
    past_handshake: [bool; 2],
    /// Whole messages in the order they completed: (sent?, bytes).
    messages: Vec<(bool, Vec<u8>)>,
}

impl ConnLog {
    fn push(&mut self, sent: bool, bytes: &[u8]) {
        let d = usize::from(!sent);
        self.pending[d].extend_from_slice(bytes);
        loop {
            let buf = &self.pending[d];
            let need = if self.past_handshake[d] {
                match buf.get(..4) {
                    Some(len) => 4 + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize,
                    None => return,
                }
            } else {
                HANDSHAKE_LEN
            };
            if buf.len() < need {
                return;
            }
            let rest = self.pending[d].split_off(need);
            let msg = std::mem::replace(&mut self.pending[d], rest);
            self.past_handshake[d] = true;
            self.messages.push((sent, msg));
        }
    }

    /// The messages in the canonical order (a stable sort: see [`Canonical`]), then what was
    /// left unfinished in each direction.
    fn into_order(mut self, we_dialed: bool) -> Vec<(bool, Vec<u8>)> {
        let rank = |sent: bool, m: &[u8]| -> u8 {
            let dialer = sent == we_dialed;
            let opening = m.len() == HANDSHAKE_LEN
                || matches!(
                    m.get(4),
                    Some(&OPENING_BITFIELD | &OPENING_HAVE_ALL | &OPENING_HAVE_NONE)
                )
                || (m.get(4) == Some(&OPENING_EXTENDED) && m.get(5) == Some(&0));
            match (opening, dialer) {
                (true, true) => 0,
                (true, false) => 1,
                (false, _) => 2,
            }
        };
        let mut msgs = std::mem::take(&mut self.messages);
        // handshakes first (dialer's, then acceptor's), then the openings, then the rest
        msgs.sort_by_key(|(sent, m)| {
            let r = rank(*sent, m);
            let hs = m.len() == HANDSHAKE_LEN && r < 2;
            (u8::from(!hs), r)
        });
        for (d, rest) in self.pending.into_iter().enumerate() {
            if !rest.is_empty() {
                msgs.push((d == 0, rest));
            }
        }
        msgs
    }
}

const HANDSHAKE_LEN: usize = 68;
const OPENING_BITFIELD: u8 = 5;
const OPENING_HAVE_ALL: u8 = 14;
const OPENING_HAVE_NONE: u8 = 15;
const OPENING_EXTENDED: u8 = 20;

impl Canonical {
    pub fn new(inner: Arc<dyn ConnObserver>, first_port: u16) -> Self {
        Canonical {
            inner,
            next_port: AtomicU16::new(first_port),
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn with(&self, conn: u64, f: impl FnOnce(&mut ConnLog)) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = conns.get_mut(&conn) {
            f(c)
        }
    }
}

impl ConnObserver for Canonical {
    fn opened(&self, conn: u64, local: SocketAddr, remote: SocketAddr) {
        let port = self.next_port.fetch_add(1, Ordering::Relaxed);
        let log = ConnLog {
            local: SocketAddr::new(local.ip(), port),
            remote,
            pending: Default::default(),
            past_handshake: [false; 2],
            messages: Vec::new(),
        };
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.insert(conn, log);
    }
    fn sent(&self, conn: u64, bytes: &[u8]) {
        self.with(conn, |c| c.push(true, bytes))
    }
    fn received(&self, conn: u64, bytes: &[u8]) {
        self.with(conn, |c| c.push(false, bytes))
    }
    fn closed(&self, conn: u64, error: Option<&str>) {
        let log = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.remove(&conn)
        };
        let Some(log) = log else {
            return;
        };
        let (local, remote) = (log.local, log.remote);
        self.inner.opened(conn, local, remote);
        // every connection of the reproducible download is dialed by us
        for (sent, m) in log.into_order(true) {
            if sent {
                self.inner.sent(conn, &m)
            } else {
                self.inner.received(conn, &m)
            }
        }
        self.inner.closed(conn, error)
    }
    fn note(&self, conn: u64, text: &str) {
        self.inner.note(conn, text)
    }
    fn room(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.inner.room()
    }
}

/// The first of the local ports [`Canonical`] shows: 40000, away from the demo's own.
pub const FIRST_LOCAL_PORT: u16 = 40000;

/// The fixed port of seeder `i` (0-based).
pub fn seeder_port(tracker: u16, i: usize) -> u16 {
    tracker.wrapping_add(1 + i as u16)
}

/// The downloader's fixed listening port.
pub fn downloader_port(tracker: u16, seeders: usize) -> u16 {
    tracker.wrapping_add(1 + seeders as u16)
}

/// The `-bt0100-` prefix of our peer ids (client code and version).
fn prefix() -> [u8; 8] {
    let mut p = [0u8; 8];
    p.copy_from_slice(&crate::peer_id()[..8]);
    p
}

/// Seeder `i`'s peer id: fixed when reproducible, else fresh.
pub fn seeder_peer_id(i: usize, reproducible: bool) -> [u8; 20] {
    if !reproducible {
        return crate::peer_id();
    }
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&prefix());
    let tail = format!("demo-seed-{:02}", (i + 1) % 100);
    id[8..].copy_from_slice(tail.as_bytes());
    id
}

/// The downloader's peer id: fixed when reproducible, else fresh.
pub fn downloader_peer_id(reproducible: bool) -> [u8; 20] {
    if !reproducible {
        return crate::peer_id();
    }
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(&prefix());
    id[8..].copy_from_slice(b"demo-leecher");
    id
}

/// Downloads the torrent in one phase per piece (piece `i` from seeder `i mod N` alone), and
/// sums the phases into one summary.
pub async fn download(
    plan: &Plan,
    out: &Path,
    cfg: &ClientConfig,
    seeders: &[Started],
) -> Result<Summary> {
    let t = &plan.content.torrent;
    let n = t.info.num_pieces() as u32;
    let mut total: Option<Summary> = None;
    let mut phase = cfg.clone();
    if let Some(o) = &cfg.conn_observer {
        phase.conn_observer = Some(Arc::new(Canonical::new(o.clone(), FIRST_LOCAL_PORT)));
    }
    for i in 0..n {
        let Some(seeder) = seeders.get(i as usize % seeders.len().max(1)) else {
            bail!("no seeder to download from");
        };
        phase.extra_peers = vec![seeder.addr];
        let mut wanted = Bitfield::new(n);
        wanted.set(i);
        let s = client::download_from_peers(t, out, &phase, wanted).await?;
        let stop = s.interrupted || !s.complete;
        total = Some(match total {
            None => s,
            Some(mut sum) => {
                sum.complete = s.complete;
                sum.interrupted = s.interrupted;
                sum.bytes_downloaded += s.bytes_downloaded;
                sum.bytes_wasted += s.bytes_wasted;
                sum.bytes_uploaded += s.bytes_uploaded;
                sum.pieces_have = s.pieces_have;
                sum.pieces_failed += s.pieces_failed;
                sum.peers_used += s.peers_used;
                sum.peers_served += s.peers_served;
                sum.peers_banned += s.peers_banned;
                sum.elapsed += s.elapsed;
                sum
            }
        });
        if stop {
            break;
        }
    }
    match total {
        Some(s) => Ok(s),
        None => bail!("no seeder to download from"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ids_and_shares() {
        assert_eq!(&seeder_peer_id(0, true), b"-bt0100-demo-seed-01");
        assert_eq!(&downloader_peer_id(true), b"-bt0100-demo-leecher");
        assert_ne!(downloader_peer_id(false), downloader_peer_id(false));
    }

    /// Records what reaches the recorder: (call, bytes).
    #[derive(Default)]
    struct Calls(Mutex<Vec<(String, Vec<u8>)>>);

    impl ConnObserver for Calls {
        fn opened(&self, _: u64, local: SocketAddr, _: SocketAddr) {
            self.push(format!("opened {local}"), &[]);
        }
        fn sent(&self, _: u64, bytes: &[u8]) {
            self.push("sent".into(), bytes);
        }
        fn received(&self, _: u64, bytes: &[u8]) {
            self.push("received".into(), bytes);
        }
        fn closed(&self, _: u64, _: Option<&str>) {
            self.push("closed".into(), &[]);
        }
    }

    impl Calls {
        fn push(&self, what: String, bytes: &[u8]) {
            self.0.lock().expect("lock").push((what, bytes.to_vec()));
        }
    }

    #[test]
    fn canonical_connections_are_whole_messages_in_a_fixed_order() {
        let calls = Arc::new(Calls::default());
        let c = Canonical::new(calls.clone(), 40000);
        let hs = |b: u8| vec![b; HANDSHAKE_LEN];
        let msg = |id: u8, payload: &[u8]| {
            let mut m = (1 + payload.len() as u32).to_be_bytes().to_vec();
            m.push(id);
            m.extend_from_slice(payload);
            m
        };
        let (ext, have_all, bitfield) = (msg(20, &[0, b'd', b'e']), msg(14, &[]), msg(5, &[0x80]));
        let (interested, unchoke) = (msg(2, &[]), msg(1, &[]));
        let local: SocketAddr = "127.0.0.1:51515".parse().expect("addr");
        let remote: SocketAddr = "127.0.0.1:6970".parse().expect("addr");
        c.opened(7, local, remote);
        c.sent(7, &hs(1));
        // the seeder's handshake and opening arrive in one read, cut mid-message,
        // before our opening went out
        let theirs = [hs(2), ext.clone(), have_all.clone()].concat();
        c.received(7, &theirs[..70]);
        c.received(7, &theirs[70..]);
        c.sent(7, &[ext.clone(), bitfield.clone()].concat());
        c.sent(7, &interested);
        c.received(7, &unchoke);
        assert!(
            calls.0.lock().expect("lock").is_empty(),
            "held until closed"
        );
        c.closed(7, None);
        let got = calls.0.lock().expect("lock").clone();
        let want: Vec<(String, Vec<u8>)> = vec![
            ("opened 127.0.0.1:40000".into(), vec![]),
            ("sent".into(), hs(1)),
            ("received".into(), hs(2)),
            ("sent".into(), ext.clone()),
            ("sent".into(), bitfield),
            ("received".into(), ext),
            ("received".into(), have_all),
            ("sent".into(), interested),
            ("received".into(), unchoke),
            ("closed".into(), vec![]),
        ];
        assert_eq!(got, want);
    }
}
