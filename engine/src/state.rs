//! Per-user state: what the core remembers about one user, bounded and compact, and
//! its stored form (`dump`/`load`), the same JSON as the Python engine's
//! (`tests/oracle/state.py`), so that the tables of running workers load unchanged.

use crate::decisions::{Num, STATUSES};
use crate::policy::ADVERSE_CODES;
use crate::pyfmt::{write_int, write_json_float, write_json_str};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

pub const LEDGER_CAP: usize = 64;
pub const APPLICATIONS_CAP: usize = 64;
pub const SCORES_CAP: usize = 32;
pub const BUREAU_FIELDS: [&str; 6] = [
    "credit_score",
    "open_lenders",
    "hard_inquiries_30d",
    "delinquent_accounts",
    "total_debt",
    "monthly_income",
];
pub const CREDIT_SCORE: u8 = 0;
pub const OPEN_LENDERS: u8 = 1;
pub const HARD_INQUIRIES: u8 = 2;
pub const DELINQUENT_ACCOUNTS: u8 = 3;
pub const TOTAL_DEBT: u8 = 4;
pub const MONTHLY_INCOME: u8 = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Installment {
    /// occurred_at of the record that won (latest wins)
    pub recorded_at: f64,
    /// 00:00 UTC of the due date
    pub due: f64,
    pub amount_due: f64,
    pub amount_paid: f64,
    /// When paid (`paid_at()`).
    paid: OptTime,
}

/// A string held in place when it is short (as user ids and ledger keys mostly are),
/// else boxed: no allocation of its own, and read where its owner is. Only made from
/// whole `str`s (its parts are private), so its bytes are always UTF-8.
#[derive(Clone, Debug)]
pub struct ShortStr(Repr);

#[derive(Clone, Debug)]
enum Repr {
    Short { len: u8, bytes: [u8; 22] },
    Long(Box<str>),
}

impl ShortStr {
    #[inline]
    pub fn new(s: &str) -> ShortStr {
        let mut bytes = [0u8; 22];
        match bytes.get_mut(..s.len()) {
            Some(slot) => {
                slot.copy_from_slice(s.as_bytes());
                ShortStr(Repr::Short { len: s.len() as u8, bytes })
            }
            None => ShortStr(Repr::Long(s.into())),
        }
    }

