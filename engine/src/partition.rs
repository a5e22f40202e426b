//! One partition's loop around the core: reorder, apply, fire deadlines, count (the
//! port of the Python engine's, `tests/oracle/engine.py`). The live worker runs one per Kafka partition; replay
//! runs one per policy, so both decide identically.

use crate::codec::Rejection;
use crate::core::{fire, step_new};
use crate::decisions::Decision;
use crate::events::{Event, Override, PolicySwitch};
use crate::policy::Policy;
use crate::reorder::ReorderBuffer;
use crate::state::{ShortStr, UserState};
use hashbrown::hash_map::EntryRef;
use rustc_hash::FxBuildHasher;
use std::cmp::Ordering;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What happened to every input record: applied, duplicate or rejected (and late).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub read: u64,
    /// By event_type index (events::EVENT_TYPES).
    pub applied: [u64; 4],
    pub duplicates: [u64; 4],
    pub late: [u64; 4],
    /// By rejection reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// By (action, first reason code).
    pub decisions: BTreeMap<(&'static str, &'static str), u64>,
    /// By event_type or "unknown".
    pub rejected_types: BTreeMap<&'static str, u64>,
}

impl Tally {
    pub fn count_decision(&mut self, d: &Decision) {
        let code = d.reasons.first().map_or("", |r| r.code);
        *self.decisions.entry((d.action, code)).or_default() += 1;
    }

    pub fn count_rejection(&mut self, r: &Rejection) {
        *self.rejected.entry(r.reason).or_default() += 1;
        *self.rejected_types.entry(r.event_type.unwrap_or("unknown")).or_default() += 1;
    }

    /// Count another tally's records here too (partitions of one run).
    pub fn add(&mut self, other: &Tally) {
        self.read += other.read;
        for (mine, theirs) in [
            (&mut self.applied, &other.applied),
            (&mut self.duplicates, &other.duplicates),
            (&mut self.late, &other.late),
        ] {
            for (m, t) in mine.iter_mut().zip(theirs) {
                *m += t;
            }
        }
        for (k, v) in &other.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        for (k, v) in &other.rejected_types {
            *self.rejected_types.entry(k).or_default() += v;
        }
        for (k, v) in &other.decisions {
            *self.decisions.entry(*k).or_default() += v;
        }
    }
}

/// Users' deadlines, fired earliest first, then by user id: Python's heap of
/// (deadline, user) pairs, with the user ids held in place (compared without a
/// pointer). An entry superseded since (the user's deadline moved) is skipped.
#[derive(Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<(u64, ShortStr)>>,
}

/// f64 -> u64 whose order is the floats' order (for finite and infinite values).
fn ordered(t: f64) -> u64 {
    let bits = t.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

fn unordered(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

impl Deadlines {
    fn push(&mut self, t: f64, uid: ShortStr) {
        self.heap.push(Reverse((ordered(t), uid)));
    }

    fn len(&self) -> usize {
        self.heap.len()
    }

    fn first(&self) -> Option<f64> {
        self.heap.peek().map(|Reverse((k, _))| unordered(*k))
    }

    /// The earliest entry, if it is due at `mark`.
    fn pop_due(&mut self, mark: f64) -> Option<(f64, ShortStr)> {
        if self.first().is_some_and(|d| d <= mark) {
            self.heap.pop().map(|Reverse((k, uid))| (unordered(k), uid))
        } else {
            None
        }
    }
}

/// Where a decision came in a partition's order of emission: for the n-th decision an
/// applied event led to, (0, occurred_at, event_id, handle, n); for one a fired deadline
/// led to, (1, deadline, user_id, 0, n). Partitions fed the same inputs (the shards of
/// one replay) merge their decisions back into one order by it.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub phase: u8,
    pub at: f64,
    pub name: Arc<str>,
    pub handle: u64,
    pub n: u32,
}

impl Place {
    pub fn order(&self, other: &Place) -> Ordering {
        self.phase
            .cmp(&other.phase)
            .then_with(|| self.at.partial_cmp(&other.at).unwrap_or(Ordering::Equal))
            .then_with(|| self.name.cmp(&other.name))
            .then_with(|| self.handle.cmp(&other.handle))
            .then_with(|| self.n.cmp(&other.n))
    }
}

pub type H = u64;

/// Bucket counts of the time each applied event took and of its lag behind the wall
/// clock (the worker's `step_seconds` and `event_lag_seconds` histograms), taken by the
/// caller now and then. `le` is inclusive, as Prometheus has it.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub step_bounds: Vec<f64>,
    pub step: Vec<u64>,
    pub step_sum: f64,
    pub lag_bounds: Vec<f64>,
    pub lag: Vec<u64>,
    pub lag_sum: f64,
    /// False for a recorded log, whose event times are not the wall clock's.
    pub observe_lag: bool,
}

