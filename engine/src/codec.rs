//! Bytes in, typed events out: the port of `streams/codec.py`.
//!
//! `decode` gives what Python's `decode` gives, verdict for verdict and message
//! for message: the size limit, then the JSON as `orjson.loads` (3.13) reads it
//! (UTF-8 checked first, over the whole record; 1024 levels of nesting at most;
//! numbers beyond the i64/u64 range read as floats, an infinite one refused;
//! duplicate keys: the last wins), then `_decode_checked` and its builders, every
//! check in Python's order with Python's detail text. Only `not_json` details
//! may differ: they name the fault as orjson's messages do, in its words for a
//! record cut short, in their own for a wrong byte inside one. Python's msgspec
//! fast path is a speed-up of those checks and is not reproduced as such.
//!
//! The JSON is read by a parser written for the purpose: one pass over the bytes,
//! strings borrowed unless they hold escapes, the fields the checks need kept by
//! name, everything else validated and skipped without recursion.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;

use crate::state::ShortStr;
use crate::events::{
    Application, CreditReport, Event, Override, Repayment, APPLICATION_KINDS, EVENT_TYPES,
    OVERRIDE_ACTIONS, PRODUCTS,
};
use crate::pyfmt::py_repr;

pub const MAX_RECORD_BYTES: usize = 64 * 1024;
pub const MAX_AMOUNT: f64 = 1e12;
/// `f"{MAX_AMOUNT:g}"`.
const MAX_AMOUNT_G: &str = "1e+12";
pub const REJECT_REASONS: [&str; 10] = [
    "not_utf8",
    "not_json",
    "oversize",
    "not_object",
    "unknown_type",
    "unsupported_version",
    "schema",
    "key_mismatch",
    "unknown_user",
    "policy_refused",
];
/// orjson's limit: 1024 nested arrays or objects are read, 1025 are not.
const MAX_DEPTH: usize = 1024;
const NOT_DATE_TIME: &str = "not an RFC 3339 date-time with offset";
const NOT_DATE: &str = "not a YYYY-MM-DD date";

/// Why a record is not a valid v1 event: `reason` is one of `REJECT_REASONS`,
/// `event_type` one of `EVENT_TYPES` when the record names a known one.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: String,
    pub event_type: Option<&'static str>,
}

impl Rejection {
    fn new(reason: &'static str, detail: String) -> Rejection {
        Rejection {
            reason,
            detail,
            event_type: None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// One record's bytes to an event, or the reason it is not a valid v1 event.
///
/// Python tries msgspec first (on records with no field the schema does not name)
/// and falls back to orjson and the full checks when msgspec refuses a record;
/// both accept the same records with the same values, and this is the full checks.
pub fn decode(raw: &[u8]) -> Result<Event, Rejection> {
    if raw.len() > MAX_RECORD_BYTES {
        return Err(Rejection::new(
            "oversize",
            format!("record of {} bytes (limit {MAX_RECORD_BYTES})", raw.len()),
        ));
    }
    // simdutf8: the same check as `std::str::from_utf8`, many bytes at a time.
    let Ok(text) = simdutf8::basic::from_utf8(raw) else {
        return Err(Rejection::new(
            "not_utf8",
            "record is not valid UTF-8".to_owned(),
        ));
    };
    // What `simple_record` reads is borrowed or scalar: nothing in its record to free,
    // so the record is not dropped (its 23 fields would each be looked at).
    let mut simple = std::mem::ManuallyDrop::new(Record::new());
    if simple_record(text, &mut simple).is_some() {
        return checked(&simple, raw);
    }
    let mut record = Record::new();
    match Parser::new(text).document(&mut record) {
        Ok(None) => checked(&record, raw),
        Ok(Some(type_name)) => Err(Rejection::new(
            "not_object",
            format!("a JSON {type_name} is not an event object"),
        )),
        Err(error) => Err(Rejection::new("not_json", error.describe(text))),
    }
}

// --- JSON ---------------------------------------------------------------------------------

/// The usual record read in one quick pass: an object whose values are strings with no
/// escape, numbers, true, false or null. Its fields are those `Parser::document` would
/// give; None for any other record (another value, any fault), which the full parser
/// then reads, faults and all.
fn simple_record<'a>(text: &'a str, record: &mut Record<'a>) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let (key, after) = plain_string(text, i + 1)?;
            i = skip_ws(b, after);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            // The value is read into its field's slot (a field not kept, into a spare).
            let mut spare = None;
            let slot = field_of(key).and_then(|f| record.fields.get_mut(f)).unwrap_or(&mut spare);
            i = skip_ws(b, simple_value(text, i, slot)?);
            match b.get(i) {
                Some(b',') => i = skip_ws(b, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (skip_ws(b, i) == b.len()).then_some(())
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// A string from just after its opening quote, if it has no escape or control
/// character: the string and the offset after its closing quote.
fn plain_string(text: &str, start: usize) -> Option<(&str, usize)> {
    let end = start + special_at(text.as_bytes().get(start..)?);
    match text.as_bytes().get(end) {
        // `end` is at an ASCII byte: a char boundary.
        Some(b'"') => Some((text.get(start..end)?, end + 1)),
        _ => None,
    }
}

/// A scalar value at `i` (not a container, not a string with an escape), as
/// `Parser::value` reads it, put in `slot`: the offset after it.
fn simple_value<'a>(text: &'a str, i: usize, slot: &mut Option<Json<'a>>) -> Option<usize> {
    let b = text.as_bytes();
    let (value, end) = match b.get(i)? {
        b'"' => plain_string(text, i + 1).map(|(s, end)| (Json::Str(Cow::Borrowed(s)), end))?,
        b'-' | b'0'..=b'9' => simple_number(text, i)?,
        b't' if b.get(i..i + 4) == Some(b"true") => (Json::Bool(true), i + 4),
        b'f' if b.get(i..i + 5) == Some(b"false") => (Json::Bool(false), i + 5),
        b'n' if b.get(i..i + 4) == Some(b"null") => (Json::Null, i + 4),
        _ => return None,
    };
    *slot = Some(value);
    Some(end)
}

/// 10^0 ..= 10^22, every one exact in a double.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A number at `i`, as `Parser::number` reads it, when it is well formed and its
/// integer has at most 18 digits (None otherwise). A float of at most 15 significant
/// digits and a power of ten within 10^±22 is m * 10^e or m / 10^-e, one IEEE operation
/// on two exact values, hence correctly rounded (Clinger's fast path); any other is
/// parsed as `Parser::number` does.
fn simple_number(text: &str, start: usize) -> Option<(Json<'_>, usize)> {
    let b = text.as_bytes();
    let mut i = start;
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_start = i;
    let mut mantissa: u64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        i += 1;
    }
    let int_digits = i - int_start;
    if int_digits == 0 || int_digits > 18 || (int_digits > 1 && b.get(int_start) == Some(&b'0')) {
        return None;
    }
    let mut digits = int_digits; // significant digits in `mantissa`, leading zeros too
    let mut exponent: i64 = 0;
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if digits < 19 {
                mantissa = mantissa * 10 + u64::from(d - b'0');
                exponent -= 1;
            }
            digits += 1;
            i += 1;
        }
        if i == frac_start {
            return None;
        }
        integer = false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let sign = match b.get(i) {
            Some(b'-') => {
                i += 1;
                -1
            }
            Some(b'+') => {
                i += 1;
                1
            }
            _ => 1,
        };
        let exp_start = i;
        let mut e: i64 = 0;
        while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            e = (e * 10 + i64::from(d - b'0')).min(1 << 40);
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        exponent += sign * e;
        integer = false;
    }
    if integer {
        let m = i128::from(mantissa);
        return Some((Json::Int(if negative { -m } else { m }), i));
    }
    let sign = if negative { -1.0 } else { 1.0 };
    let exact = digits <= 15 && mantissa < 1 << 53;
    let x = match POW10.get(exponent.unsigned_abs() as usize) {
        Some(&p) if exact && exponent >= 0 => sign * (mantissa as f64 * p),
        Some(&p) if exact => sign * (mantissa as f64 / p),
        _ => text.get(start..i)?.parse::<f64>().ok()?,
    };
    if !x.is_finite() {
        return None;
    }
    Some((Json::Float(x), i))
}

/// The field a key names (`field_index` on bytes): a hash of its first, third and last
/// bytes, unique over FIELD_NAMES (`slot`), then the name compared.
fn field_of(key: &str) -> Option<usize> {
    let b = key.as_bytes();
    let (first, third, last) = (*b.first()?, *b.get(2)?, *b.last()?);
    let field = usize::from(*FIELD_BY_HASH.get(slot(first, third, last))?);
    let name = FIELD_NAMES.get(field)?.as_bytes();
    if name.len() != b.len() {
        return None;
    }
    // The first and the last 8 bytes (names of 8 to 16 bytes, most of them) or 4 bytes
    // (4 to 7 bytes), as two words each: the same length, so the whole name.
    let same = match b.len() {
        8..=16 => same_ends::<8>(name, b),
        4..=7 => same_ends::<4>(name, b),
        _ => name == b,
    };
    same.then_some(field)
}

/// Whether two byte strings (of one length, at least N) have the same first and last N
/// bytes.
fn same_ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
    a.first_chunk::<N>() == b.first_chunk::<N>() && a.last_chunk::<N>() == b.last_chunk::<N>()
}

/// A field name's slot in FIELD_BY_HASH, from its first, third and last bytes (the
/// factors found by search: no two names share a slot).
const fn slot(first: u8, third: u8, last: u8) -> usize {
    (first as usize + 3 * third as usize + 8 * last as usize) % 64
}

/// FIELD_NAMES by the hash of `field_of` (N_FIELDS where none).
const FIELD_BY_HASH: [u8; 64] = {
    let mut table = [N_FIELDS as u8; 64];
    let mut i = 0;
    while i < N_FIELDS {
        let b = FIELD_NAMES[i].as_bytes();
        let slot = slot(b[0], b[2], b[b.len() - 1]);
        assert!(table[slot] == N_FIELDS as u8, "two field names share a slot");
        table[slot] = i as u8;
        i += 1;
    }
    table
};

/// A JSON value as orjson gives it to Python.
#[derive(Debug)]
enum Json<'a> {
    Null,
    Bool(bool),
    /// -2**63 ..= 2**64 - 1; other integers are floats.
    Int(i128),
    /// Always finite.
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Json<'a>>),
    /// In the order of each key's first occurrence, with its last value (a `dict`).
    Dict(Vec<(Cow<'a, str>, Json<'a>)>),
    /// An array or object read and checked, but not kept: only its being one counts.
    Container,
}