    /// The parts joined (`format!("{loan}#{n}")` for `[loan, "#", n]`).
    pub fn joined(parts: &[&str]) -> ShortStr {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut bytes = [0u8; 22];
        if len > bytes.len() {
            return ShortStr(Repr::Long(parts.concat().into_boxed_str()));
        }
        let mut at = 0;
        for part in parts {
            if let Some(slot) = bytes.get_mut(at..at + part.len()) {
                slot.copy_from_slice(part.as_bytes());
            }
            at += part.len();
        }
        ShortStr(Repr::Short { len: len as u8, bytes })
    }

    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Short { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Long(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: the bytes are those of whole `str`s joined (`joined`, the only
            // maker of a `Short`), so they are UTF-8; read on every probe of the states'
            // table, where checking them again would cost more than the probe.
            Repr::Short { .. } => unsafe { std::str::from_utf8_unchecked(self.as_bytes()) },
            Repr::Long(s) => s,
        }
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShortStr {}

/// Ordered as its `str` (bytes, lexicographically).
impl PartialOrd for ShortStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl serde::Serialize for ShortStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> ShortStr {
        ShortStr::new(s)
    }
}

/// Hashed as its `str`, so that a map keyed by `ShortStr` is looked up by `&str`.
impl std::hash::Hash for ShortStr {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::borrow::Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::ops::Deref for ShortStr {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// A time or none, in eight bytes (an `Option<f64>` takes sixteen): NaN for none, as
/// no time is NaN (times are read from finite JSON numbers and dates).
#[derive(Clone, Copy, Debug)]
pub struct OptTime(f64);

impl OptTime {
    pub const NONE: OptTime = OptTime(f64::NAN);

    pub fn some(t: f64) -> OptTime {
        OptTime(t)
    }

    pub fn new(t: Option<f64>) -> OptTime {
        OptTime(t.unwrap_or(f64::NAN))
    }

    pub fn get(self) -> Option<f64> {
        (!self.0.is_nan()).then_some(self.0)
    }
}

impl PartialEq for OptTime {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// What a user under a notice, warning or restriction carries; boxed in the state,
/// which most users do without.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adverse {
    /// Tier key -> condition since, in insertion order.
    pub pending: Vec<(Arc<str>, f64)>,
    /// Notices a warning named: tier key -> the time that notice started.
    pub announced: Vec<(Arc<str>, f64)>,
    /// The decision that set the status: what a restore supersedes.
    pub adverse_id: Option<String>,
    /// Its reasons and those of warnings since, same status.
    pub adverse_codes: Vec<&'static str>,
}

impl Adverse {
    fn is_empty(&self) -> bool {
        self.pending.is_empty()
            && self.announced.is_empty()
            && self.adverse_id.is_none()
            && self.adverse_codes.is_empty()
    }
}

/// The `Adverse` of a state without one.
static NO_ADVERSE: Adverse = Adverse {
    pending: Vec::new(),
    announced: Vec::new(),
    adverse_id: None,
    adverse_codes: Vec::new(),
};

/// The latest value of each bureau field and the time of its report, held in place;
/// `order` keeps the fields in the order they were first reported (the stored order).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bureau {
    /// Per field (index into BUREAU_FIELDS): the value's bits, an i64's or (bit set in
    /// `floats`) an f64's.
    bits: [u64; 6],
    at: [f64; 6],
    floats: u8,
    order: [u8; 6],
    /// Bit i set: field i is in `order` (what `has` asks, without looking through it);
    /// as many fields as bits are in `order`.
    present: u8,
}

impl Bureau {
    /// Fields held.
    fn len(&self) -> usize {
        self.present.count_ones() as usize
    }

    fn has(&self, field: u8) -> bool {
        field < 8 && self.present & (1 << field) != 0
    }

    /// The field's value and the time it was reported.
    pub fn get(&self, field: u8) -> Option<(Num, f64)> {
        if !self.has(field) {
            return None;
        }
        let i = usize::from(field);
        let bits = *self.bits.get(i)?;
        let value = if self.floats & (1 << i) != 0 {
            Num::Float(f64::from_bits(bits))
        } else {
            Num::Int(bits as i64)
        };
        Some((value, *self.at.get(i)?))
    }

    /// Set a field (one of BUREAU_FIELDS; others are ignored).
    pub fn set(&mut self, field: u8, value: Num, at: f64) {
        let i = usize::from(field);
        let (Some(bits), Some(slot)) = (self.bits.get_mut(i), self.at.get_mut(i)) else { return };
        match value {
            Num::Int(v) => {
                *bits = v as u64;
                self.floats &= !(1 << i);
            }
            Num::Float(v) => {
                *bits = v.to_bits();
                self.floats |= 1 << i;
            }
        }
        *slot = at;
        if !self.has(field) {
            let held = self.len();
            if let Some(o) = self.order.get_mut(held) {
                *o = field;
                self.present |= 1 << i;
            }
        }
    }

    /// (field, value, reported at), in the stored order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, Num, f64)> + '_ {
        self.order
            .iter()
            .take(self.len())
            .filter_map(|f| self.get(*f).map(|(v, at)| (*f, v, at)))
    }
}

/// Ask the processor to bring `bytes` bytes from `at` into the cache (a hint only; at
/// most 256 bytes: the first lines are those read first).
#[inline]
pub fn prefetch(at: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut offset = 0;
        while offset < bytes.min(256) {
            // SAFETY: a prefetch reads nothing and never faults, whatever the address
            // (wrapping_add makes no claim about it either).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(offset).cast::<i8>()) };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, bytes);
}

/// Make room for `more` items, growing by a quarter at least, not doubling: a state's
/// lists are many and mostly short, and kept as long as the user is.
pub fn reserve_tight<T>(v: &mut Vec<T>, more: usize) {
    if v.capacity() - v.len() < more {
        v.reserve_exact(more.max(v.len() / 4));
    }
}

/// Python's float floor division (`a // b`), which is not always `(a / b).floor()`.
pub fn py_floordiv(a: f64, b: f64) -> f64 {
    // Whole numbers of seconds (as most times are) below 2^53: CPython's steps below are
    // then exact integer arithmetic (remainder, difference, quotient), which is the
    // integers' floor division, with no call to fmod and floor.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if a.abs() < EXACT && b.abs() < EXACT && b != 0.0 {
        let (i, j) = (a as i64, b as i64);
        if i as f64 == a && j as f64 == b {
            let q = if i % j != 0 && (i < 0) != (j < 0) { i / j - 1 } else { i / j };
            // A zero quotient keeps the sign of a / b, as CPython's does.
            return if q == 0 { 0.0f64.copysign(a / b) } else { q as f64 };
        }
    }
    floordiv_general(a, b)
}

/// CPython's float_floor_div, less the remainder it also returns: `py_floordiv` for
/// every input. Not inlined: its fmod and floor are library calls, which the compiler
/// would otherwise make ahead of the quick path's test, for every call.
#[inline(never)]
fn floordiv_general(a: f64, b: f64) -> f64 {
    let rem = a % b;
    let mut div = (a - rem) / b;
    if rem != 0.0 && (b < 0.0) != (rem < 0.0) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0f64.copysign(a / b)
    }
}

/// Python's `int()` of a float, saturating (the values here are small).
pub fn py_int(x: f64) -> i64 {
    // `as` truncates toward zero and saturates (NaN gives 0): no call to trunc.
    x as i64
}

impl Installment {
    pub fn new(
        recorded_at: f64,
        due: f64,
        amount_due: f64,
        amount_paid: f64,
        paid_at: Option<f64>,
    ) -> Self {
        Installment { recorded_at, due, amount_due, amount_paid, paid: OptTime::new(paid_at) }
    }

