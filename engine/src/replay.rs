//! Replay recorded logs through the partition loop, the whole loop in the engine: read
//! the files (gzip too, stdin), merge them by event time, decode, decide, and hand the
//! decisions and rejected lines out in order (the port of `streams/replay.py`).
//!
//! Several files are read as several inputs, like the three topics live: the next
//! line always comes from the file that is furthest behind in event time, and a
//! finished file stops holding the watermark back. With `jobs` > 1 the users are split
//! over that many threads: one thread reads and decodes every line once, every shard
//! sees every event's time (so every shard's watermark moves exactly as one
//! partition's would) and applies the events of its own users; their decisions are
//! merged back by their place in the order of emission, so the output is the same
//! for any number of jobs.

use crate::codec::{decode, Rejection};
use crate::events::{Event, PolicySwitch};
use crate::partition::{Partition, Place, Tally, Timings};
use crate::policy::Policy;
use rustc_hash::FxHashMap;
use base64::Engine as _;
use flate2::read::MultiGzDecoder;
use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread;

/// What a run hands out, in order.
pub trait Sink {
    /// Decisions of policy `which`, as JSON lines (no newline), in order.
    fn decisions(&mut self, which: usize, lines: &[String]) -> Result<(), String>;
    /// A rejected line's dead-letter record (JSON).
    fn rejected(&mut self, record: String) -> Result<(), String>;
    /// Lines read so far (every 65,536).
    fn progress(&mut self, lines: u64) -> Result<(), String>;
    /// Whether rejected lines are wanted at all.
    fn wants_rejected(&self) -> bool;
}

/// Why a run stopped: a file could not be read (one line naming it), the sink
/// failed (its own message), or the engine failed (a panic, caught: one line naming
/// the file and line of the record it was taking).
#[derive(Debug)]
pub enum ReplayError {
    Log(String),
    Sink(String),
    Engine(String),
}

/// Why the run's loop stopped: a `ReplayError`, or a panic caught in a shard, whose
/// file is named (`replay`) once the loop is left.
#[derive(Debug)]
enum Halt {
    Error(ReplayError),
    Failed(Failure),
}

impl From<ReplayError> for Halt {
    fn from(e: ReplayError) -> Self {
        Halt::Error(e)
    }
}

/// A panic caught in a shard: the input and line of the record it was taking (or the
/// last one it took, when it failed at the end of an input or on another shard's).
#[derive(Clone, Debug)]
pub struct Failure {
    pub source: u32,
    pub line: u64,
    pub at_record: bool,
    pub what: String,
}

fn failure(source: u32, line: u64, at_record: bool, panic: Box<dyn std::any::Any + Send>) -> Failure {
    Failure { source, line, at_record, what: panic_text(panic.as_ref()) }
}

/// What a caught panic said (its message, or "panic" when it carried none).
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

/// A log file, gzipped or not (by its magic bytes), or stdin for "-".
pub fn open_log(path: &str) -> Result<Box<dyn BufRead + Send>, String> {
    let raw: Box<dyn Read + Send> = if path == "-" {
        Box::new(io::stdin())
    } else {
        match File::open(path) {
            Ok(f) => Box::new(f),
            Err(e) => return Err(format!("{path}: cannot read: {}", io_text(&e))),
        }
    };
    let mut reader = BufReader::with_capacity(1 << 16, raw);
    // Look at the first two bytes. A pipe may hand over one byte first: that one is
    // taken out of the buffer, and put back in front of the rest.
    let mut taken: Vec<u8> = Vec::with_capacity(2);
    let head: Vec<u8> = loop {
        let buf = reader.fill_buf().map_err(|e| format!("{path}: cannot read: {}", io_text(&e)))?;
        if buf.is_empty() || taken.len() + buf.len() >= 2 {
            let mut head = taken.clone();
            head.extend(buf.iter().take(2 - taken.len()));
            break head;
        }
        taken.extend_from_slice(buf);
        let n = buf.len();
        reader.consume(n);
    };
    let rejoined: Box<dyn Read + Send> = if taken.is_empty() {
        Box::new(reader)
    } else {
        Box::new(io::Cursor::new(taken).chain(reader))
    };
    if head == [0x1f, 0x8b] {
        Ok(Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(rejoined))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, rejoined)))
    }
}