impl Timings {
    pub fn new(step_bounds: Vec<f64>, lag_bounds: Vec<f64>) -> Timings {
        let step = vec![0; step_bounds.len() + 1];
        let lag = vec![0; lag_bounds.len() + 1];
        Timings { step_bounds, step, step_sum: 0.0, lag_bounds, lag, lag_sum: 0.0, observe_lag: true }
    }

    /// Step times only (replay: the lag of a recorded log means nothing).
    pub fn steps_only(step_bounds: Vec<f64>) -> Timings {
        Timings { observe_lag: false, ..Timings::new(step_bounds, Vec::new()) }
    }

    /// Count another's counts here too (shards of one replay).
    pub fn add(&mut self, other: &Timings) {
        for (n, m) in self.step.iter_mut().zip(&other.step) {
            *n += m;
        }
        for (n, m) in self.lag.iter_mut().zip(&other.lag) {
            *n += m;
        }
        self.step_sum += other.step_sum;
        self.lag_sum += other.lag_sum;
    }

    fn observe(bounds: &[f64], counts: &mut [u64], value: f64) {
        let at = bounds.partition_point(|b| *b < value);
        if let Some(n) = counts.get_mut(at) {
            *n += 1;
        }
    }

    /// The counts so far, and zero from now.
    pub fn take(&mut self) -> Timings {
        let fresh = Timings {
            observe_lag: self.observe_lag,
            ..Timings::new(self.step_bounds.clone(), self.lag_bounds.clone())
        };
        std::mem::replace(self, fresh)
    }
}

/// The states of a partition's users by user id. The ids are held in the table (most
/// are short: no pointer to follow when probing); the states are boxed, as the table
/// moves its entries when it grows.
pub type States = hashbrown::HashMap<ShortStr, Box<UserState>, FxBuildHasher>;

/// A region's own policy (a scoped switch's), and the (at, policy_id) of that switch.
pub struct Scoped {
    pub region: String,
    pub policy: Arc<Policy>,
    pub switched: (f64, String),
}

/// The policy that decides a user of `region`: the region's own, else the unscoped one.
fn choose<'a>(policy: &'a Arc<Policy>, scoped: &'a [Scoped], region: Option<&str>) -> &'a Policy {
    region
        .and_then(|r| scoped.iter().find(|s| s.region == r))
        .map_or(&**policy, |s| &*s.policy)
}

fn has_scope(scoped: &[Scoped], region: Option<&str>) -> bool {
    region.is_some_and(|r| scoped.iter().any(|s| s.region == r))
}

/// An override refused when it came to be applied: it names a user with no state.
pub struct Refused {
    pub handle: H,
    pub rejection: Rejection,
    pub event: Box<Override>,
}

pub struct Partition {
    pub policy: Arc<Policy>,
    pub states: States,
    pub buffer: ReorderBuffer<H>,
    pub tally: Tally,
    /// Decisions made, drained by the caller.
    pub decisions: Vec<Decision>,
    /// Overrides refused when applied (no such user), drained by the caller.
    pub refused: Vec<Refused>,
    /// (at, policy_id) of the unscoped policy switch in force (-inf, "" before any).
    pub switched: (f64, String),
    /// Regions' own policies, by scoped switches (few: looked through in order).
    pub scoped: Vec<Scoped>,
    /// Users whose state changed since the caller last took them (kept only with
    /// `track_dirty` on: the worker writes them to its table; replay has no table).
    pub dirty: Vec<ShortStr>,
    pub track_dirty: bool,
    /// Users in the deadline index (each state's `indexed` says under which deadline).
    scheduled: usize,
    deadlines: Deadlines,
    /// With `places` on: for each decision made, its `Place` (drained with it).
    pub places: Option<Vec<Place>>,
    place: (u8, f64, Option<Arc<str>>, u64),
    /// With timings on: every applied event's time and lag, counted.
    pub timings: Option<Timings>,
}

