//! Per-user state: what the core remembers about one user, bounded and compact, and
//! its stored form (`dump`/`load`), the same JSON as the Python engine's
//! `streams/state.py`, so that the tables of running workers load unchanged.

use crate::decisions::{Num, STATUSES};
use crate::policy::ADVERSE_CODES;
use crate::pyfmt::{write_json_float, write_json_str};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::fmt::Write;
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

#[derive(Clone, Debug, PartialEq)]
pub struct Installment {
    /// occurred_at of the record that won (latest wins)
    pub recorded_at: f64,
    /// 00:00 UTC of the due date
    pub due: f64,
    pub amount_due: f64,
    pub amount_paid: f64,
    pub paid_at: Option<f64>,
}

/// Python's float floor division (`a // b`), which is not always `(a / b).floor()`.
pub fn py_floordiv(a: f64, b: f64) -> f64 {
    let mut rem = a % b;
    let mut div = (a - rem) / b;
    if rem != 0.0 {
        if (b < 0.0) != (rem < 0.0) {
            rem += b;
            div -= 1.0;
        }
    } else {
        rem = 0.0f64.copysign(b);
    }
    let _ = rem;
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
    x.trunc() as i64
}

impl Installment {
    /// DESIGN.md: 0 if paid by the end of the due date, else whole days to payment or t.
    pub fn days_past_due(&self, t: f64) -> i64 {
        let end = self.paid_at.unwrap_or(t);
        if end < self.due + 86_400.0 {
            return 0;
        }
        py_int(py_floordiv(end - self.due, 86_400.0))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct UserState {
    pub user_id: String,
    pub first_seen: f64,
    /// Event time up to which this user has been evaluated.
    pub clock: f64,
    /// Index into STATUSES (its rank).
    pub status: u8,
    pub limit_factor: f64,
    /// Decisions emitted so far: part of the deterministic decision id.
    pub seq: i64,
    /// "loan#n" -> installment, in insertion order.
    pub ledger: Vec<(String, Installment)>,
    /// Times, sorted.
    pub applications: Vec<f64>,
    pub last_drawdown: Option<f64>,
    /// (field index into BUREAU_FIELDS, value, occurred_at), in insertion order.
    pub bureau: Vec<(u8, Num, f64)>,
    /// Rolling-maximum candidates.
    pub scores: Vec<(f64, i64)>,
    /// Tier key -> condition since, in insertion order.
    pub pending: Vec<(Arc<str>, f64)>,
    /// Notices a warning named: tier key -> the time that notice started.
    pub announced: Vec<(Arc<str>, f64)>,
    /// No adverse condition since (cooling-off).
    pub clear_since: Option<f64>,
    /// The decision that set the status: what a restore supersedes.
    pub adverse_id: Option<String>,
    /// Its reasons and those of warnings since, same status.
    pub adverse_codes: Vec<&'static str>,
    /// Next event time at which the decision may change.
    pub deadline: Option<f64>,
    /// Recent event ids, oldest first.
    pub seen: Seen,
    /// Not stored: the deadline under which the partition's index holds this user.
    pub indexed: Option<f64>,
}

/// The recent event ids of a user, oldest first, packed in one buffer (each id its
/// length in two bytes, then its bytes): one allocation instead of one per id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Seen {
    buf: Vec<u8>,
    len: usize,
}

impl Seen {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> SeenIter<'_> {
        SeenIter { rest: &self.buf }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.iter().any(|s| s == id)
    }

    /// Append an id; the oldest goes when there are then more than `keep` (one only, as
    /// the Python engine does: a state stored under a larger `dedupe_ids` keeps its ids).
    pub fn push(&mut self, id: &str, keep: usize) {
        let bytes = id.as_bytes();
        let n = bytes.len().min(usize::from(u16::MAX));
        self.buf.extend_from_slice(&(n as u16).to_le_bytes());
        self.buf.extend_from_slice(bytes.get(..n).unwrap_or_default());
        self.len += 1;
        if self.len > keep {
            if let Some(&[a, b]) = self.buf.get(..2) {
                let cut = (2 + usize::from(u16::from_le_bytes([a, b]))).min(self.buf.len());
                self.buf.drain(..cut);
                self.len -= 1;
            }
        }
    }
}

pub struct SeenIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SeenIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (head, rest) = self.rest.split_first_chunk::<2>()?;
        let n = usize::from(u16::from_le_bytes(*head));
        let (id, rest) = rest.split_at_checked(n)?;
        self.rest = rest;
        // Only whole `str`s are pushed, so this holds; an empty id otherwise.
        Some(std::str::from_utf8(id).unwrap_or(""))
    }
}