fn io_text(e: &io::Error) -> String {
    let text = e.to_string();
    // "No such file or directory (os error 2)" -> as Python's strerror
    match text.find(" (os error") {
        Some(at) => text.get(..at).unwrap_or(&text).to_owned(),
        None => text,
    }
}

/// A rejected line's dead-letter record, as `replay.RejectedLine.to_json` writes it.
pub fn rejected_json(source: &str, line: u64, r: &Rejection, raw: &[u8]) -> String {
    use crate::pyfmt::write_json_str;
    let mut o = String::with_capacity(raw.len() + 128);
    o.push_str("{\"source\":");
    write_json_str(source, &mut o);
    o.push_str(&format!(",\"line\":{line},\"reason\":"));
    write_json_str(r.reason, &mut o);
    o.push_str(",\"detail\":");
    write_json_str(&r.detail, &mut o);
    match std::str::from_utf8(raw) {
        Ok(text) => {
            o.push_str(",\"raw\":");
            write_json_str(text, &mut o);
        }
        Err(_) => {
            o.push_str(",\"raw_base64\":\"");
            o.push_str(&base64::engine::general_purpose::STANDARD.encode(raw));
            o.push('"');
        }
    }
    o.push('}');
    o
}

/// Which of n shards owns a user (FNV-1a; any stable split gives the same output).
pub fn shard_of(user_id: &str, n: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n.max(1) as u64) as usize
}

/// One step of the merged input: an event, or the end of an input.
// Nearly every item is an event (a Done ends an input): boxing it would cost an
// allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
enum Item {
    Event { source: u32, step: u64, line: u64, event: Event },
    Done { source: u32, step: u64 },
}

/// One step of the merged input as a shard of several takes it: an event of its own
/// users (the next of its chunk's events), another shard's event by its time only (it
/// moves the watermark, as every input's event does), or the end of an input.
#[derive(Clone, Copy)]
enum Step {
    Event { source: u32, step: u64, line: u64 },
    Elsewhere { source: u32, step: u64, t: f64 },
    Done { source: u32, step: u64 },
}

/// A run of steps for one shard, and the events of its own users among them, in order
/// (kept apart: most steps are another shard's, and an event is large).
#[derive(Default)]
struct Chunk {
    steps: Vec<Step>,
    events: Vec<Event>,
}

/// Where a replay ended, per policy: what `replay --metrics` reports.
#[derive(Clone, Debug, Default)]
pub struct Finished {
    pub tally: Tally,
    /// Users with a state.
    pub users: usize,
    /// Users with a deadline not yet reached.
    pub pending_deadlines: usize,
    /// Events held for order (none once every input has ended).
    pub buffered: usize,
    pub watermark: f64,
    /// The time each applied event took, when asked for.
    pub timings: Option<Timings>,
    /// The stored states of the users asked for that have one (`explain`).
    pub kept: Vec<(String, Vec<u8>)>,
    /// Overrides refused when applied (no such user): (step, rejection, the record).
    pub refused: Vec<(u64, Rejection, Box<[u8]>)>,
}

impl Finished {
    fn of(mut part: Partition, keep: &[String]) -> Finished {
        let kept = keep
            .iter()
            .filter_map(|u| part.states.get(u.as_str()).map(|s| (u.clone(), s.dump())))
            .collect();
        let refused = std::mem::take(&mut part.refused)
            .into_iter()
            .map(|r| (r.handle, r.rejection, r.event.raw))
            .collect();
        Finished {
            kept,
            refused,
            users: part.states.len(),
            pending_deadlines: part.pending_deadlines(),
            buffered: part.buffer.len(),
            watermark: part.buffer.watermark,
            timings: part.timings,
            tally: part.tally,
        }
    }