    pub fn paid_at(&self) -> Option<f64> {
        self.paid.get()
    }

    pub fn is_paid(&self) -> bool {
        self.paid.get().is_some()
    }

    /// docs/design.md: 0 if paid by the end of the due date, else whole days to payment or t.
    pub fn days_past_due(&self, t: f64) -> i64 {
        let end = self.paid.get().unwrap_or(t);
        if end < self.due + 86_400.0 {
            return 0;
        }
        py_int(py_floordiv(end - self.due, 86_400.0))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserState {
    pub user_id: ShortStr,
    pub first_seen: f64,
    /// Event time up to which this user has been evaluated.
    pub clock: f64,
    /// Index into STATUSES (its rank).
    pub status: u8,
    pub limit_factor: f64,
    /// Decisions emitted so far: part of the deterministic decision id.
    pub seq: i64,
    /// "loan#n" -> installment, in insertion order.
    pub ledger: Vec<(ShortStr, Installment)>,
    /// Times, sorted.
    pub applications: Vec<f64>,
    pub last_drawdown: OptTime,
    pub bureau: Bureau,
    /// Rolling-maximum candidates.
    pub scores: Vec<(f64, i64)>,
    /// No adverse condition since (cooling-off).
    pub clear_since: OptTime,
    /// Automatic action is held until then (an operator's hold: an appeal under review).
    pub hold_until: OptTime,
    /// The region the user's latest applied event carried (segment-scoped policies).
    pub region: Option<ShortStr>,
    /// Pending notices, warnings and what a restore supersedes (`adverse()`): None
    /// when all are empty.
    adverse: Option<Box<Adverse>>,
    /// Next event time at which the decision may change.
    pub deadline: Option<f64>,
    /// Recent event ids, oldest first.
    pub seen: Seen,
    /// Not stored: the deadline under which the partition's index holds this user.
    pub indexed: Option<f64>,
}

/// The recent event ids of a user, oldest first, packed in one buffer: one allocation
/// for them all. Each id is a head byte and bytes. Most ids start with their user's id
/// (`u7-12` of user `u7`), which is left out: a head 0x80 + n (n < 127) is the user id
/// and the n bytes after it; a head n < 0x80 is the n bytes after it; a head 0xFF is an
/// id of the four-byte length after it. An id is written the shortest way, so that
/// each id has one form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    buf: Vec<u8>,
}

/// One id of a `Seen`: the user id first or not, then the bytes held.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeenId<'a> {
    pub prefixed: bool,
    pub rest: &'a [u8],
}

impl SeenId<'_> {
    /// Whole ids are held, so the bytes are UTF-8 ("" otherwise).
    pub fn rest_str(&self) -> &str {
        std::str::from_utf8(self.rest).unwrap_or_default()
    }
}