struct JsonError {
    message: &'static str,
    /// Byte offset.
    pos: usize,
}

impl JsonError {
    /// `message: line L column C (char P)`, as Python's JSONDecodeError words it,
    /// at most 200 characters.
    fn describe(&self, text: &str) -> String {
        let mut at = self.pos.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let before = text.get(..at).unwrap_or("");
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        let detail = format!(
            "{}: line {line} column {column} (char {})",
            self.message,
            before.chars().count()
        );
        detail.chars().take(200).collect()
    }
}

type Parsed<T> = Result<T, JsonError>;

const N_FIELDS: usize = 28;
const FIELD_NAMES: [&str; N_FIELDS] = [
    "event_type",
    "schema_version",
    "event_id",
    "user_id",
    "occurred_at",
    "loan_id",
    "installment",
    "product",
    "due_date",
    "amount_due",
    "amount_paid",
    "paid_at",
    "application_id",
    "kind",
    "requested_amount",
    "channel",
    "bureau",
    "credit_score",
    "open_lenders",
    "hard_inquiries_30d",
    "delinquent_accounts",
    "total_debt",
    "monthly_income",
    "action",
    "operator",
    "reason",
    "until",
    "region",
];
const EVENT_TYPE: usize = 0;
const SCHEMA_VERSION: usize = 1;
const EVENT_ID: usize = 2;
const USER_ID: usize = 3;
const OCCURRED_AT: usize = 4;
const LOAN_ID: usize = 5;
const INSTALLMENT: usize = 6;
const PRODUCT: usize = 7;
const DUE_DATE: usize = 8;
const AMOUNT_DUE: usize = 9;
const AMOUNT_PAID: usize = 10;
const PAID_AT: usize = 11;
const APPLICATION_ID: usize = 12;
const KIND: usize = 13;
const REQUESTED_AMOUNT: usize = 14;
const CHANNEL: usize = 15;
const BUREAU: usize = 16;
const CREDIT_SCORE: usize = 17;
const OPEN_LENDERS: usize = 18;
const HARD_INQUIRIES_30D: usize = 19;
const DELINQUENT_ACCOUNTS: usize = 20;
const TOTAL_DEBT: usize = 21;
const MONTHLY_INCOME: usize = 22;
const ACTION: usize = 23;
const OPERATOR: usize = 24;
const REASON: usize = 25;
const UNTIL: usize = 26;
const REGION: usize = 27;

fn field_index(key: &str) -> Option<usize> {
    Some(match key {
        "event_type" => EVENT_TYPE,
        "schema_version" => SCHEMA_VERSION,
        "event_id" => EVENT_ID,
        "user_id" => USER_ID,
        "occurred_at" => OCCURRED_AT,
        "loan_id" => LOAN_ID,
        "installment" => INSTALLMENT,
        "product" => PRODUCT,
        "due_date" => DUE_DATE,
        "amount_due" => AMOUNT_DUE,
        "amount_paid" => AMOUNT_PAID,
        "paid_at" => PAID_AT,
        "application_id" => APPLICATION_ID,
        "kind" => KIND,
        "requested_amount" => REQUESTED_AMOUNT,
        "channel" => CHANNEL,
        "bureau" => BUREAU,
        "credit_score" => CREDIT_SCORE,
        "open_lenders" => OPEN_LENDERS,
        "hard_inquiries_30d" => HARD_INQUIRIES_30D,
        "delinquent_accounts" => DELINQUENT_ACCOUNTS,
        "total_debt" => TOTAL_DEBT,
        "monthly_income" => MONTHLY_INCOME,
        "action" => ACTION,
        "operator" => OPERATOR,
        "reason" => REASON,
        "until" => UNTIL,
        "region" => REGION,
        _ => return None,
    })
}

/// The top-level object's fields that any check reads (the rest are only
/// validated as JSON); absent is `None`, as `name in obj` is false in Python.
struct Record<'a> {
    fields: [Option<Json<'a>>; N_FIELDS],
}

impl<'a> Record<'a> {
    fn new() -> Record<'a> {
        // Made a field at a time, each None is its tag alone (23 stores); the array
        // written as one constant was copied whole, 736 bytes, for every record.
        Record {
            fields: std::array::from_fn(|_| None),
        }
    }

    /// `obj.get(name)`, telling an absent field (`None`) from a null one.
    fn get(&self, field: usize) -> Option<&Json<'a>> {
        self.fields.get(field).and_then(Option::as_ref)
    }

    fn has(&self, field: usize) -> bool {
        self.get(field).is_some()
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn fail<T>(&self, message: &'static str) -> Parsed<T> {
        Err(JsonError {
            message,
            pos: self.pos,
        })
    }

    fn eof_or<T>(&self, message: &'static str) -> Parsed<T> {
        self.fail(if self.pos >= self.bytes.len() {
            "unexpected end of data"
        } else {
            message
        })
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// `text[start..end]`; both are offsets of ASCII bytes or the end.
    fn slice(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or("")
    }

    /// The whole document: `None` for an object (its fields in `record`), else the
    /// Python type name of what it is.
    fn document(&mut self, record: &mut Record<'a>) -> Parsed<Option<&'static str>> {
        if self.bytes.is_empty() {
            return self.fail("Input is a zero-length, empty document");
        }
        if self.bytes.starts_with(b"\xEF\xBB\xBF") {
            return self.fail("UTF-8 byte order mark (BOM) is not supported");
        }
        self.skip_ws();
        let top = match self.peek() {
            None => return self.fail("input data is empty"),
            Some(b'{') => {
                self.record(record)?;
                None
            }
            Some(_) => Some(match self.value(0, false)? {
                Json::Null => "NoneType",
                Json::Bool(_) => "bool",
                Json::Int(_) => "int",
                Json::Float(_) => "float",
                Json::Str(_) => "str",
                Json::List(_) | Json::Dict(_) | Json::Container => "list",
            }),
        };
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return self.fail("unexpected content after document");
        }
        Ok(top)
    }

    /// The top-level object, at its `{`.
    fn record(&mut self, record: &mut Record<'a>) -> Parsed<()> {
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.key()?;
            match field_index(&key) {
                Some(field) => {
                    // event_type and schema_version may be shown whole in a detail.
                    let value = self.value(1, field <= SCHEMA_VERSION)?;
                    if let Some(slot) = record.fields.get_mut(field) {
                        *slot = Some(value);
                    }
                }
                None => {
                    self.value(1, false)?;
                }
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        return self.fail("trailing comma is not allowed");
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return self.eof_or("expected ',' or '}' after object value"),
            }
        }
    }

    /// An object's key, its colon and the whitespace around them.
    fn key(&mut self) -> Parsed<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return self.eof_or("key must be a string");
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return self.eof_or("expected ':' after object key");
        }
        self.pos += 1;
        self.skip_ws();
        Ok(key)
    }

    /// A value at its first byte, inside `depth` containers; arrays and objects
    /// are kept whole if `build`, else checked and skipped (`Json::Container`).
    fn value(&mut self, depth: usize, build: bool) -> Parsed<Json<'a>> {
        match self.peek() {
            Some(b'{' | b'[') => {
                if depth >= MAX_DEPTH {
                    return self.fail("depth limit exceeded");
                }
                if build {
                    self.build(depth + 1)
                } else {
                    self.skip_container(depth + 1).map(|()| Json::Container)
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            None => self.fail("unexpected end of data"),
            Some(_) => self.fail("unexpected character, expected a JSON value"),
        }
    }

    fn literal(&mut self, word: &'static [u8], value: Json<'a>) -> Parsed<Json<'a>> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            self.fail("invalid literal")
        }
    }

    /// An array or object kept whole, at its bracket; `depth` is its own (<= 1024).
    fn build(&mut self, depth: usize) -> Parsed<Json<'a>> {
        let object = self.peek() == Some(b'{');
        let close = if object { b'}' } else { b']' };
        self.pos += 1;
        self.skip_ws();
        let mut items = Vec::new();
        let mut entries: Vec<(Cow<'a, str>, Json<'a>)> = Vec::new();
        let mut index: HashMap<Cow<'a, str>, usize> = HashMap::new();
        if self.peek() != Some(close) {
            loop {
                if object {
                    let key = self.key()?;
                    let value = self.value(depth, true)?;
                    match index.get(&key) {
                        Some(&at) => {
                            if let Some(entry) = entries.get_mut(at) {
                                entry.1 = value;
                            }
                        }
                        None => {
                            index.insert(key.clone(), entries.len());
                            entries.push((key, value));
                        }
                    }
                } else {
                    items.push(self.value(depth, true)?);
                }
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                        if matches!(self.peek(), Some(b'}' | b']')) {
                            return self.fail("trailing comma is not allowed");
                        }
                    }
                    Some(c) if c == close => break,
                    _ => return self.eof_or("expected ',' or a closing bracket"),
                }
            }
        }
        self.pos += 1;
        Ok(if object {
            Json::Dict(entries)
        } else {
            Json::List(items)
        })
    }

    /// An array or object checked and skipped, at its bracket; `depth` is its own
    /// (<= 1024). A loop over an explicit stack, not a recursion.
    fn skip_container(&mut self, depth: usize) -> Parsed<()> {
        // Bit i: the container open at level i is an object.
        let mut objects = [0u64; MAX_DEPTH / 64 + 1];
        let mut level = 0usize; // containers open
        let mut opening = true; // at an opening bracket; else after a value
        loop {
            if opening {
                let object = self.peek() == Some(b'{');
                if depth + level > MAX_DEPTH {
                    return self.fail("depth limit exceeded");
                }
                if let Some(word) = objects.get_mut(level / 64) {
                    let bit = 1u64 << (level % 64);
                    if object {
                        *word |= bit;
                    } else {
                        *word &= !bit;
                    }
                }
                level += 1;
                self.pos += 1;
                self.skip_ws();
                if self.peek() == Some(if object { b'}' } else { b']' }) {
                    self.pos += 1;
                    level -= 1;
                    if level == 0 {
                        return Ok(());
                    }
                    opening = false;
                } else {
                    if object {
                        self.key()?;
                    }
                    if matches!(self.peek(), Some(b'{' | b'[')) {
                        continue;
                    }
                    self.value(0, false)?;
                    opening = false;
                }
            }
            // After a value in the container at level - 1.
            self.skip_ws();
            let object = level
                .checked_sub(1)
                .and_then(|top| {
                    objects
                        .get(top / 64)
                        .map(|word| (word >> (top % 64)) & 1 == 1)
                })
                .unwrap_or(false);
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if matches!(self.peek(), Some(b'}' | b']')) {
                        return self.fail("trailing comma is not allowed");
                    }
                    if object {
                        self.key()?;
                    }
                    if matches!(self.peek(), Some(b'{' | b'[')) {
                        opening = true;
                    } else {
                        self.value(0, false)?;
                    }
                }
                Some(c) if c == if object { b'}' } else { b']' } => {
                    self.pos += 1;
                    level -= 1;
                    if level == 0 {
                        return Ok(());
                    }
                }
                _ => return self.eof_or("expected ',' or a closing bracket"),
            }
        }
    }

    /// A string at its opening quote, escapes decoded; borrowed when it has none.
    fn string(&mut self) -> Parsed<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        self.pos += special_at(self.bytes.get(start..).unwrap_or(b""));
        match self.peek() {
            Some(b'"') => {
                let s = self.slice(start, self.pos);
                self.pos += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            Some(_) => return self.fail("unexpected control character in string"),
            None => return self.fail("unexpected end of data"),
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(self.slice(start, self.pos));
        loop {
            let run = self.pos;
            self.pos += special_at(self.bytes.get(run..).unwrap_or(b""));
            out.push_str(self.slice(run, self.pos));
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => out.push(self.escape()?),
                Some(_) => return self.fail("unexpected control character in string"),
                None => return self.fail("unexpected end of data"),
            }
        }
    }

    /// An escape at its backslash; a surrogate pair is one character, a lone
    /// surrogate an error.
    fn escape(&mut self) -> Parsed<char> {
        let at = self.pos;
        let invalid = |message| Err(JsonError { message, pos: at });
        self.pos += 1;
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let high = self.hex4(at)?;
                let code = match high {
                    0xDC00..=0xDFFF => return invalid("invalid high surrogate in string"),
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return invalid("no low surrogate in string");
                        }
                        self.pos += 2;
                        let low = self.hex4(at)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return invalid("invalid low surrogate in string");
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    _ => high,
                };
                return char::from_u32(code).map_or_else(|| invalid("invalid escape"), Ok);
            }
            None => return self.fail("unexpected end of data"),
            Some(_) => return invalid("invalid escaped sequence in string"),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self, at: usize) -> Parsed<u32> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => {
                    return Err(JsonError {
                        message: "invalid escaped sequence in string",
                        pos: at,
                    })
                }
            };
            code = code * 16 + u32::from(digit);
            self.pos += 1;
        }
        Ok(code)
    }

    /// A number at its first byte: an integer within -2**63 ..= 2**64 - 1 is an
    /// `Int`, anything else a float (correctly rounded), an infinite one an error.
    fn number(&mut self) -> Parsed<Json<'a>> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return self.fail("number with leading zero is not allowed");
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.fail("no digit after sign"),
        }
        let int_end = self.pos;
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("no digit after decimal point");
            }
            self.digits();
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.fail("no digit after exponent sign");
            }
            self.digits();
            integer = false;
        }
        if integer && int_end - int_start <= 20 {
            let magnitude = self
                .bytes
                .get(int_start..int_end)
                .unwrap_or(b"")
                .iter()
                .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
            if negative && magnitude <= 1 << 63 {
                return Ok(Json::Int(-(magnitude as i128)));
            }
            if !negative && magnitude <= u128::from(u64::MAX) {
                return Ok(Json::Int(magnitude as i128));
            }
        }
        match self.slice(start, self.pos).parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Json::Float(x)),
            _ => Err(JsonError {
                message: "number is infinity when parsed as double",
                pos: start,
            }),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