    /// Count another shard's partition of the same policy here too.
    fn add(&mut self, other: &Finished) {
        self.tally.add(&other.tally);
        self.users += other.users;
        self.pending_deadlines += other.pending_deadlines;
        self.buffered += other.buffered;
        if other.watermark > self.watermark {
            self.watermark = other.watermark;
        }
        if let (Some(mine), Some(theirs)) = (&mut self.timings, &other.timings) {
            mine.add(theirs);
        }
        self.kept.extend(other.kept.iter().cloned());
        self.refused.extend(other.refused.iter().cloned());
    }
}

/// A shard: a partition per policy, for some of the users (all with one job).
struct Shard {
    parts: Vec<Partition>,
    handles: Vec<u64>,
    /// The input and line of the last record offered.
    last: (u32, u64),
    /// Set by a panic: nothing more is taken.
    failed: Option<Failure>,
}

/// A decision on its way out: its place in the order of emission, and its JSON.
struct Out {
    step: u64,
    which: usize,
    place: Option<Place>,
    json: String,
}

impl Shard {
    /// A shard of `n`: with more than one, its partitions keep each decision's place.
    fn new(policies: &[Arc<Policy>], lateness: f64, sources: u32, n: usize, steps: Option<&[f64]>) -> Shard {
        let mut parts: Vec<Partition> = policies
            .iter()
            .map(|p| {
                let mut part = Partition::new(p.clone(), lateness);
                if n > 1 {
                    part.places = Some(Vec::new());
                }
                if let Some(bounds) = steps {
                    part.timings = Some(Timings::steps_only(bounds.to_vec()));
                }
                for s in 0..sources {
                    part.add_input(s);
                }
                part
            })
            .collect();
        parts.shrink_to_fit();
        Shard { parts, handles: Vec::new(), last: (0, 0), failed: None }
    }

    /// Apply an event of this shard's users (offered to each policy's partition).
    fn event(&mut self, source: u32, step: u64, line: u64, event: Event, out: &mut Vec<Out>) {
        if self.failed.is_some() {
            return;
        }
        self.last = (source, line);
        let Shard { parts, handles, .. } = self;
        let taken = catch_unwind(AssertUnwindSafe(|| match parts.as_mut_slice() {
            [part] => part.offer(source, event, step, handles),
            parts => {
                for part in parts {
                    part.offer(source, event.clone(), step, handles);
                }
            }
        }));
        match taken {
            Ok(()) => self.drained(step, out),
            Err(panic) => self.failed = Some(failure(source, line, true, panic)),
        }
    }

    /// Another shard's event at t: the watermark moves.
    fn elsewhere(&mut self, source: u32, step: u64, t: f64, out: &mut Vec<Out>) {
        self.each(step, out, |part, handles| part.observe(source, t, handles));
    }

    /// The end of an input.
    fn done(&mut self, source: u32, step: u64, out: &mut Vec<Out>) {
        self.each(step, out, |part, handles| part.remove_input(source, handles));
    }

    /// `f` on each partition, a panic caught (and named by the last record taken).
    fn each(&mut self, step: u64, out: &mut Vec<Out>, f: impl Fn(&mut Partition, &mut Vec<u64>)) {
        if self.failed.is_some() {
            return;
        }
        let Shard { parts, handles, .. } = self;
        let taken = catch_unwind(AssertUnwindSafe(|| {
            for part in parts.iter_mut() {
                f(part, handles);
            }
        }));
        match taken {
            Ok(()) => self.drained(step, out),
            Err(panic) => self.failed = Some(failure(self.last.0, self.last.1, false, panic)),
        }
    }

    /// Take a chunk's steps, leaving it empty.
    fn chunk(&mut self, chunk: &mut Chunk, out: &mut Vec<Out>) {
        let mut events = chunk.events.drain(..);
        for step in chunk.steps.drain(..) {
            match step {
                Step::Event { source, step, line } => {
                    if let Some(event) = events.next() {
                        self.event(source, step, line, event, out);
                    }
                }
                Step::Elsewhere { source, step, t } => self.elsewhere(source, step, t, out),
                Step::Done { source, step } => self.done(source, step, out),
            }
        }
    }