/// The form an id is held in, under a user id.
fn seen_form<'a>(user: &str, id: &'a str) -> SeenId<'a> {
    match id.strip_prefix(user) {
        Some(rest) if rest.len() < 0x7F => SeenId { prefixed: true, rest: rest.as_bytes() },
        _ => SeenId { prefixed: false, rest: id.as_bytes() },
    }
}

impl Seen {
    /// The ids held (counted: a count kept beside them would make every state eight
    /// bytes larger, and only `push` needs it).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes held (for accounting).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn iter(&self) -> SeenIter<'_> {
        SeenIter { rest: &self.buf }
    }

    /// Whether `id` is held (`user` is the state's user id, as for `push`).
    pub fn contains(&self, user: &str, id: &str) -> bool {
        let form = seen_form(user, id);
        self.iter().any(|held| held == form)
    }

    /// Append an id; the oldest goes when there are then more than `keep` (one only, as
    /// the Python engine does: a state stored under a larger `dedupe_ids` keeps its ids).
    pub fn push(&mut self, user: &str, id: &str, keep: usize) {
        let form = seen_form(user, id);
        let n = form.rest.len();
        // Grown 16 bytes at least (a few ids): most ids are a few bytes, and growing by
        // one each time would move the buffer at nearly every event.
        if self.buf.capacity() - self.buf.len() < n + 5 {
            self.buf.reserve_exact((n + 5).max(16).max(self.buf.len() / 4));
        }
        if form.prefixed {
            self.buf.push(0x80 + n as u8);
        } else if n < 0x80 {
            self.buf.push(n as u8);
        } else {
            self.buf.push(0xFF);
            self.buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        }
        self.buf.extend_from_slice(form.rest);
        if self.len() > keep {
            let first = self.buf.len() - self.iter().rest_after_first().len();
            self.buf.drain(..first);
        }
    }
}

pub struct SeenIter<'a> {
    rest: &'a [u8],
}

impl<'a> SeenIter<'a> {
    /// The bytes after the first id.
    fn rest_after_first(mut self) -> &'a [u8] {
        self.next();
        self.rest
    }
}

impl<'a> Iterator for SeenIter<'a> {
    type Item = SeenId<'a>;

    fn next(&mut self) -> Option<SeenId<'a>> {
        let (&head, rest) = self.rest.split_first()?;
        let (prefixed, n, rest) = match head {
            0xFF => {
                let (len, rest) = rest.split_first_chunk::<4>()?;
                (false, u32::from_le_bytes(*len) as usize, rest)
            }
            0x80.. => (true, usize::from(head - 0x80), rest),
            _ => (false, usize::from(head), rest),
        };
        let (id, rest) = rest.split_at_checked(n)?;
        self.rest = rest;
        Some(SeenId { prefixed, rest: id })
    }
}

impl UserState {
    pub fn new(user_id: &str, t: f64) -> UserState {
        UserState {
            user_id: ShortStr::new(user_id),
            first_seen: t,
            clock: t,
            status: 0,
            limit_factor: 1.0,
            seq: 0,
            ledger: Vec::new(),
            applications: Vec::new(),
            last_drawdown: OptTime::NONE,
            bureau: Bureau::default(),
            scores: Vec::new(),
            clear_since: OptTime::NONE,
            hold_until: OptTime::NONE,
            region: None,
            adverse: None,
            deadline: None,
            seen: Seen::default(),
            indexed: None,
        }
    }

    pub fn adverse(&self) -> &Adverse {
        self.adverse.as_deref().unwrap_or(&NO_ADVERSE)
    }

    /// The adverse part, to change (made when there is none; `tidy` drops it again).
    pub fn adverse_mut(&mut self) -> &mut Adverse {
        self.adverse.get_or_insert_with(Box::default)
    }

    /// No pending notice, warning or restriction left (a restore).
    pub fn clear_adverse(&mut self) {
        self.adverse = None;
    }

    /// Drop an adverse part that holds nothing.
    pub fn tidy(&mut self) {
        if self.adverse.as_ref().is_some_and(|a| a.is_empty()) {
            self.adverse = None;
        }
    }