/// The offset in `bytes` of the first `"`, backslash or control character (the
/// bytes a string's scan stops at), or its length: eight bytes at a time.
fn special_at(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let is_special = |c: &u8| *c == b'"' || *c == b'\\' || *c < 0x20;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // A byte's high bit is set where it is zero after the xor (or below 0x20):
        // exact for the lowest such byte, which is all that is used.
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGHS;
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = chunks.remainder();
    at + rest.iter().position(is_special).unwrap_or(rest.len())
}

// --- the checks (`_decode_checked` and the builders) ------------------------------------

/// `_decode_checked`: every check in turn, naming the first that fails.
fn checked(record: &Record<'_>, raw: &[u8]) -> Result<Event, Rejection> {
    let kind = match record.get(EVENT_TYPE) {
        Some(Json::Str(s)) => EVENT_TYPES.iter().copied().find(|&t| t == s.as_ref()),
        _ => None,
    };
    let Some(kind) = kind else {
        let mut shown = String::new();
        match record.get(EVENT_TYPE) {
            Some(value) => push_repr(value, &mut shown),
            None => shown.push_str("None"),
        }
        let shown: String = shown.chars().take(60).collect();
        return Err(Rejection::new(
            "unknown_type",
            format!(
                "event_type {shown} is not one of {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    };
    if let Some(version) = record.get(SCHEMA_VERSION) {
        // `version != 1 or isinstance(version, bool)`: 1 and 1.0 pass, True does not.
        let one = match *version {
            Json::Int(i) => i == 1,
            Json::Float(x) => x == 1.0,
            _ => false,
        };
        if !one {
            let mut shown = String::new();
            push_repr(version, &mut shown);
            return Err(Rejection {
                reason: "unsupported_version",
                detail: format!("schema_version {shown}: only 1 is known"),
                event_type: Some(kind),
            });
        }
    }
    let built = match kind {
        "repayment" => repayment(record).map(Event::Repayment),
        "application" => application(record).map(Event::Application),
        "credit_report" => credit_report(record).map(Event::CreditReport),
        _ => override_event(record, raw).map(|o| Event::Override(Box::new(o))),
    };
    built.map_err(|detail| Rejection {
        reason: "schema",
        detail,
        event_type: Some(kind),
    })
}

/// A check's failure: the detail, `"name: what"`.
type Checked<T> = Result<T, String>;

fn name(field: usize) -> &'static str {
    FIELD_NAMES.get(field).copied().unwrap_or("?")
}

/// `_text`: a string of 1..=limit characters.
fn text<'r>(record: &'r Record<'_>, field: usize, limit: usize) -> Checked<&'r str> {
    let name = name(field);
    match record.get(field) {
        Some(Json::Str(s)) => {
            // Between 1 and `limit` bytes: as many characters at most, one at least.
            if (1..=limit).contains(&s.len()) {
                return Ok(s);
            }
            let length = s.chars().count();
            if (1..=limit).contains(&length) {
                Ok(s)
            } else {
                Err(format!("{name}: length {length} outside 1..{limit}"))
            }
        }
        None | Some(Json::Null) => Err(format!("{name}: required string")),
        Some(_) => Err(format!("{name}: not a string")),
    }
}

/// `_time_value`: an RFC 3339 date-time with an offset, as an epoch second.
fn time_value(value: Option<&Json<'_>>, name: &str) -> Checked<f64> {
    match value {
        Some(Json::Str(s)) => parse_time(s).map_err(|e| format!("{name}: {e}")),
        _ => Err(format!("{name}: {NOT_DATE_TIME}")),
    }
}

/// `_date`: a YYYY-MM-DD date as the epoch second of its 00:00 UTC.
fn date(record: &Record<'_>, field: usize) -> Checked<f64> {
    let name = name(field);
    match record.get(field) {
        Some(Json::Str(s)) => parse_date(s).map_err(|e| format!("{name}: {e}")),
        _ => Err(format!("{name}: required YYYY-MM-DD date")),
    }
}

/// `_number`: a number in 0..=1e12 (> 0 if `positive`), as a float.
fn number(record: &Record<'_>, field: usize, positive: bool) -> Checked<f64> {
    let name = name(field);
    let must = || format!("{name}: must be {}", if positive { "> 0" } else { ">= 0" });
    let x = match record.get(field) {
        Some(&Json::Int(i)) => {
            // Python compares an int with MAX_AMOUNT exactly.
            if i > 1_000_000_000_000 {
                return Err(format!("{name}: {i} over {MAX_AMOUNT_G}"));
            }
            if i < 0 || (positive && i == 0) {
                return Err(must());
            }
            return Ok(i as f64);
        }
        Some(&Json::Float(x)) => x,
        None | Some(Json::Null) => return Err(format!("{name}: required number")),
        Some(_) => return Err(format!("{name}: not a number")),
    };
    if !x.is_finite() || x > MAX_AMOUNT {
        return Err(format!("{name}: {} over {MAX_AMOUNT_G}", py_repr(x)));
    }
    if x < 0.0 || (positive && x == 0.0) {
        return Err(must());
    }
    Ok(x)
}

/// `_integer`: an integer (3.0 counts) in low..=high; `None` when absent.
fn integer(record: &Record<'_>, field: usize, low: i64, high: i64) -> Checked<Option<i64>> {
    let name = name(field);
    match record.get(field) {
        None => Ok(None),
        Some(&Json::Int(i)) => {
            if (i128::from(low)..=i128::from(high)).contains(&i) {
                Ok(i64::try_from(i).ok())
            } else {
                Err(format!("{name}: {i} outside {low}..{high}"))
            }
        }
        Some(&Json::Float(x)) if x.is_finite() && x.fract() == 0.0 => {
            if x >= low as f64 && x <= high as f64 {
                Ok(Some(x as i64))
            } else {
                // int(x): every digit of the exact value (and 0, never -0).
                let shown = if x == 0.0 {
                    "0".to_owned()
                } else {
                    format!("{x:.0}")
                };
                Err(format!("{name}: {shown} outside {low}..{high}"))
            }
        }
        Some(_) => Err(format!("{name}: not an integer")),
    }
}

/// `_choice`: one of `options`.
fn choice(record: &Record<'_>, field: usize, options: &[&'static str]) -> Checked<&'static str> {
    if let Some(Json::Str(s)) = record.get(field) {
        if let Some(&option) = options.iter().find(|&&o| o == s.as_ref()) {
            return Ok(option);
        }
    }
    Err(format!(
        "{}: must be one of {}",
        name(field),
        options.join(", ")
    ))
}

/// `_optional_number`: `_number` when present, even as null.
fn optional_number(record: &Record<'_>, field: usize) -> Checked<Option<f64>> {
    if record.has(field) {
        number(record, field, false).map(Some)
    } else {
        Ok(None)
    }
}

/// `_optional_text`: absent or null, or a string of 1..=limit characters.
fn optional_text(record: &Record<'_>, field: usize, limit: usize) -> Checked<Option<Box<ShortStr>>> {
    match record.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(_) => text(record, field, limit).map(|s| Some(Box::new(ShortStr::new(s)))),
    }
}