    fn drained(&mut self, step: u64, out: &mut Vec<Out>) {
        self.handles.clear();
        for (which, part) in self.parts.iter_mut().enumerate() {
            if part.decisions.is_empty() {
                continue;
            }
            let places = part.places.as_mut().map(std::mem::take);
            let mut places = places.map(|p| p.into_iter());
            for d in part.decisions.drain(..) {
                let place = places.as_mut().and_then(|p| p.next());
                out.push(Out { step, which, place, json: d.to_json() });
            }
        }
    }
}

fn out_cmp(a: &Out, b: &Out) -> Ordering {
    a.step.cmp(&b.step).then_with(|| a.which.cmp(&b.which)).then_with(|| match (&a.place, &b.place) {
        (Some(x), Some(y)) => x.order(y),
        _ => Ordering::Equal,
    })
}

/// What a thread sends back for a chunk: the decisions it led to, the chunk emptied,
/// and its failure if it failed.
type Returned = (Vec<Out>, Chunk, Option<Failure>);

/// Where the shards' work goes: inline (one job, each item at once), or to threads, in
/// chunks, one per shard (each event moved into its user's shard's chunk, its time
/// into the others'). A thread sends its chunk back emptied with the decisions it led
/// to, for the next chunk.
enum Workers {
    Inline(Shard, Vec<Out>),
    Threads {
        chunks: Vec<Chunk>,
        spare: Vec<Chunk>,
        to: Vec<SyncSender<Chunk>>,
        from: Vec<Receiver<Returned>>,
        handles: Vec<thread::JoinHandle<Vec<Finished>>>,
        in_flight: usize,
    },
}

/// Steps per chunk, and chunks a thread may be behind the reader: small chunks, many
/// in flight (16,384 steps), so that a thread whose users had more to do in one chunk
/// holds the others up as little as possible.
const CHUNK: usize = 512;
const IN_FLIGHT: usize = 32;
/// Decisions handed to the sink at a time: few enough that the memory of their lines
/// is reused at once rather than freed in bulk (which made the allocator give pages
/// back and fault them in again).
const BATCH: usize = 256;

struct Emitter<'a> {
    sink: &'a mut dyn Sink,
    pending: Vec<Vec<String>>,
}