    pub fn bureau_value(&self, field: u8) -> Option<Num> {
        self.bureau.get(field).map(|b| b.0)
    }

    pub fn bureau_at(&self, field: u8) -> Option<f64> {
        self.bureau.get(field).map(|b| b.1)
    }

    /// Ask the processor to bring this state into the cache (not its parts, which
    /// are read from it): the partition does this when it buffers an event, some
    /// events before it applies it.
    pub fn prefetch(&self) {
        prefetch(self as *const UserState as *const u8, std::mem::size_of::<UserState>());
    }

    /// The same for the parts the core reads on every event (ids seen, ledger, times
    /// of applications, scores): the partition does this for the next event it will
    /// apply, whose state `prefetch` brought in.
    pub fn prefetch_parts(&self) {
        prefetch(self.seen.buf.as_ptr(), self.seen.buf.len());
        prefetch(self.ledger.as_ptr().cast(), std::mem::size_of_val(self.ledger.as_slice()));
        prefetch(self.applications.as_ptr().cast(), 8 * self.applications.len());
        prefetch(self.scores.as_ptr().cast(), 16 * self.scores.len());
    }

    #[inline]
    pub fn has_seen(&self, event_id: &str) -> bool {
        self.seen.contains(&self.user_id, event_id)
    }

    /// Remember an event id, keeping `keep` at most (see `Seen::push`).
    pub fn see(&mut self, event_id: &str, keep: usize) {
        self.seen.push(&self.user_id, event_id, keep);
    }

