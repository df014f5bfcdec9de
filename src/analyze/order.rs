//! Capture order for the events: each event goes out in the order of the frame that completes
//! it (its *key*), whatever source made it (TCP connections, uTP, UDP datagrams).
//!
//! An event can be found late: bytes that waited in the reassembly for a hole before them, a
//! connection whose first bytes are kept until it is clear what it is, a `conn_closed`
//! waiting for the last ACK. Each such source declares a *hold* on the oldest frame whose
//! events it may still produce ([`Reorder::hold`] / [`Reorder::unhold`]; the TCP reassembly's
//! out-of-order buffer is passed as a bound to [`Reorder::ready`]). An event whose key is at or
//! below every hold goes out at once (no copy, the usual case); the others wait in a heap
//! until the holds move past them. Ties keep the order in which the events were found.
//!
//! Bound: at most [`MAX_HELD`] events wait; past that the oldest goes out even if a hold is
//! older (the order can then break, never the memory).
//!
//! This module only orders; it never decodes and never writes.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

use super::analyzer::ConnReport;
use crate::event::Event;

/// Events waiting at most (a few MiB).
pub const MAX_HELD: usize = 8192;

/// An event that waits for its turn.
#[derive(Debug)]
pub struct Held {
    /// The frame that completes it.
    pub key: u64,
    seq: u64,
    pub event: Event,
    pub words: String,
    /// Its connection's report as it was when the event was found.
    pub conn: Option<ConnReport>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.key, self.seq) == (o.key, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.key, self.seq).cmp(&(o.key, o.seq))
    }
}

/// The reorder buffer. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Reorder {
    heap: BinaryHeap<Reverse<Held>>,
    seq: u64,
    /// Held frames (frame → holders).
    holds: BTreeMap<u64, u32>,
}

impl Reorder {
    /// A source may still produce events completed by `frame` (or later).
    pub fn hold(&mut self, frame: u64) {
        *self.holds.entry(frame).or_default() += 1;
    }

    /// Gives back one [`Reorder::hold`] of `frame`.
    pub fn unhold(&mut self, frame: u64) {
        if let Some(n) = self.holds.get_mut(&frame) {
            *n -= 1;
            if *n == 0 {
                self.holds.remove(&frame);
            }
        }
    }

    /// The oldest frame held, with `extra` (another source's oldest) taken in.
    fn bound(&self, extra: Option<u64>) -> Option<u64> {
        match (self.holds.keys().next().copied(), extra) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether an event with `key` may go out right now, before any waiting one.
    pub fn passes(&self, key: u64, extra: Option<u64>) -> bool {
        self.heap.is_empty() && self.bound(extra).is_none_or(|b| key <= b)
    }

    /// Keeps an event until its turn.
    pub fn push(&mut self, key: u64, event: Event, words: String, conn: Option<ConnReport>) {
        self.seq += 1;
        self.heap.push(Reverse(Held {
            key,
            seq: self.seq,
            event,
            words,
            conn,
        }));
    }

    /// The next event whose turn has come: its key is at most `upto` and at most every hold
    /// (and `extra`); or the oldest when more than [`MAX_HELD`] wait.
    pub fn ready(&mut self, upto: u64, extra: Option<u64>) -> Option<Held> {
        let limit = self.bound(extra).map_or(upto, |b| b.min(upto));
        let top = self.heap.peek()?;
        if top.0.key <= limit || self.heap.len() > MAX_HELD {
            self.heap.pop().map(|r| r.0)
        } else {
            None
        }
    }

    /// Every waiting event, in order (the end of the input: nothing else can come).
    pub fn drain(&mut self) -> Option<Held> {
        self.heap.pop().map(|r| r.0)
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;

    fn ev(n: u64) -> Event {
        Event::new(
            n,
            EventKind::Note {
                text: n.to_string(),
            },
        )
    }

    #[test]
    fn events_wait_for_the_holds_and_ties_keep_their_order() {
        let mut r = Reorder::default();
        assert!(r.passes(5, None));
        r.hold(3);
        assert!(r.passes(3, None) && !r.passes(4, None));
        assert!(!r.passes(2, Some(1)), "the other source's bound counts");
        r.push(7, ev(1), "a".into(), None);
        r.push(4, ev(2), "b".into(), None);
        r.push(7, ev(3), "c".into(), None);
        assert!(!r.passes(3, None), "something waits: nothing overtakes it");
        assert!(r.ready(10, None).is_none());
        r.unhold(3);
        let out: Vec<String> =
            std::iter::from_fn(|| r.ready(7, Some(9)).map(|h| h.words)).collect();
        assert_eq!(out, ["b", "a", "c"]);
        assert!(r.is_empty());
    }

    #[test]
    fn the_wait_is_bounded() {
        let mut r = Reorder::default();
        r.hold(1);
        for i in 0..=MAX_HELD as u64 {
            r.push(10 + i, ev(i), String::new(), None);
        }
        assert_eq!(r.ready(u64::MAX, None).map(|h| h.key), Some(10));
        assert!(r.ready(u64::MAX, None).is_none());
        assert_eq!(r.len(), MAX_HELD);
        assert_eq!(r.drain().map(|h| h.key), Some(11));
    }
}