impl UserState {
    pub fn new(user_id: &str, t: f64) -> UserState {
        UserState {
            user_id: user_id.to_owned(),
            first_seen: t,
            clock: t,
            status: 0,
            limit_factor: 1.0,
            seq: 0,
            ledger: Vec::new(),
            applications: Vec::new(),
            last_drawdown: None,
            bureau: Vec::new(),
            scores: Vec::new(),
            pending: Vec::new(),
            announced: Vec::new(),
            clear_since: None,
            adverse_id: None,
            adverse_codes: Vec::new(),
            deadline: None,
            seen: Seen::default(),
            indexed: None,
        }
    }

    pub fn bureau_value(&self, field: u8) -> Option<Num> {
        self.bureau.iter().find(|b| b.0 == field).map(|b| b.1)
    }

    pub fn bureau_at(&self, field: u8) -> Option<f64> {
        self.bureau.iter().find(|b| b.0 == field).map(|b| b.2)
    }

    pub fn has_seen(&self, event_id: &str) -> bool {
        self.seen.contains(event_id)
    }

    /// The compact JSON for the table, byte for byte as `streams.state.dump` writes it.
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
        let _ = write!(o, ",\"q\":{},\"L\":{{", self.seq);
        for (i, (key, inst)) in self.ledger.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            write_json_str(key, &mut o);
            o.push_str(":[");
            write_json_float(inst.recorded_at, &mut o);
            o.push(',');
            write_json_float(inst.due, &mut o);
            o.push(',');
            write_json_float(inst.amount_due, &mut o);
            o.push(',');
            write_json_float(inst.amount_paid, &mut o);
            o.push(',');
            write_opt_float(inst.paid_at, &mut o);
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
        write_opt_float(self.last_drawdown, &mut o);
        o.push_str(",\"b\":[");
        for (i, (field, value, at)) in self.bureau.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("[\"");
            o.push_str(BUREAU_FIELDS.get(usize::from(*field)).copied().unwrap_or(""));
            o.push_str("\",");
            value.write_json(&mut o);
            o.push(',');
            write_json_float(*at, &mut o);
            o.push(']');
        }
        o.push_str("],\"S\":[");
        for (i, (t, score)) in self.scores.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push('[');
            write_json_float(*t, &mut o);
            let _ = write!(o, ",{score}]");
        }
        o.push_str("],\"p\":");
        write_times(&self.pending, &mut o);
        o.push_str(",\"W\":");
        write_times(&self.announced, &mut o);
        o.push_str(",\"k\":");
        write_opt_float(self.clear_since, &mut o);
        o.push_str(",\"A\":[");
        match &self.adverse_id {
            Some(id) => write_json_str(id, &mut o),
            None => o.push_str("null"),
        }
        o.push_str(",[");
        for (i, code) in self.adverse_codes.iter().enumerate() {
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
        for (i, id) in self.seen.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            write_json_str(id, &mut o);
        }
        o.push_str("]}");
        o.into_bytes()
    }

    /// A stored state (`streams.state.load`); an error names what is wrong.
    pub fn load(data: &[u8]) -> Result<UserState, String> {
        let d: Stored = serde_json::from_slice(data).map_err(|e| format!("stored state: {e}"))?;
        let status = STATUSES
            .iter()
            .position(|s| *s == d.s)
            .ok_or_else(|| format!("stored state: unknown status {:?}", d.s))?;
        let mut bureau: Vec<(u8, Num, f64)> = Vec::new();
        for (name, value, at) in d.b {
            if let Some(field) = BUREAU_FIELDS.iter().position(|f| *f == name) {
                let field = field as u8;
                match bureau.iter_mut().find(|b| b.0 == field) {
                    Some(slot) => {
                        slot.1 = value.0;
                        slot.2 = at;
                    }
                    None => bureau.push((field, value.0, at)),
                }
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
        Ok(UserState {
            user_id: d.u,
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
                    (k, Installment { recorded_at, due, amount_due, amount_paid, paid_at })
                })
                .collect(),
            applications: d.a,
            last_drawdown: d.d,
            bureau,
            scores: d.s_,
            pending,
            announced,
            clear_since: d.k,
            adverse_id,
            adverse_codes,
            deadline: d.d_,
            seen: {
                let mut seen = Seen::default();
                for id in &d.e {
                    seen.push(id, usize::MAX);
                }
                seen
            },
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
