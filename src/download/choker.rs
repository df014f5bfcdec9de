//! Who may download from us: the choker (BEP 3 "choking algorithm").
//!
//! A fixed number of upload slots go to the interested peers we upload to fastest (measured
//! between two rechokes, every [`RECHOKE_INTERVAL`]); one more, the optimistic unchoke, goes to
//! a choked interested peer chosen in turn, rotated every [`OPTIMISTIC_INTERVAL`], so that a
//! newcomer gets a chance to prove itself. A peer that becomes interested while a slot is free
//! is unchoked at once, without waiting for the next rechoke. A slot whose peer took nothing
//! from us for a whole rechoke interval (interested, but it never requests) goes to a waiting
//! peer at the next rechoke, so such peers cannot hold the regular slots while others wait
//! (the optimistic one moves on after its 30 s anyway).
//!
//! Pure bookkeeping: no clock of its own (the caller passes `now`), no I/O, no socket. The
//! engine keeps it under the swarm lock and sessions obey its verdict
//! ([`crate::peer::News::unchoked`]). It never touches the picker or the storage.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the regular slots are given out again.
pub const RECHOKE_INTERVAL: Duration = Duration::from_secs(10);
/// How often the optimistic unchoke moves on to another peer.
pub const OPTIMISTIC_INTERVAL: Duration = Duration::from_secs(30);
/// Upload slots when not told otherwise (`--upload-slots`).
pub const DEFAULT_SLOTS: usize = 4;

#[derive(Debug, Clone)]
struct Entry {
    interested: bool,
    unchoked: bool,
    /// Since when the peer is unchoked (`None` while choked).
    unchoked_since: Option<Instant>,
    /// Bytes uploaded to the peer since the last rechoke.
    uploaded: u64,
    /// Bytes per second at the last rechoke.
    rate: f64,
    /// When the peer last got the optimistic unchoke (never: `None`); the one that waited
    /// longest goes next.
    last_optimistic: Option<Instant>,
    /// Order of arrival, to break ties.
    seq: u64,
}

impl Entry {
    fn set_unchoked(&mut self, unchoked: bool, now: Instant) {
        if unchoked != self.unchoked {
            self.unchoked = unchoked;
            self.unchoked_since = unchoked.then_some(now);
        }
    }

    /// Unchoked for a whole rechoke interval and took nothing in the last one.
    fn unused(&self, now: Instant) -> bool {
        self.rate == 0.0
            && self
                .unchoked_since
                .is_some_and(|t| now.duration_since(t) >= RECHOKE_INTERVAL)
    }
}

/// The choker of one torrent. See the [module docs](self).
#[derive(Debug)]
pub struct Choker {
    slots: usize,
    peers: HashMap<SocketAddr, Entry>,
    optimistic: Option<SocketAddr>,
    last_rechoke: Option<Instant>,
    last_rotation: Option<Instant>,
    next_seq: u64,
}

impl Choker {
    /// A choker with `slots` regular upload slots (at least one) plus the optimistic one.
    pub fn new(slots: usize) -> Choker {
        Choker {
            slots: slots.max(1),
            peers: HashMap::new(),
            optimistic: None,
            last_rechoke: None,
            last_rotation: None,
            next_seq: 0,
        }
    }