/// `_common`: (event_id, user_id, occurred_at), the time checked first.
fn common(record: &Record<'_>) -> Checked<(ShortStr, ShortStr, f64)> {
    let at = time_value(record.get(OCCURRED_AT), "occurred_at")?;
    let event_id = ShortStr::new(text(record, EVENT_ID, 128)?);
    let user_id = ShortStr::new(text(record, USER_ID, 64)?);
    Ok((event_id, user_id, at))
}

fn repayment(record: &Record<'_>) -> Checked<Repayment> {
    let (event_id, user_id, occurred_at) = common(record)?;
    if !record.has(PAID_AT) {
        return Err("paid_at: required (RFC 3339 date-time or null)".to_owned());
    }
    let installment = integer(record, INSTALLMENT, 1, 10_000)?
        .ok_or_else(|| "installment: required integer".to_owned())?;
    let loan_id = ShortStr::new(text(record, LOAN_ID, 128)?);
    let product = choice(record, PRODUCT, &PRODUCTS)?;
    let due_date = date(record, DUE_DATE)?;
    let amount_due = number(record, AMOUNT_DUE, false)?;
    let amount_paid = number(record, AMOUNT_PAID, false)?;
    let paid_at = match record.get(PAID_AT) {
        Some(Json::Null) => None,
        value => Some(time_value(value, "paid_at")?),
    };
    let region = optional_text(record, REGION, 64)?;
    Ok(Repayment {
        region,
        event_id,
        user_id,
        occurred_at,
        loan_id,
        installment,
        product,
        due_date,
        amount_due,
        amount_paid,
        paid_at,
    })
}

fn application(record: &Record<'_>) -> Checked<Application> {
    let (event_id, user_id, occurred_at) = common(record)?;
    let channel = match record.get(CHANNEL) {
        None | Some(Json::Null) => None,
        Some(Json::Str(s)) if s.chars().count() <= 64 => Some(ShortStr::new(s)),
        Some(_) => return Err("channel: must be a string of at most 64 characters".to_owned()),
    };
    let application_id = ShortStr::new(text(record, APPLICATION_ID, 128)?);
    let product = choice(record, PRODUCT, &PRODUCTS)?;
    let kind = choice(record, KIND, &APPLICATION_KINDS)?;
    let requested_amount = number(record, REQUESTED_AMOUNT, true)?;
    let region = optional_text(record, REGION, 64)?;
    Ok(Application {
        region,
        event_id,
        user_id,
        occurred_at,
        application_id,
        product,
        kind,
        requested_amount,
        channel,
    })
}

fn credit_report(record: &Record<'_>) -> Checked<CreditReport> {
    let (event_id, user_id, occurred_at) = common(record)?;
    let bureau = ShortStr::new(text(record, BUREAU, 64)?);
    // In range, so each fits an i32.
    let count = |field, low, high| -> Checked<Option<i32>> {
        Ok(integer(record, field, low, high)?.map(|v| v as i32))
    };
    let credit_score = count(CREDIT_SCORE, 300, 950)?;
    let open_lenders = count(OPEN_LENDERS, 0, 10_000)?;
    let hard_inquiries_30d = count(HARD_INQUIRIES_30D, 0, 10_000)?;
    let delinquent_accounts = count(DELINQUENT_ACCOUNTS, 0, 10_000)?;
    let total_debt = optional_number(record, TOTAL_DEBT)?;
    let monthly_income = optional_number(record, MONTHLY_INCOME)?;
    let region = optional_text(record, REGION, 64)?;
    Ok(CreditReport {
        event_id,
        user_id,
        occurred_at,
        bureau,
        credit_score,
        open_lenders,
        hard_inquiries_30d,
        delinquent_accounts,
        total_debt,
        monthly_income,
        region,
    })
}

/// An operator's override (docs/design.md, "Overrides"): the action, who and why, and
/// until when a hold lasts.
fn override_event(record: &Record<'_>, raw: &[u8]) -> Checked<Override> {
    let (event_id, user_id, occurred_at) = common(record)?;
    let action = choice(record, ACTION, &OVERRIDE_ACTIONS)?;
    let operator = text(record, OPERATOR, 128)?.to_owned();
    let reason = text(record, REASON, 500)?.to_owned();
    let until = match (action, record.get(UNTIL)) {
        ("hold", value) => Some(time_value(value, "until")?),
        (_, None | Some(Json::Null)) => None,
        ("restore", value) => Some(time_value(value, "until")?),
        _ => return Err("until: only a hold or a restore takes one".to_owned()),
    };
    if until.is_some_and(|until| until <= occurred_at) {
        return Err("until: must be after occurred_at".to_owned());
    }
    let region = optional_text(record, REGION, 64)?;
    Ok(Override { event_id, user_id, occurred_at, action, operator, reason, until, region, raw: raw.into() })
}

// --- times and dates (`_time_value`, `_date_value`) --------------------------------------

/// `_TIMESTAMP.fullmatch(value)`:
/// `[1-8]\d{3}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)`,
/// `\d` being any Unicode decimal digit.
fn timestamp_matches(value: &str) -> bool {
    if value.is_ascii() {
        ascii_timestamp_matches(value.as_bytes())
    } else {
        chars_timestamp_matches(value)
    }
}

/// `timestamp_matches` of any string, a character at a time.
fn chars_timestamp_matches(value: &str) -> bool {
    let mut s = Scan(value.chars());
    if !(s.range('1', '8')
        && s.digits(3)
        && s.is('-')
        && s.digits(2)
        && s.is('-')
        && s.digits(2)
        && s.is('T')
        && s.digits(2)
        && s.is(':')
        && s.digits(2)
        && s.is(':')
        && s.digits(2))
    {
        return false;
    }
    let mut next = s.0.next();
    if next == Some('.') {
        let mut count = 0;
        loop {
            next = s.0.next();
            match next {
                Some(c) if is_decimal(c) => count += 1,
                _ => break,
            }
        }
        if !(1..=9).contains(&count) {
            return false;
        }
    }
    match next {
        Some('Z') => s.end(),
        Some('+' | '-') => {
            let hour = match s.0.next() {
                Some('0' | '1') => s.digits(1),
                Some('2') => s.range('0', '3'),
                _ => false,
            };
            hour && s.is(':') && s.range('0', '5') && s.digits(1) && s.end()
        }
        _ => false,
    }
}

/// `timestamp_matches` of an ASCII string, where `\d` can only be 0-9.
fn ascii_timestamp_matches(b: &[u8]) -> bool {
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let is = |i: usize, c: u8| b.get(i) == Some(&c);
    let within = |i: usize, low: u8, high: u8| b.get(i).is_some_and(|c| (low..=high).contains(c));
    if !(ascii_date_matches(b.get(..10).unwrap_or_default())
        && is(10, b'T')
        && digit(11)
        && digit(12)
        && is(13, b':')
        && digit(14)
        && digit(15)
        && is(16, b':')
        && digit(17)
        && digit(18))
    {
        return false;
    }
    let mut i = 19;
    if is(i, b'.') {
        i += 1;
        let start = i;
        while digit(i) {
            i += 1;
        }
        if !(1..=9).contains(&(i - start)) {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let hour = match b.get(i + 1) {
                Some(b'0' | b'1') => digit(i + 2),
                Some(b'2') => within(i + 2, b'0', b'3'),
                _ => false,
            };
            hour && is(i + 3, b':') && within(i + 4, b'0', b'5') && digit(i + 5) && i + 6 == b.len()
        }
        _ => false,
    }
}

/// `date_matches` of an ASCII string.
fn ascii_date_matches(b: &[u8]) -> bool {
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    b.len() == 10
        && matches!(b.first(), Some(b'1'..=b'8'))
        && digit(1)
        && digit(2)
        && digit(3)
        && b.get(4) == Some(&b'-')
        && digit(5)
        && digit(6)
        && b.get(7) == Some(&b'-')
        && digit(8)
        && digit(9)
}

/// `_DATE.fullmatch(value)`: `[1-8]\d{3}-\d{2}-\d{2}`.
fn date_matches(value: &str) -> bool {
    if value.is_ascii() {
        ascii_date_matches(value.as_bytes())
    } else {
        chars_date_matches(value)
    }
}

/// `date_matches` of any string, a character at a time.
fn chars_date_matches(value: &str) -> bool {
    let mut s = Scan(value.chars());
    s.range('1', '8')
        && s.digits(3)
        && s.is('-')
        && s.digits(2)
        && s.is('-')
        && s.digits(2)
        && s.end()
}

struct Scan<'s>(std::str::Chars<'s>);

impl Scan<'_> {
    fn is(&mut self, c: char) -> bool {
        self.0.next() == Some(c)
    }

    fn range(&mut self, low: char, high: char) -> bool {
        self.0.next().is_some_and(|c| (low..=high).contains(&c))
    }

    fn digits(&mut self, n: usize) -> bool {
        (0..n).all(|_| self.0.next().is_some_and(is_decimal))
    }

    fn end(&mut self) -> bool {
        self.0.next().is_none()
    }
}

/// The value of ASCII digits (the caller has checked they are).
fn ascii_number(digits: &[u8]) -> i64 {
    digits
        .iter()
        .fold(0, |acc, &d| acc * 10 + i64::from(d.wrapping_sub(b'0') % 10))
}

fn invalid_isoformat(value: &str) -> String {
    let mut out = String::from("Invalid isoformat string: ");
    push_str_repr(value, &mut out);
    out
}