    /// The compact JSON for the table, byte for byte as the Python engine's `dump` writes it.
    pub fn dump(&self) -> Vec<u8> {
        let mut o = String::with_capacity(256 + 80 * self.ledger.len() + 24 * self.seen.len());
        o.push_str("{\"u\":");
        write_json_str(&self.user_id, &mut o);
        o.push_str(",\"f\":");
        write_json_float(self.first_seen, &mut o);
        o.push_str(",\"c\":");
        write_json_float(self.clock, &mut o);
        o.push_str(",\"s\":\"");
        o.push_str(STATUSES.get(usize::from(self.status)).copied().unwrap_or("active"));
        o.push_str("\",\"l\":");
        write_json_float(self.limit_factor, &mut o);
        o.push_str(",\"q\":");
        write_int(self.seq, &mut o);
        o.push_str(",\"L\":{");
        for (i, (key, inst)) in self.ledger.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            write_json_str(key.as_str(), &mut o);
            o.push_str(":[");
            write_json_float(inst.recorded_at, &mut o);
            o.push(',');
            write_json_float(inst.due, &mut o);
            o.push(',');
            write_json_float(inst.amount_due, &mut o);
            o.push(',');
            write_json_float(inst.amount_paid, &mut o);
            o.push(',');
            write_opt_float(inst.paid_at(), &mut o);
            o.push(']');
        }
        o.push_str("},\"a\":[");
        for (i, t) in self.applications.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            write_json_float(*t, &mut o);
        }
        o.push_str("],\"d\":");
        write_opt_float(self.last_drawdown.get(), &mut o);
        o.push_str(",\"b\":[");
        for (i, (field, value, at)) in self.bureau.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("[\"");
            o.push_str(BUREAU_FIELDS.get(usize::from(field)).copied().unwrap_or(""));
            o.push_str("\",");
            value.write_json(&mut o);
            o.push(',');
            write_json_float(at, &mut o);
            o.push(']');
        }
        o.push_str("],\"S\":[");
        for (i, (t, score)) in self.scores.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push('[');
            write_json_float(*t, &mut o);
            o.push(',');
            write_int(*score, &mut o);
            o.push(']');
        }
        o.push_str("],\"p\":");
        let adverse = self.adverse();
        write_times(&adverse.pending, &mut o);
        o.push_str(",\"W\":");
        write_times(&adverse.announced, &mut o);
        o.push_str(",\"k\":");
        write_opt_float(self.clear_since.get(), &mut o);
        o.push_str(",\"A\":[");
        match &adverse.adverse_id {
            Some(id) => write_json_str(id, &mut o),
            None => o.push_str("null"),
        }
        o.push_str(",[");
        for (i, code) in adverse.adverse_codes.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push('"');
            o.push_str(code);
            o.push('"');
        }
        o.push_str("]],\"D\":");
        write_opt_float(self.deadline, &mut o);
        o.push_str(",\"e\":[");
        let mut whole = String::new();
        for (i, id) in self.seen.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            if id.prefixed {
                whole.clear();
                whole.push_str(&self.user_id);
                whole.push_str(id.rest_str());
                write_json_str(&whole, &mut o);
            } else {
                write_json_str(id.rest_str(), &mut o);
            }
        }
        o.push(']');
        // Only a held state has "H" (a state without a hold is stored as before).
        if let Some(until) = self.hold_until.get() {
            o.push_str(",\"H\":");
            write_json_float(until, &mut o);
        }
        // Only a user whose events named a region has "G".
        if let Some(region) = &self.region {
            o.push_str(",\"G\":");
            write_json_str(region, &mut o);
        }
        o.push('}');
        o.into_bytes()
    }

    /// A stored state (the Python engine's `load`); an error names what is wrong.
    pub fn load(data: &[u8]) -> Result<UserState, String> {
        let d: Stored = serde_json::from_slice(data).map_err(|e| format!("stored state: {e}"))?;
        let status = STATUSES
            .iter()
            .position(|s| *s == d.s)
            .ok_or_else(|| format!("stored state: unknown status {:?}", d.s))?;
        let mut bureau = Bureau::default();
        for (name, value, at) in d.b {
            if let Some(field) = BUREAU_FIELDS.iter().position(|f| *f == name) {
                bureau.set(field as u8, value.0, at);
            }
        }
        let (adverse_id, codes) = d.a_;
        let mut adverse_codes = Vec::with_capacity(codes.len());
        for code in codes {
            let known = ADVERSE_CODES
                .iter()
                .find(|c| **c == code)
                .ok_or_else(|| format!("stored state: unknown reason code {code:?}"))?;
            adverse_codes.push(*known);
        }
        let pending: Vec<(Arc<str>, f64)> =
            d.p.0.into_iter().map(|(k, v)| (Arc::from(k), v)).collect();
        let announced = match d.w {
            Some(w) => w.0.into_iter().map(|(k, v)| (Arc::from(k), v)).collect(),
            // A state stored before "W" existed: its pending notices count as announced.
            None => pending.clone(),
        };
        let user_id = ShortStr::new(&d.u);
        let mut seen = Seen::default();
        for id in &d.e {
            seen.push(&user_id, id, usize::MAX);
        }
        Ok(UserState {
            user_id,
            first_seen: d.f,
            clock: d.c,
            status: status as u8,
            limit_factor: d.l,
            seq: d.q,
            ledger: d
                .l_
                .0
                .into_iter()
                .map(|(k, v)| {
                    let (recorded_at, due, amount_due, amount_paid, paid_at) = v;
                    let inst = Installment::new(recorded_at, due, amount_due, amount_paid, paid_at);
                    (ShortStr::new(&k), inst)
                })
                .collect(),
            applications: d.a,
            last_drawdown: OptTime::new(d.d),
            bureau,
            scores: d.s_,
            clear_since: OptTime::new(d.k),
            hold_until: OptTime::new(d.h),
            region: d.g.as_deref().map(ShortStr::new),
            adverse: {
                let adverse = Adverse { pending, announced, adverse_id, adverse_codes };
                (!adverse.is_empty()).then(|| Box::new(adverse))
            },
            deadline: d.d_,
            seen,
            indexed: None,
        })
    }
}

fn write_opt_float(value: Option<f64>, out: &mut String) {
    match value {
        Some(f) => write_json_float(f, out),
        None => out.push_str("null"),
    }
}

fn write_times(items: &[(Arc<str>, f64)], out: &mut String) {
    out.push('{');
    for (i, (key, t)) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(key, out);
        out.push(':');
        write_json_float(*t, out);
    }
    out.push('}');
}