impl Partition {
    pub fn new(policy: Arc<Policy>, lateness: f64) -> Self {
        Partition {
            policy,
            states: States::default(),
            buffer: ReorderBuffer::new(lateness),
            tally: Tally::default(),
            decisions: Vec::new(),
            refused: Vec::new(),
            switched: (f64::NEG_INFINITY, String::new()),
            scoped: Vec::new(),
            dirty: Vec::new(),
            track_dirty: false,
            scheduled: 0,
            deadlines: Deadlines::default(),
            places: None,
            place: (0, 0.0, None, 0),
            timings: None,
        }
    }

    pub fn pending_deadlines(&self) -> usize {
        self.scheduled
    }

    pub fn add_input(&mut self, source: u32) {
        self.buffer.add_input(source);
    }

    /// Buffer an event; apply whatever the watermark releases; their handles are
    /// appended to `handles`.
    pub fn offer(&mut self, source: u32, event: Event, handle: H, handles: &mut Vec<H>) {
        let kind = event.kind();
        if let Some(state) = self.states.get(event.user_id()) {
            state.prefetch();
        }
        if self.buffer.push(source, event, handle) {
            if let Some(n) = self.tally.late.get_mut(kind) {
                *n += 1;
            }
        }
        self.release(handles);
    }

    pub fn set_idle(&mut self, source: u32, idle: bool, handles: &mut Vec<H>) {
        self.buffer.set_idle(source, idle);
        self.release(handles);
    }

    pub fn remove_input(&mut self, source: u32, handles: &mut Vec<H>) {
        self.buffer.remove_input(source);
        self.release(handles);
    }

    /// Another partition's event at t from `source`: moves the watermark only.
    pub fn observe(&mut self, source: u32, t: f64, handles: &mut Vec<H>) {
        self.buffer.observe(source, t);
        self.release(handles);
    }

    /// Apply the released events in event-time order, then fire due deadlines.
    pub fn release(&mut self, handles: &mut Vec<H>) {
        let mark = self.buffer.watermark;
        if self.buffer.ready() {
            let keep = self.places.is_some();
            while let Some((event, handle)) = self.buffer.pop_ready() {
                if let Some(next) = self.buffer.peek() {
                    if let Some(state) = self.states.get(next.user_id()) {
                        state.prefetch_parts();
                    }
                }
                if keep {
                    self.place = (0, event.occurred_at(), Some(Arc::from(event.event_id())), handle);
                }
                if let Event::Policy(switch) = event {
                    self.switch(*switch);
                    handles.push(handle);
                    continue;
                }
                let applied = if self.timings.is_some() {
                    self.timed_apply(&event)
                } else {
                    self.apply(&event)
                };
                if !applied {
                    if let Event::Override(o) = event {
                        let rejection = Rejection {
                            reason: "unknown_user",
                            detail: format!("no such user: {}", o.user_id.as_str()),
                            event_type: Some("override"),
                        };
                        self.tally.count_rejection(&rejection);
                        self.refused.push(Refused { handle, rejection, event: o });
                    }
                }
                handles.push(handle);
            }
        }
        if self.deadlines.first().is_some_and(|d| d <= mark) {
            self.tick();
        }
    }

    /// Apply one event (a redelivery: counted, nothing else); false when it is refused:
    /// an override of a user with no state (the caller counts and reports it).
    pub fn apply(&mut self, event: &Event) -> bool {
        // A fail point for the tests of how a panic is reported (never compiled in).
        #[cfg(test)]
        if event.event_id() == "test-panic" {
            panic!("the test's fail point");
        }
        let kind = event.kind();
        let uid = event.user_id();
        let start = self.decisions.len();
        let Partition { states, policy, scoped, decisions, tally, .. } = self;
        // One probe of the table: a new user's entry is made where the probe ended.
        let (key, state) = match states.entry_ref(uid) {
            EntryRef::Occupied(entry) => {
                if entry.get().has_seen(event.event_id()) {
                    if let Some(n) = tally.duplicates.get_mut(kind) {
                        *n += 1;
                    }
                    return true;
                }
                (entry.key().clone(), entry.into_mut())
            }
            EntryRef::Vacant(_) if matches!(event, Event::Override(_)) => return false,
            EntryRef::Vacant(entry) => {
                let state = Box::new(UserState::new(uid, event.occurred_at()));
                let entry = entry.insert_entry(state);
                (entry.key().clone(), entry.into_mut())
            }
        };
        // The user's deadlines up to the event fire under their region's policy; the event
        // is then applied, and the user judged, under the policy of the event's region
        // (theirs, if it names none).
        let chosen = if scoped.is_empty() {
            &**policy // no region has a policy of its own (step_new fires the deadlines)
        } else {
            fire(choose(policy, scoped, state.region.as_deref()), state, event.occurred_at(), decisions);
            choose(policy, scoped, event.region().or(state.region.as_deref()))
        };
        step_new(chosen, state, event, decisions);
        if let Some(n) = tally.applied.get_mut(kind) {
            *n += 1;
        }
        let deadline = state.deadline;
        let indexed = state.indexed;
        state.indexed = deadline;
        self.stepped(key, start, indexed, deadline);
        true
    }