/// `datetime.fromisoformat(value).timestamp()` for a `value` that matches
/// `_TIMESTAMP`; the error is the ValueError's text. What CPython 3.11 does with
/// such a string: its parser reads bytes, so a non-ASCII digit makes the string
/// invalid, except past the sixth digit of the fraction (digits after the sixth
/// are skipped unread: the fraction is truncated to microseconds). Then the ranges
/// are checked: month, day, hour, minute, second (a leap second or hour 24 is an
/// error).
fn iso_timestamp(value: &str) -> Result<f64, String> {
    let b = value.as_bytes();
    let Some(head) = b.get(..19).filter(|head| head.is_ascii()) else {
        return Err(invalid_isoformat(value));
    };
    let field =
        |start: usize, len: usize| ascii_number(head.get(start..start + len).unwrap_or(b""));
    let (year, month, day) = (field(0, 4), field(5, 2), field(8, 2));
    let (hour, minute, second) = (field(11, 2), field(14, 2), field(17, 2));
    let mut micro = 0i64;
    let mut tz = 19;
    if b.get(19) == Some(&b'.') {
        let Some(len) = b
            .get(20..)
            .and_then(|rest| rest.iter().position(|c| matches!(c, b'Z' | b'+' | b'-')))
        else {
            return Err(invalid_isoformat(value));
        };
        tz = 20 + len;
        let used = len.min(6);
        match b
            .get(20..20 + used)
            .filter(|f| f.iter().all(u8::is_ascii_digit))
        {
            Some(fraction) => micro = ascii_number(fraction) * 10i64.pow(6 - used as u32),
            None => return Err(invalid_isoformat(value)),
        }
    }
    let offset = match (b.get(tz), b.get(tz + 1..)) {
        (Some(b'Z'), _) => 0,
        (Some(&sign), Some(hh_mm)) if hh_mm.len() == 5 && hh_mm.is_ascii() => {
            let minutes = ascii_number(hh_mm.get(..2).unwrap_or(b"")) * 60
                + ascii_number(hh_mm.get(3..).unwrap_or(b""));
            if sign == b'-' {
                -minutes * 60
            } else {
                minutes * 60
            }
        }
        _ => return Err(invalid_isoformat(value)),
    };
    check_date(year, month, day)?;
    if hour > 23 {
        return Err("hour must be in 0..23".to_owned());
    }
    if minute > 59 {
        return Err("minute must be in 0..59".to_owned());
    }
    if second > 59 {
        return Err("second must be in 0..59".to_owned());
    }
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset;
    Ok(micros_to_seconds(seconds * 1_000_000 + micro))
}

/// The usual time, `YYYY-MM-DDTHH:MM:SSZ` (a year 1000-8999, as `_TIMESTAMP` has it) with
/// a valid date and time, read at once: what `parse_time` gives for it. None for any
/// other string, which the full checks then read, faults and all.
fn plain_time(b: &[u8]) -> Option<f64> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, b'T', h0, h1, b':', n0, n1, b':', s0, s1, b'Z'] =
        *<&[u8; 20]>::try_from(b).ok()?
    else {
        return None;
    };
    let digits = [y0, y1, y2, y3, m0, m1, d0, d1, h0, h1, n0, n1, s0, s1];
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'8').contains(&y0) {
        return None;
    }
    let n = |hi: u8, lo: u8| i64::from(hi - b'0') * 10 + i64::from(lo - b'0');
    let (year, month, day) = (n(y0, y1) * 100 + n(y2, y3), n(m0, m1), n(d0, d1));
    let (hour, minute, second) = (n(h0, h1), n(n0, n1), n(s0, s1));
    check_date(year, month, day).ok()?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Whole seconds: exact as a float, as `micros_to_seconds` gives them.
    Some((days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second) as f64)
}

/// `_time_value` for a string: its epoch second, or the detail after `name: `.
pub fn parse_time(value: &str) -> Result<f64, String> {
    match plain_time(value.as_bytes()) {
        Some(t) => Ok(t),
        None => full_time(value),
    }
}

/// `parse_time` by the full checks, whatever the form.
fn full_time(value: &str) -> Result<f64, String> {
    if !timestamp_matches(value) {
        return Err(NOT_DATE_TIME.to_owned());
    }
    iso_timestamp(value)
}

/// `_date_value` for a string: the epoch second of its 00:00 UTC, or the detail
/// after `name: `. CPython 3.11's `date.fromisoformat` wants 7, 8 or 10 bytes, so
/// a non-ASCII digit makes it invalid.
pub fn parse_date(value: &str) -> Result<f64, String> {
    if !date_matches(value) {
        return Err(NOT_DATE.to_owned());
    }
    if !value.is_ascii() {
        return Err(invalid_isoformat(value));
    }
    let b = value.as_bytes();
    let field = |start: usize, len: usize| ascii_number(b.get(start..start + len).unwrap_or(b""));
    let (year, month, day) = (field(0, 4), field(5, 2), field(8, 2));
    check_date(year, month, day)?;
    Ok(days_from_civil(year, month, day) as f64 * 86_400.0)
}

/// CPython's `check_date_args` (the year is 1000..=8999 here).
fn check_date(year: i64, month: i64, day: i64) -> Result<(), String> {
    if !(1..=12).contains(&month) {
        return Err("month must be in 1..12".to_owned());
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days).contains(&day) {
        return Err("day is out of range for month".to_owned());
    }
    Ok(())
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9).rem_euclid(12);
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `micros / 10**6` as Python's int true division gives it: correctly rounded,
/// also beyond 2**53 microseconds (after the year 2255), where `micros as f64`
/// would round first.
fn micros_to_seconds(micros: i64) -> f64 {
    let magnitude = micros.unsigned_abs();
    if magnitude <= 1 << 53 {
        return micros as f64 / 1e6; // both exact: one correctly rounded division
    }
    // The quotient with 64 more bits (at least 97 significant), the remainder as a
    // sticky bit: one rounding, in the conversion, then an exact scaling.
    let scaled = u128::from(magnitude) << 64;
    let quotient = (scaled / 1_000_000) | u128::from(scaled % 1_000_000 != 0);
    let x = quotient as f64 * (1.0 / 18_446_744_073_709_551_616.0);
    if micros < 0 {
        -x
    } else {
        x
    }
}

// --- Python's repr ------------------------------------------------------------------------

/// `repr(value)` of what orjson gives Python.
fn push_repr(value: &Json<'_>, out: &mut String) {
    match value {
        Json::Null => out.push_str("None"),
        Json::Bool(true) => out.push_str("True"),
        Json::Bool(false) => out.push_str("False"),
        Json::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Json::Float(x) => out.push_str(&py_repr(*x)),
        Json::Str(s) => push_str_repr(s, out),
        Json::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_repr(item, out);
            }
            out.push(']');
        }
        Json::Dict(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_str_repr(key, out);
                out.push_str(": ");
                push_repr(item, out);
            }
            out.push('}');
        }
        Json::Container => out.push_str("[...]"),
    }
}

/// `repr(s)` of a `str`: single quotes unless it holds `'` and no `"`; `\\`, the
/// quote, `\t`, `\n`, `\r` escaped; other characters that are not printable
/// (`str.isprintable`) as `\xhh`, `\uhhhh` or `\Uhhhhhhhh`.
pub fn push_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if c == quote => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ if c.is_ascii() || !is_printable(c) => {
                let code = u32::from(c);
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else if code < 0x10000 {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            _ => out.push(c),
        }
    }
    out.push(quote);
}