#[derive(Deserialize)]
struct Stored {
    u: String,
    f: f64,
    c: f64,
    s: String,
    l: f64,
    q: i64,
    #[serde(rename = "L")]
    l_: Ordered<(f64, f64, f64, f64, Option<f64>)>,
    a: Vec<f64>,
    d: Option<f64>,
    b: Vec<(String, StoredNum, f64)>,
    #[serde(rename = "S")]
    s_: Vec<(f64, i64)>,
    p: Ordered<f64>,
    #[serde(rename = "W", default)]
    w: Option<Ordered<f64>>,
    k: Option<f64>,
    #[serde(rename = "A")]
    a_: (Option<String>, Vec<String>),
    #[serde(rename = "D")]
    d_: Option<f64>,
    #[serde(rename = "H", default)]
    h: Option<f64>,
    #[serde(rename = "G", default)]
    g: Option<String>,
    e: Vec<String>,
}

/// A JSON number kept as the int or float it was written as.
struct StoredNum(Num);

impl<'de> Deserialize<'de> for StoredNum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StoredNum;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StoredNum, E> {
                Ok(StoredNum(Num::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StoredNum, E> {
                i64::try_from(v)
                    .map(|i| StoredNum(Num::Int(i)))
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StoredNum, E> {
                Ok(StoredNum(Num::Float(v)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A JSON object read into its pairs in order (a Python dict keeps insertion order);
/// a repeated key keeps its first place and its last value, as `dict` does.
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<T>, A::Error> {
                let mut out: Vec<(String, T)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, T>()? {
                    match out.iter_mut().find(|e| e.0 == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(Ordered(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Ordered<T>, A::Error> {
                Err(de::Error::custom("an object, not a list"))
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keeps_ids_in_every_form() {
        let user = "u7";
        let long = format!("u7{}", "x".repeat(200));
        let ids = ["u7-1", "u7", "x-1", "u", "", "é", long.as_str(), "u7-2", &"y".repeat(130)];
        let mut seen = Seen::default();
        for (n, id) in ids.iter().enumerate() {
            assert!(!seen.contains(user, id), "{id}");
            seen.push(user, id, usize::MAX);
            assert_eq!(seen.len(), n + 1);
            assert!(ids.iter().take(n + 1).all(|i| seen.contains(user, i)));
        }
        assert!(["u7-3", "u7-", "x"].iter().all(|id| !seen.contains(user, id)));
        let mut kept = seen.clone();
        kept.push(user, "z", 4);
        assert_eq!(kept.len(), ids.len());
        assert!(!kept.contains(user, "u7-1"));
        assert!(kept.contains(user, "z") && kept.contains(user, "u7"));
        let mut state = UserState::new(user, 0.0);
        state.seen = seen;
        let again = UserState::load(&state.dump()).expect("loads");
        assert_eq!(again, state);
        assert_eq!(again.dump(), state.dump());
    }

    /// The integers' quick path gives what CPython's steps give, bit for bit (the
    /// sign of a zero too).
    #[test]
    fn floordiv_of_whole_numbers_is_cpythons() {
        let values = [
            0.0, -0.0, 1.0, -1.0, 2.0, 3.0, 86_399.0, 86_400.0, 86_401.0, 172_800.0, 1e15,
            9_007_199_254_740_991.0, 9_007_199_254_740_992.0, 2.5, -7.0, 86_400.5,
            f64::INFINITY, f64::NAN,
        ];
        for a in values.iter().flat_map(|v| [*v, -*v]) {
            for b in values.iter().flat_map(|v| [*v, -*v]) {
                let (quick, general) = (py_floordiv(a, b), floordiv_general(a, b));
                assert!(
                    quick.to_bits() == general.to_bits() || (quick.is_nan() && general.is_nan()),
                    "{a} // {b}: {quick} != {general}"
                );
            }
        }
        assert_eq!(py_int(-2.7), -2);
        assert_eq!(py_int(f64::NAN), 0);
    }

    #[test]
    fn bureau_keeps_first_order_and_last_value() {
        let mut b = Bureau::default();
        b.set(4, Num::Float(2.5), 1.0);
        b.set(0, Num::Int(700), 2.0);
        b.set(4, Num::Int(-3), 3.0);
        b.set(9, Num::Int(1), 3.0);
        assert_eq!(b.get(4), Some((Num::Int(-3), 3.0)));
        assert_eq!(b.get(1), None);
        let all: Vec<_> = b.iter().collect();
        assert_eq!(all, vec![(4, Num::Int(-3), 3.0), (0, Num::Int(700), 2.0)]);
    }
}