    /// After a user's state stepped (its `indexed` already its new deadline): count
    /// the decisions from `start`, mark the user changed, and move it in the deadline
    /// index from `indexed` to `deadline`.
    fn stepped(&mut self, uid: ShortStr, start: usize, indexed: Option<f64>, deadline: Option<f64>) {
        self.counted(start);
        if self.track_dirty {
            self.dirty.push(uid.clone());
        }
        self.reindex(uid, indexed, deadline);
    }

    /// `apply`, counting how long it took and how far the event's time is behind the
    /// wall clock (a negative lag, the producer's clock ahead, counts as 0).
    fn timed_apply(&mut self, event: &Event) -> bool {
        let started = Instant::now();
        let applied = self.apply(event);
        let took = started.elapsed().as_secs_f64();
        if let Some(t) = &mut self.timings {
            Timings::observe(&t.step_bounds, &mut t.step, took);
            t.step_sum += took;
            if t.observe_lag {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let lag = (now - event.occurred_at()).max(0.0);
                Timings::observe(&t.lag_bounds, &mut t.lag, lag);
                t.lag_sum += lag;
            }
        }
        applied
    }

    /// Fire the deadlines of users the watermark has passed.
    pub fn tick(&mut self) {
        self.tick_until(self.buffer.watermark);
    }