    /// A session started with the peer at `addr` (choked, not interested).
    pub fn add(&mut self, addr: SocketAddr) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.peers.insert(
            addr,
            Entry {
                interested: false,
                unchoked: false,
                unchoked_since: None,
                uploaded: 0,
                rate: 0.0,
                last_optimistic: None,
                seq,
            },
        );
    }

    /// The session ended. Returns whether a slot was freed (then others may be unchoked).
    pub fn remove(&mut self, addr: &SocketAddr, now: Instant) -> bool {
        if self.optimistic == Some(*addr) {
            self.optimistic = None;
        }
        let freed = self.peers.remove(addr).is_some_and(|e| e.unchoked);
        if freed {
            self.fill(now);
        }
        freed
    }

    /// The peer said `interested` / `not interested`. Returns whether any peer's choke state
    /// changed (a free slot goes to it at once; a peer that lost interest gives its slot up).
    pub fn set_interested(&mut self, addr: &SocketAddr, interested: bool, now: Instant) -> bool {
        let Some(e) = self.peers.get_mut(addr) else {
            return false;
        };
        if e.interested == interested {
            return false;
        }
        e.interested = interested;
        if !interested && e.unchoked {
            e.set_unchoked(false, now);
            if self.optimistic == Some(*addr) {
                self.optimistic = None;
            }
        }
        self.fill(now);
        true
    }

    /// Counts bytes uploaded to the peer (its rate at the next rechoke).
    pub fn uploaded(&mut self, addr: &SocketAddr, bytes: u64) {
        if let Some(e) = self.peers.get_mut(addr) {
            e.uploaded += bytes;
        }
    }

    /// Whether the peer may download from us now.
    pub fn is_unchoked(&self, addr: &SocketAddr) -> bool {
        self.peers.get(addr).is_some_and(|e| e.unchoked)
    }

    /// Peers unchoked now (regular slots and the optimistic one).
    pub fn unchoked(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.peers
            .iter()
            .filter(|(_, e)| e.unchoked)
            .map(|(a, _)| *a)
    }

    /// The peer holding the optimistic unchoke, if any.
    pub fn optimistic(&self) -> Option<SocketAddr> {
        self.optimistic
    }

    /// Rechokes when [`RECHOKE_INTERVAL`] has passed since the last one (the first call
    /// always does). Returns whether it did.
    pub fn tick(&mut self, now: Instant) -> bool {
        match self.last_rechoke {
            Some(t) if now.duration_since(t) < RECHOKE_INTERVAL => false,
            _ => {
                self.rechoke(now);
                true
            }
        }
    }

    /// Gives the slots out again: rates from the bytes uploaded since the last rechoke, the
    /// `slots` fastest interested peers unchoked, the optimistic unchoke rotated when its time
    /// is up (or its holder got a regular slot), everyone else choked.
    pub fn rechoke(&mut self, now: Instant) {
        let secs = self
            .last_rechoke
            .map_or(RECHOKE_INTERVAL, |t| now.duration_since(t))
            .as_secs_f64()
            .max(0.001);
        self.last_rechoke = Some(now);
        for e in self.peers.values_mut() {
            e.rate = e.uploaded as f64 / secs;
            e.uploaded = 0;
        }
        let mut ranked: Vec<(SocketAddr, f64, bool, u64)> = self
            .peers
            .iter()
            .filter(|(_, e)| e.interested)
            .map(|(a, e)| (*a, e.rate, e.unused(now), e.seq))
            .collect();
        // fastest first; among equals, a peer that left its slot unused last, then the earliest
        // arrival
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
        let regular: Vec<SocketAddr> = ranked.iter().take(self.slots).map(|r| r.0).collect();
        let rotate = match (self.optimistic, self.last_rotation) {
            (Some(o), Some(t)) => {
                now.duration_since(t) >= OPTIMISTIC_INTERVAL
                    || regular.contains(&o)
                    || !self.peers.get(&o).is_some_and(|e| e.interested)
            }
            _ => true,
        };
        let keep = (!rotate).then_some(self.optimistic).flatten();
        for (a, e) in self.peers.iter_mut() {
            e.set_unchoked(regular.contains(a) || keep == Some(*a), now);
        }
        if rotate {
            self.optimistic = None;
            let next = self
                .peers
                .iter()
                .filter(|(_, e)| e.interested && !e.unchoked)
                .min_by_key(|(_, e)| (e.last_optimistic, e.seq))
                .map(|(a, _)| *a);
            if let Some(a) = next {
                self.optimistic = Some(a);
                self.last_rotation = Some(now);
                if let Some(e) = self.peers.get_mut(&a) {
                    e.last_optimistic = Some(now);
                }
            }
        }
        if let Some(e) = self.optimistic.and_then(|o| self.peers.get_mut(&o)) {
            e.set_unchoked(true, now);
        }
    }

    /// Unchokes interested peers (earliest first) while regular slots are free, and gives a
    /// vacant optimistic unchoke to a choked interested peer.
    fn fill(&mut self, now: Instant) {
        let regular = self
            .peers
            .iter()
            .filter(|(a, e)| e.unchoked && self.optimistic != Some(**a))
            .count();
        let mut waiting: Vec<(u64, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(_, e)| e.interested && !e.unchoked)
            .map(|(a, e)| (e.seq, *a))
            .collect();
        waiting.sort();
        let free = self.slots.saturating_sub(regular);
        let mut rest = waiting.into_iter().map(|(_, a)| a);
        for a in rest.by_ref().take(free) {
            if let Some(e) = self.peers.get_mut(&a) {
                e.set_unchoked(true, now);
            }
        }
        if self.optimistic.is_none() {
            if let Some(a) = rest.next() {
                self.optimistic = Some(a);
                self.last_rotation = Some(now);
                if let Some(e) = self.peers.get_mut(&a) {
                    e.set_unchoked(true, now);
                    e.last_optimistic = Some(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10_000 + i))
    }

    fn unchoked(c: &Choker) -> Vec<u16> {
        let mut v: Vec<u16> = c.unchoked().map(|a| a.port() - 10_000).collect();
        v.sort();
        v
    }

    /// The unchoked peers but the optimistic one.
    fn regular(c: &Choker) -> Vec<u16> {
        unchoked(c)
            .into_iter()
            .filter(|&p| Some(addr(p)) != c.optimistic())
            .collect()
    }

    /// A choker with `slots` upload slots and peers `0..n`, all interested at `t0`.
    fn with_interested(slots: usize, n: u16, t0: Instant) -> Choker {
        let mut c = Choker::new(slots);
        for i in 0..n {
            c.add(addr(i));
            c.set_interested(&addr(i), true, t0);
        }
        c
    }

    #[test]
    fn interested_peers_fill_the_slots_then_one_optimistic() {
        let mut c = Choker::new(2);
        let t0 = Instant::now();
        for i in 0..5 {
            c.add(addr(i));
        }
        // nobody interested: nobody unchoked
        assert!(unchoked(&c).is_empty());
        for i in 0..5 {
            c.set_interested(&addr(i), true, t0);
        }
        // two regular slots (first come) plus the optimistic one
        assert_eq!(unchoked(&c), vec![0, 1, 2]);
        assert_eq!(c.optimistic(), Some(addr(2)));
        // a peer that loses interest frees its slot for the next one
        c.set_interested(&addr(0), false, t0);
        assert!(!c.is_unchoked(&addr(0)));
        assert_eq!(unchoked(&c), vec![1, 2, 3]);
        // a peer that leaves too
        assert!(c.remove(&addr(1), t0));
        assert_eq!(unchoked(&c), vec![2, 3, 4]);
    }

    #[test]
    fn rechoke_ranks_by_upload_rate() {
        let t0 = Instant::now();
        let mut c = with_interested(2, 6, t0);
        c.rechoke(t0);
        // peers 4 and 5 got the most from us in the last period
        for (i, bytes) in [(1, 10u64), (3, 500), (4, 9_000), (5, 7_000)] {
            c.uploaded(&addr(i), bytes);
        }
        let t1 = t0 + RECHOKE_INTERVAL;
        assert!(c.tick(t1));
        assert_eq!(regular(&c), vec![4, 5]);
        // exactly slots + 1 unchoked, the optimistic one among the others
        assert_eq!(unchoked(&c).len(), 3);
        let o = c.optimistic().expect("an optimistic unchoke");
        assert!(![addr(4), addr(5)].contains(&o));
        // not yet time for the next rechoke
        assert!(!c.tick(t1 + Duration::from_secs(1)));
    }

    #[test]
    fn the_optimistic_unchoke_rotates_every_30_seconds() {
        let t0 = Instant::now();
        let mut c = with_interested(1, 4, t0);
        // peer 0 is always the fastest, so it keeps the regular slot
        let mut seen = Vec::new();
        let mut t = t0;
        for round in 0..9 {
            c.uploaded(&addr(0), 1_000_000);
            c.rechoke(t);
            assert!(c.is_unchoked(&addr(0)), "round {round}");
            assert_eq!(unchoked(&c).len(), 2, "round {round}");
            let o = c.optimistic().expect("an optimistic unchoke");
            assert_ne!(o, addr(0));
            if seen.last() != Some(&o) {
                seen.push(o);
            }
            t += RECHOKE_INTERVAL;
        }
        // 90 s: the optimistic slot moved every 30 s over the three other peers in turn
        assert_eq!(seen.len(), 3, "{seen:?}");
        let mut ports: Vec<u16> = seen.iter().map(|a| a.port() - 10_000).collect();
        ports.sort();
        assert_eq!(ports, vec![1, 2, 3]);
    }

    #[test]
    fn peers_that_never_download_give_their_slots_up() {
        let t0 = Instant::now();
        // peers 0 and 1 come first, are interested, and never request anything
        let mut c = with_interested(2, 6, t0);
        c.rechoke(t0);
        assert_eq!(unchoked(&c), vec![0, 1, 2]);
        // peer 2 (optimistic) downloads; 0 and 1 leave their slots unused for a whole interval
        c.uploaded(&addr(2), 100_000);
        let t1 = t0 + RECHOKE_INTERVAL;
        c.rechoke(t1);
        assert_eq!(regular(&c), vec![2, 3], "the idle peers lost their slots");
        // they do not get them back while the others download
        c.uploaded(&addr(2), 100_000);
        c.uploaded(&addr(3), 100_000);
        c.rechoke(t1 + RECHOKE_INTERVAL);
        assert_eq!(regular(&c), vec![2, 3]);
        // a slot used a little is kept over waiting peers
        c.uploaded(&addr(2), 1);
        c.uploaded(&addr(3), 1);
        c.rechoke(t1 + RECHOKE_INTERVAL * 2);
        assert_eq!(regular(&c), vec![2, 3]);
    }
}