fn in_table(table: &[(u32, u32)], code: u32) -> bool {
    table
        .binary_search_by(|&(low, high)| {
            if high < code {
                std::cmp::Ordering::Less
            } else if low > code {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// `str.isprintable()` of one character, as CPython 3.11 has it.
fn is_printable(c: char) -> bool {
    !in_table(&NOT_PRINTABLE, u32::from(c))
}

/// What `\d` matches in a Python `str` pattern (`str.isdecimal()`).
fn is_decimal(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        in_table(&DECIMAL, u32::from(c))
    }
}

// Both tables are written by `tests/gen_codec.py --tables` from CPython 3.11's
// Unicode database (14.0.0); the fixture generator checks they are still the same.

/// Code points for which Python 3.11's `str.isprintable()` is false (Unicode 14.0.0).
#[rustfmt::skip]
const NOT_PRINTABLE: [(u32, u32); 701] = [
    (0x0, 0x1F), (0x7F, 0xA0), (0xAD, 0xAD), (0x378, 0x379), (0x380, 0x383), (0x38B, 0x38B),
    (0x38D, 0x38D), (0x3A2, 0x3A2), (0x530, 0x530), (0x557, 0x558), (0x58B, 0x58C),
    (0x590, 0x590), (0x5C8, 0x5CF), (0x5EB, 0x5EE), (0x5F5, 0x605), (0x61C, 0x61C),
    (0x6DD, 0x6DD), (0x70E, 0x70F), (0x74B, 0x74C), (0x7B2, 0x7BF), (0x7FB, 0x7FC),
    (0x82E, 0x82F), (0x83F, 0x83F), (0x85C, 0x85D), (0x85F, 0x85F), (0x86B, 0x86F),
    (0x88F, 0x897), (0x8E2, 0x8E2), (0x984, 0x984), (0x98D, 0x98E), (0x991, 0x992),
    (0x9A9, 0x9A9), (0x9B1, 0x9B1), (0x9B3, 0x9B5), (0x9BA, 0x9BB), (0x9C5, 0x9C6),
    (0x9C9, 0x9CA), (0x9CF, 0x9D6), (0x9D8, 0x9DB), (0x9DE, 0x9DE), (0x9E4, 0x9E5),
    (0x9FF, 0xA00), (0xA04, 0xA04), (0xA0B, 0xA0E), (0xA11, 0xA12), (0xA29, 0xA29),
    (0xA31, 0xA31), (0xA34, 0xA34), (0xA37, 0xA37), (0xA3A, 0xA3B), (0xA3D, 0xA3D),
    (0xA43, 0xA46), (0xA49, 0xA4A), (0xA4E, 0xA50), (0xA52, 0xA58), (0xA5D, 0xA5D),
    (0xA5F, 0xA65), (0xA77, 0xA80), (0xA84, 0xA84), (0xA8E, 0xA8E), (0xA92, 0xA92),
    (0xAA9, 0xAA9), (0xAB1, 0xAB1), (0xAB4, 0xAB4), (0xABA, 0xABB), (0xAC6, 0xAC6),
    (0xACA, 0xACA), (0xACE, 0xACF), (0xAD1, 0xADF), (0xAE4, 0xAE5), (0xAF2, 0xAF8),
    (0xB00, 0xB00), (0xB04, 0xB04), (0xB0D, 0xB0E), (0xB11, 0xB12), (0xB29, 0xB29),
    (0xB31, 0xB31), (0xB34, 0xB34), (0xB3A, 0xB3B), (0xB45, 0xB46), (0xB49, 0xB4A),
    (0xB4E, 0xB54), (0xB58, 0xB5B), (0xB5E, 0xB5E), (0xB64, 0xB65), (0xB78, 0xB81),
    (0xB84, 0xB84), (0xB8B, 0xB8D), (0xB91, 0xB91), (0xB96, 0xB98), (0xB9B, 0xB9B),
    (0xB9D, 0xB9D), (0xBA0, 0xBA2), (0xBA5, 0xBA7), (0xBAB, 0xBAD), (0xBBA, 0xBBD),
    (0xBC3, 0xBC5), (0xBC9, 0xBC9), (0xBCE, 0xBCF), (0xBD1, 0xBD6), (0xBD8, 0xBE5),
    (0xBFB, 0xBFF), (0xC0D, 0xC0D), (0xC11, 0xC11), (0xC29, 0xC29), (0xC3A, 0xC3B),
    (0xC45, 0xC45), (0xC49, 0xC49), (0xC4E, 0xC54), (0xC57, 0xC57), (0xC5B, 0xC5C),
    (0xC5E, 0xC5F), (0xC64, 0xC65), (0xC70, 0xC76), (0xC8D, 0xC8D), (0xC91, 0xC91),
    (0xCA9, 0xCA9), (0xCB4, 0xCB4), (0xCBA, 0xCBB), (0xCC5, 0xCC5), (0xCC9, 0xCC9),
    (0xCCE, 0xCD4), (0xCD7, 0xCDC), (0xCDF, 0xCDF), (0xCE4, 0xCE5), (0xCF0, 0xCF0),
    (0xCF3, 0xCFF), (0xD0D, 0xD0D), (0xD11, 0xD11), (0xD45, 0xD45), (0xD49, 0xD49),
    (0xD50, 0xD53), (0xD64, 0xD65), (0xD80, 0xD80), (0xD84, 0xD84), (0xD97, 0xD99),
    (0xDB2, 0xDB2), (0xDBC, 0xDBC), (0xDBE, 0xDBF), (0xDC7, 0xDC9), (0xDCB, 0xDCE),
    (0xDD5, 0xDD5), (0xDD7, 0xDD7), (0xDE0, 0xDE5), (0xDF0, 0xDF1), (0xDF5, 0xE00),
    (0xE3B, 0xE3E), (0xE5C, 0xE80), (0xE83, 0xE83), (0xE85, 0xE85), (0xE8B, 0xE8B),
    (0xEA4, 0xEA4), (0xEA6, 0xEA6), (0xEBE, 0xEBF), (0xEC5, 0xEC5), (0xEC7, 0xEC7),
    (0xECE, 0xECF), (0xEDA, 0xEDB), (0xEE0, 0xEFF), (0xF48, 0xF48), (0xF6D, 0xF70),
    (0xF98, 0xF98), (0xFBD, 0xFBD), (0xFCD, 0xFCD), (0xFDB, 0xFFF), (0x10C6, 0x10C6),
    (0x10C8, 0x10CC), (0x10CE, 0x10CF), (0x1249, 0x1249), (0x124E, 0x124F), (0x1257, 0x1257),
    (0x1259, 0x1259), (0x125E, 0x125F), (0x1289, 0x1289), (0x128E, 0x128F), (0x12B1, 0x12B1),
    (0x12B6, 0x12B7), (0x12BF, 0x12BF), (0x12C1, 0x12C1), (0x12C6, 0x12C7), (0x12D7, 0x12D7),
    (0x1311, 0x1311), (0x1316, 0x1317), (0x135B, 0x135C), (0x137D, 0x137F), (0x139A, 0x139F),
    (0x13F6, 0x13F7), (0x13FE, 0x13FF), (0x1680, 0x1680), (0x169D, 0x169F), (0x16F9, 0x16FF),
    (0x1716, 0x171E), (0x1737, 0x173F), (0x1754, 0x175F), (0x176D, 0x176D), (0x1771, 0x1771),
    (0x1774, 0x177F), (0x17DE, 0x17DF), (0x17EA, 0x17EF), (0x17FA, 0x17FF), (0x180E, 0x180E),
    (0x181A, 0x181F), (0x1879, 0x187F), (0x18AB, 0x18AF), (0x18F6, 0x18FF), (0x191F, 0x191F),
    (0x192C, 0x192F), (0x193C, 0x193F), (0x1941, 0x1943), (0x196E, 0x196F), (0x1975, 0x197F),
    (0x19AC, 0x19AF), (0x19CA, 0x19CF), (0x19DB, 0x19DD), (0x1A1C, 0x1A1D), (0x1A5F, 0x1A5F),
    (0x1A7D, 0x1A7E), (0x1A8A, 0x1A8F), (0x1A9A, 0x1A9F), (0x1AAE, 0x1AAF), (0x1ACF, 0x1AFF),
    (0x1B4D, 0x1B4F), (0x1B7F, 0x1B7F), (0x1BF4, 0x1BFB), (0x1C38, 0x1C3A), (0x1C4A, 0x1C4C),
    (0x1C89, 0x1C8F), (0x1CBB, 0x1CBC), (0x1CC8, 0x1CCF), (0x1CFB, 0x1CFF), (0x1F16, 0x1F17),
    (0x1F1E, 0x1F1F), (0x1F46, 0x1F47), (0x1F4E, 0x1F4F), (0x1F58, 0x1F58), (0x1F5A, 0x1F5A),
    (0x1F5C, 0x1F5C), (0x1F5E, 0x1F5E), (0x1F7E, 0x1F7F), (0x1FB5, 0x1FB5), (0x1FC5, 0x1FC5),
    (0x1FD4, 0x1FD5), (0x1FDC, 0x1FDC), (0x1FF0, 0x1FF1), (0x1FF5, 0x1FF5), (0x1FFF, 0x200F),
    (0x2028, 0x202F), (0x205F, 0x206F), (0x2072, 0x2073), (0x208F, 0x208F), (0x209D, 0x209F),
    (0x20C1, 0x20CF), (0x20F1, 0x20FF), (0x218C, 0x218F), (0x2427, 0x243F), (0x244B, 0x245F),
    (0x2B74, 0x2B75), (0x2B96, 0x2B96), (0x2CF4, 0x2CF8), (0x2D26, 0x2D26), (0x2D28, 0x2D2C),
    (0x2D2E, 0x2D2F), (0x2D68, 0x2D6E), (0x2D71, 0x2D7E), (0x2D97, 0x2D9F), (0x2DA7, 0x2DA7),
    (0x2DAF, 0x2DAF), (0x2DB7, 0x2DB7), (0x2DBF, 0x2DBF), (0x2DC7, 0x2DC7), (0x2DCF, 0x2DCF),
    (0x2DD7, 0x2DD7), (0x2DDF, 0x2DDF), (0x2E5E, 0x2E7F), (0x2E9A, 0x2E9A), (0x2EF4, 0x2EFF),
    (0x2FD6, 0x2FEF), (0x2FFC, 0x3000), (0x3040, 0x3040), (0x3097, 0x3098), (0x3100, 0x3104),
    (0x3130, 0x3130), (0x318F, 0x318F), (0x31E4, 0x31EF), (0x321F, 0x321F), (0xA48D, 0xA48F),
    (0xA4C7, 0xA4CF), (0xA62C, 0xA63F), (0xA6F8, 0xA6FF), (0xA7CB, 0xA7CF), (0xA7D2, 0xA7D2),
    (0xA7D4, 0xA7D4), (0xA7DA, 0xA7F1), (0xA82D, 0xA82F), (0xA83A, 0xA83F), (0xA878, 0xA87F),
    (0xA8C6, 0xA8CD), (0xA8DA, 0xA8DF), (0xA954, 0xA95E), (0xA97D, 0xA97F), (0xA9CE, 0xA9CE),
    (0xA9DA, 0xA9DD), (0xA9FF, 0xA9FF), (0xAA37, 0xAA3F), (0xAA4E, 0xAA4F), (0xAA5A, 0xAA5B),
    (0xAAC3, 0xAADA), (0xAAF7, 0xAB00), (0xAB07, 0xAB08), (0xAB0F, 0xAB10), (0xAB17, 0xAB1F),
    (0xAB27, 0xAB27), (0xAB2F, 0xAB2F), (0xAB6C, 0xAB6F), (0xABEE, 0xABEF), (0xABFA, 0xABFF),
    (0xD7A4, 0xD7AF), (0xD7C7, 0xD7CA), (0xD7FC, 0xF8FF), (0xFA6E, 0xFA6F), (0xFADA, 0xFAFF),
    (0xFB07, 0xFB12), (0xFB18, 0xFB1C), (0xFB37, 0xFB37), (0xFB3D, 0xFB3D), (0xFB3F, 0xFB3F),
    (0xFB42, 0xFB42), (0xFB45, 0xFB45), (0xFBC3, 0xFBD2), (0xFD90, 0xFD91), (0xFDC8, 0xFDCE),
    (0xFDD0, 0xFDEF), (0xFE1A, 0xFE1F), (0xFE53, 0xFE53), (0xFE67, 0xFE67), (0xFE6C, 0xFE6F),
    (0xFE75, 0xFE75), (0xFEFD, 0xFF00), (0xFFBF, 0xFFC1), (0xFFC8, 0xFFC9), (0xFFD0, 0xFFD1),
    (0xFFD8, 0xFFD9), (0xFFDD, 0xFFDF), (0xFFE7, 0xFFE7), (0xFFEF, 0xFFFB), (0xFFFE, 0xFFFF),
    (0x1000C, 0x1000C), (0x10027, 0x10027), (0x1003B, 0x1003B), (0x1003E, 0x1003E),
    (0x1004E, 0x1004F), (0x1005E, 0x1007F), (0x100FB, 0x100FF), (0x10103, 0x10106),
    (0x10134, 0x10136), (0x1018F, 0x1018F), (0x1019D, 0x1019F), (0x101A1, 0x101CF),
    (0x101FE, 0x1027F), (0x1029D, 0x1029F), (0x102D1, 0x102DF), (0x102FC, 0x102FF),
    (0x10324, 0x1032C), (0x1034B, 0x1034F), (0x1037B, 0x1037F), (0x1039E, 0x1039E),
    (0x103C4, 0x103C7), (0x103D6, 0x103FF), (0x1049E, 0x1049F), (0x104AA, 0x104AF),
    (0x104D4, 0x104D7), (0x104FC, 0x104FF), (0x10528, 0x1052F), (0x10564, 0x1056E),
    (0x1057B, 0x1057B), (0x1058B, 0x1058B), (0x10593, 0x10593), (0x10596, 0x10596),
    (0x105A2, 0x105A2), (0x105B2, 0x105B2), (0x105BA, 0x105BA), (0x105BD, 0x105FF),
    (0x10737, 0x1073F), (0x10756, 0x1075F), (0x10768, 0x1077F), (0x10786, 0x10786),
    (0x107B1, 0x107B1), (0x107BB, 0x107FF), (0x10806, 0x10807), (0x10809, 0x10809),
    (0x10836, 0x10836), (0x10839, 0x1083B), (0x1083D, 0x1083E), (0x10856, 0x10856),
    (0x1089F, 0x108A6), (0x108B0, 0x108DF), (0x108F3, 0x108F3), (0x108F6, 0x108FA),
    (0x1091C, 0x1091E), (0x1093A, 0x1093E), (0x10940, 0x1097F), (0x109B8, 0x109BB),
    (0x109D0, 0x109D1), (0x10A04, 0x10A04), (0x10A07, 0x10A0B), (0x10A14, 0x10A14),
    (0x10A18, 0x10A18), (0x10A36, 0x10A37), (0x10A3B, 0x10A3E), (0x10A49, 0x10A4F),
    (0x10A59, 0x10A5F), (0x10AA0, 0x10ABF), (0x10AE7, 0x10AEA), (0x10AF7, 0x10AFF),
    (0x10B36, 0x10B38), (0x10B56, 0x10B57), (0x10B73, 0x10B77), (0x10B92, 0x10B98),
    (0x10B9D, 0x10BA8), (0x10BB0, 0x10BFF), (0x10C49, 0x10C7F), (0x10CB3, 0x10CBF),
    (0x10CF3, 0x10CF9), (0x10D28, 0x10D2F), (0x10D3A, 0x10E5F), (0x10E7F, 0x10E7F),
    (0x10EAA, 0x10EAA), (0x10EAE, 0x10EAF), (0x10EB2, 0x10EFF), (0x10F28, 0x10F2F),
    (0x10F5A, 0x10F6F), (0x10F8A, 0x10FAF), (0x10FCC, 0x10FDF), (0x10FF7, 0x10FFF),
    (0x1104E, 0x11051), (0x11076, 0x1107E), (0x110BD, 0x110BD), (0x110C3, 0x110CF),
    (0x110E9, 0x110EF), (0x110FA, 0x110FF), (0x11135, 0x11135), (0x11148, 0x1114F),
    (0x11177, 0x1117F), (0x111E0, 0x111E0), (0x111F5, 0x111FF), (0x11212, 0x11212),
    (0x1123F, 0x1127F), (0x11287, 0x11287), (0x11289, 0x11289), (0x1128E, 0x1128E),
    (0x1129E, 0x1129E), (0x112AA, 0x112AF), (0x112EB, 0x112EF), (0x112FA, 0x112FF),
    (0x11304, 0x11304), (0x1130D, 0x1130E), (0x11311, 0x11312), (0x11329, 0x11329),
    (0x11331, 0x11331), (0x11334, 0x11334), (0x1133A, 0x1133A), (0x11345, 0x11346),
    (0x11349, 0x1134A), (0x1134E, 0x1134F), (0x11351, 0x11356), (0x11358, 0x1135C),
    (0x11364, 0x11365), (0x1136D, 0x1136F), (0x11375, 0x113FF), (0x1145C, 0x1145C),
    (0x11462, 0x1147F), (0x114C8, 0x114CF), (0x114DA, 0x1157F), (0x115B6, 0x115B7),
    (0x115DE, 0x115FF), (0x11645, 0x1164F), (0x1165A, 0x1165F), (0x1166D, 0x1167F),
    (0x116BA, 0x116BF), (0x116CA, 0x116FF), (0x1171B, 0x1171C), (0x1172C, 0x1172F),
    (0x11747, 0x117FF), (0x1183C, 0x1189F), (0x118F3, 0x118FE), (0x11907, 0x11908),
    (0x1190A, 0x1190B), (0x11914, 0x11914), (0x11917, 0x11917), (0x11936, 0x11936),
    (0x11939, 0x1193A), (0x11947, 0x1194F), (0x1195A, 0x1199F), (0x119A8, 0x119A9),
    (0x119D8, 0x119D9), (0x119E5, 0x119FF), (0x11A48, 0x11A4F), (0x11AA3, 0x11AAF),
    (0x11AF9, 0x11BFF), (0x11C09, 0x11C09), (0x11C37, 0x11C37), (0x11C46, 0x11C4F),
    (0x11C6D, 0x11C6F), (0x11C90, 0x11C91), (0x11CA8, 0x11CA8), (0x11CB7, 0x11CFF),
    (0x11D07, 0x11D07), (0x11D0A, 0x11D0A), (0x11D37, 0x11D39), (0x11D3B, 0x11D3B),
    (0x11D3E, 0x11D3E), (0x11D48, 0x11D4F), (0x11D5A, 0x11D5F), (0x11D66, 0x11D66),
    (0x11D69, 0x11D69), (0x11D8F, 0x11D8F), (0x11D92, 0x11D92), (0x11D99, 0x11D9F),
    (0x11DAA, 0x11EDF), (0x11EF9, 0x11FAF), (0x11FB1, 0x11FBF), (0x11FF2, 0x11FFE),
    (0x1239A, 0x123FF), (0x1246F, 0x1246F), (0x12475, 0x1247F), (0x12544, 0x12F8F),
    (0x12FF3, 0x12FFF), (0x1342F, 0x143FF), (0x14647, 0x167FF), (0x16A39, 0x16A3F),
    (0x16A5F, 0x16A5F), (0x16A6A, 0x16A6D), (0x16ABF, 0x16ABF), (0x16ACA, 0x16ACF),
    (0x16AEE, 0x16AEF), (0x16AF6, 0x16AFF), (0x16B46, 0x16B4F), (0x16B5A, 0x16B5A),
    (0x16B62, 0x16B62), (0x16B78, 0x16B7C), (0x16B90, 0x16E3F), (0x16E9B, 0x16EFF),
    (0x16F4B, 0x16F4E), (0x16F88, 0x16F8E), (0x16FA0, 0x16FDF), (0x16FE5, 0x16FEF),
    (0x16FF2, 0x16FFF), (0x187F8, 0x187FF), (0x18CD6, 0x18CFF), (0x18D09, 0x1AFEF),
    (0x1AFF4, 0x1AFF4), (0x1AFFC, 0x1AFFC), (0x1AFFF, 0x1AFFF), (0x1B123, 0x1B14F),
    (0x1B153, 0x1B163), (0x1B168, 0x1B16F), (0x1B2FC, 0x1BBFF), (0x1BC6B, 0x1BC6F),
    (0x1BC7D, 0x1BC7F), (0x1BC89, 0x1BC8F), (0x1BC9A, 0x1BC9B), (0x1BCA0, 0x1CEFF),
    (0x1CF2E, 0x1CF2F), (0x1CF47, 0x1CF4F), (0x1CFC4, 0x1CFFF), (0x1D0F6, 0x1D0FF),
    (0x1D127, 0x1D128), (0x1D173, 0x1D17A), (0x1D1EB, 0x1D1FF), (0x1D246, 0x1D2DF),
    (0x1D2F4, 0x1D2FF), (0x1D357, 0x1D35F), (0x1D379, 0x1D3FF), (0x1D455, 0x1D455),
    (0x1D49D, 0x1D49D), (0x1D4A0, 0x1D4A1), (0x1D4A3, 0x1D4A4), (0x1D4A7, 0x1D4A8),
    (0x1D4AD, 0x1D4AD), (0x1D4BA, 0x1D4BA), (0x1D4BC, 0x1D4BC), (0x1D4C4, 0x1D4C4),
    (0x1D506, 0x1D506), (0x1D50B, 0x1D50C), (0x1D515, 0x1D515), (0x1D51D, 0x1D51D),
    (0x1D53A, 0x1D53A), (0x1D53F, 0x1D53F), (0x1D545, 0x1D545), (0x1D547, 0x1D549),
    (0x1D551, 0x1D551), (0x1D6A6, 0x1D6A7), (0x1D7CC, 0x1D7CD), (0x1DA8C, 0x1DA9A),
    (0x1DAA0, 0x1DAA0), (0x1DAB0, 0x1DEFF), (0x1DF1F, 0x1DFFF), (0x1E007, 0x1E007),
    (0x1E019, 0x1E01A), (0x1E022, 0x1E022), (0x1E025, 0x1E025), (0x1E02B, 0x1E0FF),
    (0x1E12D, 0x1E12F), (0x1E13E, 0x1E13F), (0x1E14A, 0x1E14D), (0x1E150, 0x1E28F),
    (0x1E2AF, 0x1E2BF), (0x1E2FA, 0x1E2FE), (0x1E300, 0x1E7DF), (0x1E7E7, 0x1E7E7),
    (0x1E7EC, 0x1E7EC), (0x1E7EF, 0x1E7EF), (0x1E7FF, 0x1E7FF), (0x1E8C5, 0x1E8C6),
    (0x1E8D7, 0x1E8FF), (0x1E94C, 0x1E94F), (0x1E95A, 0x1E95D), (0x1E960, 0x1EC70),
    (0x1ECB5, 0x1ED00), (0x1ED3E, 0x1EDFF), (0x1EE04, 0x1EE04), (0x1EE20, 0x1EE20),
    (0x1EE23, 0x1EE23), (0x1EE25, 0x1EE26), (0x1EE28, 0x1EE28), (0x1EE33, 0x1EE33),
    (0x1EE38, 0x1EE38), (0x1EE3A, 0x1EE3A), (0x1EE3C, 0x1EE41), (0x1EE43, 0x1EE46),
    (0x1EE48, 0x1EE48), (0x1EE4A, 0x1EE4A), (0x1EE4C, 0x1EE4C), (0x1EE50, 0x1EE50),
    (0x1EE53, 0x1EE53), (0x1EE55, 0x1EE56), (0x1EE58, 0x1EE58), (0x1EE5A, 0x1EE5A),
    (0x1EE5C, 0x1EE5C), (0x1EE5E, 0x1EE5E), (0x1EE60, 0x1EE60), (0x1EE63, 0x1EE63),
    (0x1EE65, 0x1EE66), (0x1EE6B, 0x1EE6B), (0x1EE73, 0x1EE73), (0x1EE78, 0x1EE78),
    (0x1EE7D, 0x1EE7D), (0x1EE7F, 0x1EE7F), (0x1EE8A, 0x1EE8A), (0x1EE9C, 0x1EEA0),
    (0x1EEA4, 0x1EEA4), (0x1EEAA, 0x1EEAA), (0x1EEBC, 0x1EEEF), (0x1EEF2, 0x1EFFF),
    (0x1F02C, 0x1F02F), (0x1F094, 0x1F09F), (0x1F0AF, 0x1F0B0), (0x1F0C0, 0x1F0C0),
    (0x1F0D0, 0x1F0D0), (0x1F0F6, 0x1F0FF), (0x1F1AE, 0x1F1E5), (0x1F203, 0x1F20F),
    (0x1F23C, 0x1F23F), (0x1F249, 0x1F24F), (0x1F252, 0x1F25F), (0x1F266, 0x1F2FF),
    (0x1F6D8, 0x1F6DC), (0x1F6ED, 0x1F6EF), (0x1F6FD, 0x1F6FF), (0x1F774, 0x1F77F),
    (0x1F7D9, 0x1F7DF), (0x1F7EC, 0x1F7EF), (0x1F7F1, 0x1F7FF), (0x1F80C, 0x1F80F),
    (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F), (0x1F8AE, 0x1F8AF),
    (0x1F8B2, 0x1F8FF), (0x1FA54, 0x1FA5F), (0x1FA6E, 0x1FA6F), (0x1FA75, 0x1FA77),
    (0x1FA7D, 0x1FA7F), (0x1FA87, 0x1FA8F), (0x1FAAD, 0x1FAAF), (0x1FABB, 0x1FABF),
    (0x1FAC6, 0x1FACF), (0x1FADA, 0x1FADF), (0x1FAE8, 0x1FAEF), (0x1FAF7, 0x1FAFF),
    (0x1FB93, 0x1FB93), (0x1FBCB, 0x1FBEF), (0x1FBFA, 0x1FFFF), (0x2A6E0, 0x2A6FF),
    (0x2B739, 0x2B73F), (0x2B81E, 0x2B81F), (0x2CEA2, 0x2CEAF), (0x2EBE1, 0x2F7FF),
    (0x2FA1E, 0x2FFFF), (0x3134B, 0xE00FF), (0xE01F0, 0x10FFFF),
];

/// Code points for which Python 3.11's `str.isdecimal()` is true (Unicode 14.0.0): what `\d` matches in a `str` pattern.
#[rustfmt::skip]
const DECIMAL: [(u32, u32); 62] = [
    (0x30, 0x39), (0x660, 0x669), (0x6F0, 0x6F9), (0x7C0, 0x7C9), (0x966, 0x96F),
    (0x9E6, 0x9EF), (0xA66, 0xA6F), (0xAE6, 0xAEF), (0xB66, 0xB6F), (0xBE6, 0xBEF),
    (0xC66, 0xC6F), (0xCE6, 0xCEF), (0xD66, 0xD6F), (0xDE6, 0xDEF), (0xE50, 0xE59),
    (0xED0, 0xED9), (0xF20, 0xF29), (0x1040, 0x1049), (0x1090, 0x1099), (0x17E0, 0x17E9),
    (0x1810, 0x1819), (0x1946, 0x194F), (0x19D0, 0x19D9), (0x1A80, 0x1A89), (0x1A90, 0x1A99),
    (0x1B50, 0x1B59), (0x1BB0, 0x1BB9), (0x1C40, 0x1C49), (0x1C50, 0x1C59), (0xA620, 0xA629),
    (0xA8D0, 0xA8D9), (0xA900, 0xA909), (0xA9D0, 0xA9D9), (0xA9F0, 0xA9F9), (0xAA50, 0xAA59),
    (0xABF0, 0xABF9), (0xFF10, 0xFF19), (0x104A0, 0x104A9), (0x10D30, 0x10D39),
    (0x11066, 0x1106F), (0x110F0, 0x110F9), (0x11136, 0x1113F), (0x111D0, 0x111D9),
    (0x112F0, 0x112F9), (0x11450, 0x11459), (0x114D0, 0x114D9), (0x11650, 0x11659),
    (0x116C0, 0x116C9), (0x11730, 0x11739), (0x118E0, 0x118E9), (0x11950, 0x11959),
    (0x11C50, 0x11C59), (0x11D50, 0x11D59), (0x11DA0, 0x11DA9), (0x16A60, 0x16A69),
    (0x16AC0, 0x16AC9), (0x16B50, 0x16B59), (0x1D7CE, 0x1D7FF), (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9), (0x1E950, 0x1E959), (0x1FBF0, 0x1FBF9),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_at_finds_the_first_stop_byte() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let r = state.rotate_left(i as u32 * 7) as u8;
                    match r % 16 {
                        0 => b'"',
                        1 => b'\\',
                        2 => r % 0x20,
                        _ => r | 0x20,
                    }
                })
                .collect();
            let naive = bytes
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .unwrap_or(bytes.len());
            assert_eq!(special_at(&bytes), naive, "{bytes:?}");
        }
    }

    /// Where the quick number reader answers, it reads as `Parser::number` does.
    #[test]
    fn simple_number_reads_as_the_parser() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "", "-", "0", "1", "9", "00", "12345", "99999999999999999", "18446744073709551615",
            "9007199254740993", "123456789012345678901234",
        ];
        let fracs =
            ["", ".", ".0", ".5", ".25", ".000001", ".1234567890123456789", ".95", ".999999999999999999999"];
        let exps = [
            "", "e", "e5", "E-5", "e+22", "e-22", "e23", "e-23", "e308", "e309", "e-324", "e-400",
            "e99999999999999999999",
        ];
        let mut texts: Vec<String> = Vec::new();
        for sign in ["", "-"] {
            for a in pieces {
                for f in fracs {
                    for e in exps {
                        texts.push(format!("{sign}{a}{f}{e}"));
                    }
                }
            }
        }
        for _ in 0..200_000 {
            let r = next();
            let digits = (r % 19) as usize + 1;
            let mut t = if r & 1 == 0 { String::new() } else { "-".to_owned() };
            t.push_str(&format!("{}", next() % 10u64.pow(digits as u32)));
            if r & 2 == 0 {
                let width = (r >> 8) as usize % 4 + 1;
                t.push_str(&format!(".{:0width$}", next() % 1000));
            }
            if r & 4 == 0 {
                t.push_str(&format!("e{}", (next() % 700) as i64 - 350));
            }
            texts.push(t);
        }
        // A float by its bits, anything else by its Debug form.
        let shown = |v: &Json<'_>| match v {
            Json::Float(x) => format!("Float({})", x.to_bits()),
            v => format!("{v:?}"),
        };
        let mut answered = 0;
        for text in &texts {
            let Some((value, end)) = simple_number(text, 0) else { continue };
            answered += 1;
            let mut parser = Parser::new(text);
            let full = parser.number().map(|v| shown(&v)).unwrap_or_else(|e| e.message.to_owned());
            assert_eq!((shown(&value), end), (full, parser.pos), "{text}");
        }
        assert!(answered > 100_000, "{answered}");
    }

    /// The ASCII readers of times and dates agree with the general ones.
    #[test]
    fn ascii_time_and_date_patterns() {
        let good =
            ["2026-01-01T01:00:01Z", "1999-12-31T23:59:59.123456789+23:59", "8999-02-03T04:05:06.7-00:00"];
        let bytes = b"0123456789-T:.Z+- x";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..300_000 {
            let mut v: Vec<u8> = good[(next() % 3) as usize].as_bytes().to_vec();
            for _ in 0..(next() % 3) {
                let at = (next() as usize) % (v.len() + 1);
                match next() % 3 {
                    0 if at < v.len() => v[at] = bytes[(next() as usize) % bytes.len()],
                    1 => v.insert(at, bytes[(next() as usize) % bytes.len()]),
                    _ if at < v.len() => {
                        v.remove(at);
                    }
                    _ => {}
                }
            }
            let text = String::from_utf8(v).unwrap();
            let quick = ascii_timestamp_matches(text.as_bytes());
            assert_eq!(quick, chars_timestamp_matches(&text), "{text}");
            let date = text.get(..10.min(text.len())).unwrap_or("");
            assert_eq!(ascii_date_matches(date.as_bytes()), chars_date_matches(date), "{date}");
        }
    }

    #[test]
    fn plain_time_agrees_with_the_full_checks() {
        let mut seen = 0;
        for year in ["0999", "1000", "1970", "2000", "2024", "2100", "8999", "9000"] {
            for month in ["00", "01", "02", "04", "12", "13"] {
                for day in ["00", "01", "28", "29", "30", "31", "32"] {
                    for time in ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "07:3a:00"] {
                        let value = format!("{year}-{month}-{day}T{time}Z");
                        let quick = plain_time(value.as_bytes());
                        let full = full_time(&value);
                        match quick {
                            Some(t) => {
                                seen += 1;
                                assert_eq!(full, Ok(t), "{value}");
                            }
                            None => assert!(full.is_err(), "{value}: {full:?}"),
                        }
                    }
                }
            }
        }
        assert!(seen > 100);
        for other in ["2026-01-01T01:00:01.5Z", "2026-01-01T01:00:01+08:00", "2026-01-01t01:00:01Z"] {
            assert_eq!(plain_time(other.as_bytes()), None, "{other}");
        }
        assert_eq!(parse_time("2026-01-01T01:00:01Z"), Ok(1_767_229_201.0));
    }

    #[test]
    fn micros_to_seconds_rounds_once() {
        // Python's `n / 10**6`, where `float(n) / 1e6` is one ulp off.
        assert_eq!(micros_to_seconds(173_069_044_958_999_029), 173_069_044_958.999_02);
        assert_eq!(micros_to_seconds(100_500_065_344_549_689), 100_500_065_344.549_68);
        assert_eq!(micros_to_seconds(206_872_697_791_486_415), 206_872_697_791.486_42);
        assert_eq!(micros_to_seconds(-9_007_199_254_753_337), -9_007_199_254.753_338);
        assert_eq!(micros_to_seconds(1 << 53), 9_007_199_254.740_992);
    }
}