    /// A new policy from its time on (docs/design.md, "Rolling out a policy"): every
    /// user's deadlines before it fire under the policy in force, then it is. A switch
    /// no later than the one in force (a redelivery, or an older one released after a
    /// newer) changes nothing.
    pub fn switch(&mut self, switch: PolicySwitch) {
        let region = switch.region.clone();
        let scope = region.as_deref();
        let in_force = match scope {
            None => Some(&self.switched),
            Some(r) => self.scoped.iter().find(|s| s.region == r).map(|s| &s.switched),
        };
        if in_force.is_some_and(|(at, id)| (switch.at, &switch.policy_id) <= (*at, id)) {
            return;
        }
        self.tick_until(switch.at.next_down());
        let key = (switch.at, switch.policy_id);
        match switch.region {
            None => {
                self.policy = switch.policy;
                self.switched = key;
            }
            Some(region) => match self.scoped.iter_mut().find(|s| s.region == region) {
                Some(s) => {
                    s.policy = switch.policy;
                    s.switched = key;
                }
                None => self.scoped.push(Scoped { region, policy: switch.policy, switched: key }),
            },
        }
        // Every user the switch governs is judged at its time under the new policy, in
        // user order: a region's users for a scoped switch, the users of no region with a
        // policy of its own for an unscoped one.
        let at = self.switched_at(scope);
        let mut users: Vec<ShortStr> = self
            .states
            .iter()
            .filter(|(_, s)| match scope {
                Some(r) => s.region.as_deref() == Some(r),
                None => !has_scope(&self.scoped, s.region.as_deref()),
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        users.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for uid in users {
            let Partition { states, policy, scoped, decisions, .. } = self;
            let Some(state) = states.get_mut(uid.as_str()) else { continue };
            let chosen = choose(policy, scoped, state.region.as_deref());
            let start = decisions.len();
            if self.places.is_some() {
                self.place = (1, at, Some(Arc::from(uid.as_str())), 0);
            }
            crate::core::review(chosen, state, at, decisions);
            let deadline = state.deadline;
            let indexed = state.indexed;
            state.indexed = deadline;
            self.stepped(uid, start, indexed, deadline);
        }
    }

    /// The time of the switch in force for a scope (None: unscoped).
    fn switched_at(&self, scope: Option<&str>) -> f64 {
        match scope {
            None => self.switched.0,
            Some(r) => self.scoped.iter().find(|s| s.region == r).map_or(self.switched.0, |s| s.switched.0),
        }
    }

    /// The policies in force, the unscoped one first, then each region's: (region,
    /// version, policy_id of its switch; "" before any).
    pub fn policies(&self) -> Vec<(Option<&str>, &str, &str)> {
        let mut out = vec![(None, &*self.policy.version, self.switched.1.as_str())];
        out.extend(self.scoped.iter().map(|s| {
            (Some(s.region.as_str()), &*s.policy.version, s.switched.1.as_str())
        }));
        out
    }

    /// A switch a previous owner applied, in force at once (nothing fires: the states it
    /// stored are past it).
    pub fn restore_switch(&mut self, switch: PolicySwitch) {
        let key = (switch.at, switch.policy_id);
        match switch.region {
            None => {
                self.policy = switch.policy;
                self.switched = key;
            }
            Some(region) => {
                self.scoped.retain(|s| s.region != region);
                self.scoped.push(Scoped { region, policy: switch.policy, switched: key });
            }
        }
    }

    /// Fire the deadlines <= mark, earliest first, then by user.
    fn tick_until(&mut self, mark: f64) {
        while let Some((deadline, uid)) = self.deadlines.pop_due(mark) {
            let Partition { states, policy, scoped, decisions, .. } = self;
            let Some(state) = states.get_mut(uid.as_str()) else { continue };
            let policy = choose(policy, scoped, state.region.as_deref());
            if state.indexed != Some(deadline) {
                continue; // superseded entry (or the same one twice)
            }
            let start = decisions.len();
            if self.places.is_some() {
                self.place = (1, deadline, Some(Arc::from(uid.as_str())), 0);
            }
            fire(policy, state, mark, decisions);
            let next = state.deadline;
            state.indexed = next;
            // its entry is gone from the index
            self.scheduled -= 1;
            self.stepped(uid, start, None, next);
        }
    }

    /// Hold a user's state (loaded from the table); `schedule_all` indexes its deadline.
    pub fn put_state(&mut self, uid: &str, state: UserState) {
        let old = self.states.insert(ShortStr::new(uid), Box::new(state));
        if old.is_some_and(|s| s.indexed.is_some()) {
            self.scheduled -= 1; // its index entries are superseded
        }
    }

    /// Index the deadlines of every state held (after states are loaded).
    pub fn schedule_all(&mut self) {
        let mut users = Vec::new();
        for (uid, state) in &mut self.states {
            let indexed = state.indexed;
            state.indexed = state.deadline;
            users.push((uid.clone(), indexed, state.deadline));
        }
        for (uid, indexed, deadline) in users {
            self.reindex(uid, indexed, deadline);
        }
    }

    fn counted(&mut self, start: usize) {
        let Partition { decisions, tally, places, place, .. } = self;
        for d in decisions.iter().skip(start) {
            tally.count_decision(d);
        }
        if let Some(places) = places {
            let name = place.2.clone().unwrap_or_else(|| Arc::from(""));
            for n in 0..decisions.len().saturating_sub(start) {
                places.push(Place {
                    phase: place.0,
                    at: place.1,
                    name: name.clone(),
                    handle: place.3,
                    n: n as u32,
                });
            }
        }
    }

    /// Move a user in the deadline index from `indexed` to `deadline` (its state's
    /// `indexed` already says `deadline`): Python's `_schedule`, whose `_scheduled[uid]`
    /// is `indexed`.
    fn reindex(&mut self, uid: ShortStr, indexed: Option<f64>, deadline: Option<f64>) {
        let Some(deadline) = deadline else {
            if indexed.is_some() {
                self.scheduled -= 1;
            }
            return;
        };
        if indexed == Some(deadline) {
            return;
        }
        if indexed.is_none() {
            self.scheduled += 1;
        }
        self.deadlines.push(deadline, uid);
        if self.deadlines.len() > 2 * self.scheduled + 4096 {
            // drop superseded entries
            let mut fresh = Deadlines::default();
            for (u, s) in &self.states {
                if let Some(d) = s.indexed {
                    fresh.push(d, u.clone());
                }
            }
            self.deadlines = fresh;
        }
    }
}
