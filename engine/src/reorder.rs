//! Event-time order across inputs: a reorder buffer behind a multi-input watermark
//! (the port of `streams/reorder.py`).
//!
//! Each input (a topic-partition live, a file in replay) reports the latest event time
//! it has delivered. The watermark is the minimum of those over the inputs that are
//! not idle, minus the allowed lateness; it never goes back. Buffered events are
//! released in (`occurred_at`, `event_id`) order once the watermark reaches them. When
//! every input is idle, everything buffered is released and the watermark moves to the
//! latest time seen. An event that arrives at or behind the watermark is released at
//! once and flagged late, never dropped.

use crate::events::Event;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Held<H> {
    t: f64,
    seq: u64,
    /// Boxed: the heap moves its entries at every step.
    item: Box<(Event, H)>,
}

impl<H> Held<H> {
    fn key_cmp(&self, other: &Self) -> Ordering {
        self.t
            .partial_cmp(&other.t)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.item.0.event_id().cmp(other.item.0.event_id()))
            .then_with(|| self.seq.cmp(&other.seq))
    }
}

impl<H> PartialEq for Held<H> {
    fn eq(&self, other: &Self) -> bool {
        self.key_cmp(other) == Ordering::Equal
    }
}
impl<H> Eq for Held<H> {}
impl<H> PartialOrd for Held<H> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<H> Ord for Held<H> {
    // Reversed: BinaryHeap is a max-heap, the earliest event comes out first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key_cmp(self)
    }
}

pub struct ReorderBuffer<H> {
    pub lateness: f64,
    pub watermark: f64,
    /// (source, latest event time delivered), in registration order.
    latest: Vec<(u32, f64)>,
    /// Sources marked idle (as Python's set: an idle mark may precede registration).
    idle: Vec<u32>,
    heap: BinaryHeap<Held<H>>,
    seq: u64,
    max_seen: f64,
}

impl<H> ReorderBuffer<H> {
    pub fn new(lateness: f64) -> Self {
        ReorderBuffer {
            lateness,
            watermark: f64::NEG_INFINITY,
            latest: Vec::new(),
            idle: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            max_seen: f64::NEG_INFINITY,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Register an input: until it delivers or goes idle, it holds the watermark.
    pub fn add_input(&mut self, source: u32) {
        if !self.latest.iter().any(|i| i.0 == source) {
            self.latest.push((source, f64::NEG_INFINITY));
        }
    }

    pub fn remove_input(&mut self, source: u32) {
        self.latest.retain(|i| i.0 != source);
        self.idle.retain(|i| *i != source);
        self.advance();
    }

    pub fn set_idle(&mut self, source: u32, idle: bool) {
        if idle {
            if !self.idle.contains(&source) {
                self.idle.push(source);
                self.advance();
            }
        } else {
            self.idle.retain(|i| *i != source);
        }
    }

    pub fn is_idle(&self, source: u32) -> bool {
        self.idle.contains(&source)
    }

    /// Buffer one event; true when it arrived at or behind the watermark (late): events
    /// at the watermark's own time may have been released before it.
    pub fn push(&mut self, source: u32, event: Event, handle: H) -> bool {
        let t = event.occurred_at();
        let late = t <= self.watermark;
        self.seq += 1;
        self.heap.push(Held { t, seq: self.seq, item: Box::new((event, handle)) });
        self.observe(source, t);
        late
    }

    /// An event from `source` at t has arrived: move the watermark (`push` does this for
    /// the events it buffers; a caller calls it for an event another buffer holds).
    pub fn observe(&mut self, source: u32, t: f64) {
        if !self.idle.is_empty() {
            self.idle.retain(|i| *i != source);
        }
        if t > self.max_seen {
            self.max_seen = t;
        }
        match self.latest.iter_mut().find(|i| i.0 == source) {
            Some(input) => {
                if t > input.1 {
                    input.1 = t;
                    self.advance();
                }
            }
            None => {
                if t > f64::NEG_INFINITY {
                    self.latest.push((source, t));
                    self.advance();
                }
            }
        }
    }

    /// The latest event time `source` has delivered (-inf before its first).
    pub fn latest(&self, source: u32) -> f64 {
        self.latest.iter().find(|i| i.0 == source).map_or(f64::NEG_INFINITY, |i| i.1)
    }

    /// The least latest time over the inputs that are not idle: the one holding the
    /// watermark back (None when every input is idle or gone).
    pub fn slowest(&self) -> Option<f64> {
        self.latest
            .iter()
            .filter(|i| !self.idle.contains(&i.0))
            .map(|i| i.1)
            .reduce(f64::min)
    }

    /// The event `pop_ready` will give next once the watermark reaches it.
    pub fn peek(&self) -> Option<&Event> {
        self.heap.peek().map(|h| &h.item.0)
    }

    /// Whether `pop_ready` would give an event.
    pub fn ready(&self) -> bool {
        self.heap.peek().is_some_and(|h| h.t <= self.watermark)
    }

    /// The earliest event the watermark has passed, if any: called until None, the
    /// events come out in event-time order.
    pub fn pop_ready(&mut self) -> Option<(Event, H)> {
        if self.heap.peek().is_some_and(|h| h.t <= self.watermark) {
            self.heap.pop().map(|h| *h.item)
        } else {
            None
        }
    }

    fn advance(&mut self) {
        // Every input idle or gone: nothing can arrive in between, release everything.
        let mark = match self.slowest() {
            None => self.max_seen,
            Some(slowest) => slowest - self.lateness,
        };
        if mark > self.watermark {
            self.watermark = mark;
        }
    }
}