impl Emitter<'_> {
    fn push(&mut self, outs: impl Iterator<Item = Out>) -> Result<(), ReplayError> {
        for o in outs {
            if let Some(list) = self.pending.get_mut(o.which) {
                list.push(o.json);
                if list.len() >= BATCH {
                    let lines = std::mem::take(list);
                    self.sink.decisions(o.which, &lines).map_err(ReplayError::Sink)?;
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ReplayError> {
        for (which, list) in self.pending.iter_mut().enumerate() {
            if !list.is_empty() {
                let lines = std::mem::take(list);
                self.sink.decisions(which, &lines).map_err(ReplayError::Sink)?;
            }
        }
        Ok(())
    }
}

impl Workers {
    fn start(
        policies: &[Arc<Policy>],
        lateness: f64,
        sources: u32,
        jobs: usize,
        steps: Option<&[f64]>,
        keep: &Arc<[String]>,
    ) -> Workers {
        if jobs <= 1 {
            return Workers::Inline(Shard::new(policies, lateness, sources, 1, steps), Vec::new());
        }
        let mut to = Vec::new();
        let mut from = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..jobs {
            let (send_items, items) = sync_channel::<Chunk>(IN_FLIGHT + 1);
            let (send_out, outs) = sync_channel::<Returned>(IN_FLIGHT + 1);
            let mut shard = Shard::new(policies, lateness, sources, jobs, steps);
            let keep = keep.clone();
            handles.push(thread::spawn(move || {
                for mut chunk in items {
                    let mut out = Vec::new();
                    shard.chunk(&mut chunk, &mut out);
                    let failed = shard.failed.clone();
                    if send_out.send((out, chunk, failed.clone())).is_err() || failed.is_some() {
                        break;
                    }
                }
                shard.parts.into_iter().map(|p| Finished::of(p, &keep)).collect()
            }));
            to.push(send_items);
            from.push(outs);
        }
        let chunks = (0..jobs).map(|_| Chunk::default()).collect();
        Workers::Threads { chunks, spare: Vec::new(), to, from, handles, in_flight: 0 }
    }

    /// Hand an item over; decisions that are ready go to the emitter.
    fn push(&mut self, item: Item, emit: &mut Emitter) -> Result<(), Halt> {
        match self {
            Workers::Inline(shard, out) => {
                match item {
                    Item::Event { source, step, line, event } => {
                        shard.event(source, step, line, event, out)
                    }
                    Item::Done { source, step } => shard.done(source, step, out),
                }
                if let Some(f) = shard.failed.take() {
                    return Err(Halt::Failed(f));
                }
                if out.is_empty() {
                    return Ok(());
                }
                Ok(emit.push(out.drain(..))?)
            }
            Workers::Threads { chunks, .. } => {
                match item {
                    Item::Event { source, step, line, event } => {
                        let home = shard_of(event.user_id(), chunks.len());
                        let t = event.occurred_at();
                        for (k, chunk) in chunks.iter_mut().enumerate() {
                            if k != home {
                                chunk.steps.push(Step::Elsewhere { source, step, t });
                            }
                        }
                        if let Some(chunk) = chunks.get_mut(home) {
                            chunk.steps.push(Step::Event { source, step, line });
                            chunk.events.push(event);
                        }
                    }
                    Item::Done { source, step } => {
                        for chunk in chunks.iter_mut() {
                            chunk.steps.push(Step::Done { source, step });
                        }
                    }
                }
                if chunks.first().is_some_and(|c| c.steps.len() < CHUNK) {
                    return Ok(());
                }
                self.send(emit)
            }
        }
    }

    /// Send each thread its chunk of the steps gathered.
    fn send(&mut self, emit: &mut Emitter) -> Result<(), Halt> {
        match self {
            Workers::Inline(..) => Ok(()),
            Workers::Threads { chunks, spare, to, in_flight, .. } => {
                for (chunk, send) in chunks.iter_mut().zip(to.iter()) {
                    let next = spare.pop().unwrap_or_default();
                    send.send(std::mem::replace(chunk, next))
                        .map_err(|_| ReplayError::Sink("a replay thread ended early".into()))?;
                }
                *in_flight += 1;
                if *in_flight > IN_FLIGHT {
                    self.collect_one(emit)?;
                }
                Ok(())
            }
        }
    }

    fn collect_one(&mut self, emit: &mut Emitter) -> Result<(), Halt> {
        if let Workers::Threads { from, spare, in_flight, .. } = self {
            let mut all: Vec<Out> = Vec::new();
            let mut failed = None;
            for r in from.iter() {
                let (part, emptied, failure) = r
                    .recv()
                    .map_err(|_| ReplayError::Sink("a replay thread ended early".into()))?;
                all.extend(part);
                spare.push(emptied);
                failed = failed.or(failure);
            }
            *in_flight -= 1;
            if let Some(f) = failed {
                return Err(Halt::Failed(f));
            }
            all.sort_by(out_cmp);
            emit.push(all.into_iter())?;
        }
        Ok(())
    }

    fn finish(mut self, emit: &mut Emitter, keep: &[String]) -> Result<Vec<Finished>, Halt> {
        self.send(emit)?;
        if let Workers::Threads { in_flight, .. } = &self {
            for _ in 0..*in_flight {
                self.collect_one(emit)?;
            }
        }
        match self {
            Workers::Inline(shard, _) => Ok(shard.parts.into_iter().map(|p| Finished::of(p, keep)).collect()),
            Workers::Threads { to, handles, .. } => {
                drop(to);
                let mut tallies: Vec<Finished> = Vec::new();
                for h in handles {
                    let theirs = h
                        .join()
                        .map_err(|_| ReplayError::Sink("a replay thread failed".into()))?;
                    if tallies.is_empty() {
                        tallies = theirs;
                    } else {
                        for (mine, other) in tallies.iter_mut().zip(theirs.iter()) {
                            mine.add(other);
                        }
                    }
                }
                Ok(tallies)
            }
        }
    }
}

/// Decide over the logs under each policy; returns where each policy's run ended, with
/// its tally. Rejected lines are counted in every tally and reported once. With `steps`
/// (a histogram's bounds), the time each applied event took is counted too. The final
/// states of the users in `keep` come back in `Finished::kept`. A `schedule` of policy
/// switches (the policy history; one policy, one thread) is offered before the first
/// line, from an input of its own after the files'.
#[allow(clippy::too_many_arguments)]
pub fn replay(
    policies: &[Arc<Policy>],
    paths: &[String],
    lateness: f64,
    jobs: usize,
    steps: Option<&[f64]>,
    keep: &[String],
    schedule: &[PolicySwitch],
    sink: &mut dyn Sink,
) -> Result<Vec<Finished>, ReplayError> {
    if !schedule.is_empty() && policies.len() != 1 {
        return Err(ReplayError::Engine("a policy history replays one policy".to_owned()));
    }
    run(policies, paths, lateness, jobs, steps, keep, schedule, sink).map_err(|e| match e {
        Halt::Failed(f) => {
            let name = paths.get(f.source as usize).map_or("", String::as_str);
            let place = if f.at_record { "line" } else { "after line" };
            ReplayError::Engine(format!(
                "{name}: {place} {}: the engine failed ({}); nothing after it was decided",
                thousands(f.line),
                f.what
            ))
        }
        Halt::Error(e) => e,
    })
}

#[allow(clippy::too_many_arguments)]
fn run(
    policies: &[Arc<Policy>],
    paths: &[String],
    lateness: f64,
    jobs: usize,
    steps: Option<&[f64]>,
    keep: &[String],
    schedule: &[PolicySwitch],
    sink: &mut dyn Sink,
) -> Result<Vec<Finished>, Halt> {
    let keep: Arc<[String]> = Arc::from(keep);
    let mut handles = Vec::with_capacity(paths.len());
    for p in paths {
        handles.push(open_log(p).map_err(ReplayError::Log)?);
    }
    let files = paths.len() as u32;
    let sources = files + u32::from(!schedule.is_empty());
    // Policy switches are not a user's: with a history, one thread takes every event.
    let jobs = if schedule.is_empty() { jobs.max(1) } else { 1 };
    let mut workers = Workers::start(policies, lateness, sources, jobs, steps, &keep);
    let mut emit = Emitter { sink, pending: vec![Vec::new(); policies.len()] };
    let mut counts = Tally::default(); // read and rejected, the same for every policy
    let mut behind = vec![f64::NEG_INFINITY; handles.len()];
    let mut line_no = vec![0u64; handles.len()];
    let mut live: Vec<usize> = (0..handles.len()).collect();
    let mut lines: u64 = 0;
    let mut step: u64 = 0;
    let mut origins: FxHashMap<u64, (usize, u64)> = FxHashMap::default();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let wants_rejected = emit.sink.wants_rejected();
    if !schedule.is_empty() {
        // The policy history, in its order, from its own input, which then ends: each
        // switch waits in the buffer for the watermark like any event.
        let mut history: Vec<&PolicySwitch> = schedule.iter().collect();
        history.sort_by(|a, b| {
            a.at.total_cmp(&b.at)
                .then_with(|| a.policy_id.cmp(&b.policy_id))
                .then_with(|| a.region.as_deref().unwrap_or("").cmp(b.region.as_deref().unwrap_or("")))
        });
        for switch in history {
            step += 1;
            let event = Event::Policy(Box::new(switch.clone()));
            workers.push(Item::Event { source: files, step, line: 0, event }, &mut emit)?;
        }
        step += 1;
        workers.push(Item::Done { source: files, step }, &mut emit)?;
    }
    while !live.is_empty() {
        let i = if live.len() == 1 {
            live.first().copied().unwrap_or(0)
        } else {
            live.iter()
                .copied()
                .min_by(|a, b| {
                    let ta = behind.get(*a).copied().unwrap_or(f64::INFINITY);
                    let tb = behind.get(*b).copied().unwrap_or(f64::INFINITY);
                    ta.partial_cmp(&tb).unwrap_or(Ordering::Equal)
                })
                .unwrap_or(0)
        };
        // Read file i while it is the one furthest behind: it stays so until its time
        // moves on (then another may be behind it), or for good when alone.
        let alone = live.len() == 1;
        let mut at = behind.get(i).copied().unwrap_or(f64::NEG_INFINITY);
        let mut number = line_no.get(i).copied().unwrap_or(0);
        let mut done = true;
        let name = paths.get(i).map(String::as_str).unwrap_or("");
        let Some(reader) = handles.get_mut(i) else { break };
        loop {
            let mut used = 0;
            let flow = 'line: {
                let line = match next_line(reader, &mut buf) {
                    Ok(Some((line, n))) => {
                        used = n;
                        line
                    }
                    Ok(None) => break 'line Flow::End,
                    Err(e) => {
                        // What came before is applied and written; the run stops with
                        // one line naming the file and place.
                        let outs = workers.finish(&mut emit, &keep);
                        emit.flush()?;
                        outs?;
                        return Err(Halt::Error(ReplayError::Log(format!(
                            "{name}: unreadable after line {}: {}",
                            thousands(number),
                            io_text(&e)
                        ))));
                    }
                };
                number += 1;
                let mut end = line.len();
                while end > 0 && matches!(line.get(end - 1), Some(b'\r' | b'\n')) {
                    end -= 1;
                }
                let raw = line.get(..end).unwrap_or_default();
                if raw.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)) {
                    break 'line Flow::Next; // blank line: nothing to count
                }
                lines += 1;
                if lines.is_multiple_of(65_536) {
                    emit.sink.progress(lines).map_err(ReplayError::Sink)?;
                }
                match decode(raw) {
                    Err(r) => {
                        counts.read += 1;
                        counts.count_rejection(&r);
                        if wants_rejected {
                            emit.sink
                                .rejected(rejected_json(name, number, &r, raw))
                                .map_err(ReplayError::Sink)?;
                        }
                    }
                    Ok(event) => {
                        let t = event.occurred_at();
                        step += 1;
                        counts.read += 1;
                        if matches!(event, Event::Override(_)) {
                            origins.insert(step, (i, number)); // if refused: where it was
                        }
                        let item = Item::Event { source: i as u32, step, line: number, event };
                        workers.push(item, &mut emit)?;
                        if t > at {
                            at = t;
                            if !alone {
                                break 'line Flow::Switch;
                            }
                        }
                    }
                }
                Flow::Next
            };
            reader.consume(used);
            match flow {
                Flow::Next => {}
                Flow::End => break,
                Flow::Switch => {
                    done = false;
                    break;
                }
            }
        }
        if let Some(slot) = behind.get_mut(i) {
            *slot = at;
        }
        if let Some(slot) = line_no.get_mut(i) {
            *slot = number;
        }
        if done {
            live.retain(|x| *x != i);
            step += 1;
            workers.push(Item::Done { source: i as u32, step }, &mut emit)?;
        }
    }
    let mut tallies = workers.finish(&mut emit, &keep)?;
    emit.flush()?;
    // Overrides refused when applied (no such user; the same under every policy): after
    // every other rejected line, in the order of the logs.
    let mut refused: Vec<(usize, u64, Rejection, Box<[u8]>)> = tallies
        .first_mut()
        .map(|first| std::mem::take(&mut first.refused))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(step, r, raw)| origins.get(&step).map(|(i, line)| (*i, *line, r, raw)))
        .collect();
    refused.sort_by_key(|(i, line, _, _)| (*i, *line));
    if wants_rejected {
        for (i, line, r, raw) in &refused {
            let name = paths.get(*i).map_or("", String::as_str);
            emit.sink.rejected(rejected_json(name, *line, r, raw)).map_err(ReplayError::Sink)?;
        }
    }
    for t in &mut tallies {
        t.refused.clear();
    }
    for t in &mut tallies {
        t.tally.add(&counts);
    }
    Ok(tallies)
}

/// What the reading loop does after a line.
enum Flow {
    Next,
    /// The file has ended.
    End,
    /// Its time moved on: another file may now be further behind.
    Switch,
}

/// The next line of a log with its newline, or None at its end: read in place in the
/// reader's buffer when it is whole there (the caller then consumes the count given
/// with it), else gathered into `buf` (count 0: already consumed).
fn next_line<'a>(
    reader: &'a mut Box<dyn BufRead + Send>,
    buf: &'a mut Vec<u8>,
) -> io::Result<Option<(&'a [u8], usize)>> {
    let at = memchr::memchr(b'\n', reader.fill_buf()?);
    if let Some(at) = at {
        let line = reader.fill_buf()?.get(..=at).unwrap_or_default();
        return Ok(Some((line, at + 1)));
    }
    buf.clear();
    if reader.read_until(b'\n', buf)? == 0 {
        return Ok(None);
    }
    Ok(Some((buf.as_slice(), 0)))
}

/// 1234567 -> "1,234,567" (Python's `{:,}`).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Kept(Vec<String>);

    impl Sink for Kept {
        fn decisions(&mut self, _: usize, lines: &[String]) -> Result<(), String> {
            self.0.extend(lines.iter().cloned());
            Ok(())
        }
        fn rejected(&mut self, _: String) -> Result<(), String> {
            Ok(())
        }
        fn progress(&mut self, _: u64) -> Result<(), String> {
            Ok(())
        }
        fn wants_rejected(&self) -> bool {
            false
        }
    }

    fn report(id: &str, user: &str, second: u32) -> String {
        format!(
            "{{\"event_id\":\"{id}\",\"event_type\":\"credit_report\",\"user_id\":\"{user}\",\
             \"occurred_at\":\"2026-01-01T00:00:{second:02}Z\",\"schema_version\":1,\
             \"bureau\":\"pboc\",\"credit_score\":500}}"
        )
    }

    /// A panic in the engine (the test build's fail point, in `Partition::apply`) ends
    /// the run with an error naming the file and line of the record it was taking,
    /// for every job count; nothing aborts.
    #[test]
    fn a_panic_names_the_record_it_was_taking() {
        let policy = Policy::from_json(
            br#"{"version":"t","cooling_off":86400.0,"late_after_days":1,"dedupe_ids":8,
                 "rules":[{"code":"SCORE_BELOW_MIN","window":0.0,"tiers":[
                   {"threshold":600.0,"action":"warn","notice":0.0,"limit_factor":null}]}]}"#,
        )
        .map(Arc::new);
        let Ok(policy) = policy else { panic!("policy: {policy:?}") };
        let dir = std::env::temp_dir().join(format!("replay-panic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let path = dir.join("log.jsonl");
        let lines = [report("a-1", "a", 1), report("b-1", "b", 2), report("test-panic", "c", 3)];
        std::fs::write(&path, lines.join("\n") + "\n").ok();
        let name = path.to_string_lossy().into_owned();
        for jobs in [1, 2, 3] {
            let mut kept = Kept(Vec::new());
            let one = std::slice::from_ref(&policy);
            let outcome = replay(one, std::slice::from_ref(&name), 0.0, jobs, None, &[], &[], &mut kept);
            match outcome {
                Err(ReplayError::Engine(message)) => {
                    assert!(message.starts_with(&format!("{name}: line 3: ")), "{message}");
                    assert!(message.contains("the test's fail point"), "{message}");
                }
                other => panic!("jobs {jobs}: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
