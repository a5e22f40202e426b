//! Numbers and times written exactly as the Python engine writes them.
//!
//! Each function reproduces one piece of CPython 3.11 or orjson 3.13 byte for
//! byte; `tests/pyfmt.rs` checks them against a fixture that
//! `tests/gen_pyfmt.py` writes with Python itself. None of them panics,
//! whatever the input (NaN, infinities, subnormals, huge values).

use std::fmt::Write as _;

/// The shortest decimal that reads back as a finite, non-zero double:
/// `0.d1d2d3... * 10^(exp + 1)`, i.e. `d1.d2d3... * 10^exp`.
struct Shortest {
    /// ASCII digits, the first one non-zero, no trailing zeros.
    digits: [u8; 24],
    len: usize,
    /// Decimal exponent of the first digit.
    exp: i32,
}

impl Shortest {
    fn digits(&self) -> &[u8] {
        self.digits.get(..self.len).unwrap_or(&[])
    }
}

/// Shortest round-trip digits of a finite, non-zero `x` (sign ignored), from
/// ryu; the same digits as CPython's `repr` (dtoa mode 0) and orjson.
fn shortest(x: f64) -> Shortest {
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(x.abs());
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let mut out = Shortest {
        digits: [0; 24],
        len: 0,
        exp: 0,
    };
    // Digits seen before the decimal point, and leading zeros dropped.
    let mut int_len: i32 = 0;
    let mut seen_point = false;
    let mut leading_zeros: i32 = 0;
    for b in mantissa.bytes() {
        match b {
            b'.' => seen_point = true,
            b'0'..=b'9' => {
                if !seen_point {
                    int_len += 1;
                }
                if out.len == 0 && b == b'0' {
                    leading_zeros += 1;
                } else if let Some(slot) = out.digits.get_mut(out.len) {
                    *slot = b;
                    out.len += 1;
                }
            }
            _ => {}
        }
    }
    while out.len > 1 && out.digits.get(out.len - 1) == Some(&b'0') {
        out.len -= 1;
    }
    if out.len == 0 {
        // Only for zero, which callers handle before; keep it harmless.
        if let Some(slot) = out.digits.first_mut() {
            *slot = b'0';
            out.len = 1;
        }
    }
    out.exp = int_len - leading_zeros - 1 + exponent;
    out
}

/// Appends `digits` as `d1.d2d3...` (or `d1` alone) to `out`.
fn push_mantissa(digits: &[u8], out: &mut String) {
    let mut it = digits.iter();
    if let Some(&first) = it.next() {
        out.push(char::from(first));
    }
    if digits.len() > 1 {
        out.push('.');
        out.extend(it.map(|&d| char::from(d)));
    }
}

/// Appends `e+X` / `e-X`, the exponent padded with zeros to `min_digits`.
fn push_exponent(exp: i32, min_digits: usize, out: &mut String) {
    let sign = if exp < 0 { '-' } else { '+' };
    let _ = write!(out, "e{sign}{:0min_digits$}", exp.unsigned_abs());
}

/// Appends `digits * 10^(exp - len + 1)` in positional form, always with a
/// fractional part (`.0` when there is none), as `repr` and orjson do.
fn push_fixed(digits: &[u8], exp: i32, out: &mut String) {
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.extend(digits.iter().map(|&d| char::from(d)));
        return;
    }
    let int_len = usize::try_from(exp).unwrap_or(0) + 1;
    for i in 0..int_len {
        out.push(char::from(*digits.get(i).unwrap_or(&b'0')));
    }
    out.push('.');
    match digits.get(int_len..) {
        Some(rest) if !rest.is_empty() => out.extend(rest.iter().map(|&d| char::from(d))),
        _ => out.push('0'),
    }
}

/// Python's `repr(float)` (also `str(float)`): the shortest round-trip digits,
/// positional when the decimal exponent is in -4..16, else `d.ddde±XX` with at
/// least two exponent digits; `inf`, `-inf`, `nan`, `-0.0`.
pub fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let mut out = String::with_capacity(24);
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push_str("0.0");
        return out;
    }
    let s = shortest(x);
    if (-4..16).contains(&s.exp) {
        push_fixed(s.digits(), s.exp, &mut out);
    } else {
        push_mantissa(s.digits(), &mut out);
        push_exponent(s.exp, 2, &mut out);
    }
    out
}

/// Python's `format(x, 'g')`: six significant digits correctly rounded (half
/// to even on the exact binary value), positional when the rounded exponent is
/// in -4..6, trailing zeros and a bare point dropped, exponent `e±XX`.
pub fn py_g(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let mut out = String::with_capacity(16);
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push('0');
        return out;
    }
    // Rust's exact formatting rounds half to even on the exact value, as dtoa.
    let sci = format!("{:.5e}", x.abs());
    let (mantissa, exponent) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if (-4..6).contains(&exponent) {
        if exponent < 0 {
            push_fixed(&digits, exponent, &mut out);
        } else {
            // Positional without the `.0` that `push_fixed` adds.
            let int_len = usize::try_from(exponent).unwrap_or(0) + 1;
            for i in 0..int_len {
                out.push(char::from(*digits.get(i).unwrap_or(&b'0')));
            }
            if let Some(rest) = digits.get(int_len..).filter(|r| !r.is_empty()) {
                out.push('.');
                out.extend(rest.iter().map(|&d| char::from(d)));
            }
        }
    } else {
        push_mantissa(&digits, &mut out);
        push_exponent(exponent, 2, &mut out);
    }
    out
}

/// Python's `round(x, ndigits)` for a float: the decimal correctly rounded to
/// `ndigits` places (half to even on the exact binary value), read back.
/// Non-finite values come back unchanged, as in Python, and `ndigits` outside
/// -308..=323 is handled as CPython does. Where Python raises OverflowError
/// (a negative `ndigits` rounding past f64::MAX) this returns an infinity.
pub fn py_round(x: f64, ndigits: i32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // CPython: NDIGITS_MAX returns x, NDIGITS_MIN returns 0.0 * x.
    if ndigits > 323 {
        return x;
    }
    if ndigits < -308 {
        return 0.0 * x;
    }
    // Every double of magnitude 2**52 or more is an integer.
    if ndigits >= 0 && x.abs() >= 4_503_599_627_370_496.0 {
        return x;
    }
    if ndigits >= 0 {
        let places = usize::try_from(ndigits).unwrap_or(0);
        let text = format!("{:.*}", places, x);
        return text.parse::<f64>().unwrap_or(x);
    }
    // Negative ndigits: keep the significant digits at or above 10^-ndigits.
    // The exponent comes from the exact decimal value (a double has at most
    // 767 significant digits): the shortest one can be a power of ten above.
    let exact = format!("{:.800e}", x.abs());
    let (mantissa, exp10) = match exact.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (exact.as_str(), 0),
    };
    let keep = exp10 + ndigits + 1;
    if keep > 0 {
        // `{:.N$e}` rounds half to even on the exact value, as dtoa does.
        let precision = usize::try_from(keep - 1).unwrap_or(0);
        let text = format!("{:.*e}", precision, x);
        return text.parse::<f64>().unwrap_or(x);
    }
    // |x| < 10^-ndigits: the result is 0 or ±10^-ndigits. Only with keep == 0
    // can |x| reach half of it; a tie goes to the even 0.
    let up = keep == 0 && {
        let mut digits = mantissa.bytes().filter(u8::is_ascii_digit);
        match digits.next() {
            Some(first) if first > b'5' => true,
            Some(b'5') => digits.any(|d| d != b'0'),
            _ => false,
        }
    };
    if up {
        format!("{}1e{}", if x < 0.0 { "-" } else { "" }, -ndigits)
            .parse::<f64>()
            .unwrap_or(x)
    } else {
        0.0 * x
    }
}

/// What `orjson.dumps(x)` (orjson 3.13) writes for a float: the shortest
/// round-trip digits, positional (always with a fraction, `1.0`) when the
/// decimal exponent is in -5..16, else `d.ddde+X` / `d.ddde-X` without
/// padding (`1e+16`, `1.5e-7`). Non-finite values are written as `null`.
pub fn write_json_float(x: f64, out: &mut String) {
    if !x.is_finite() {
        out.push_str("null");
        return;
    }
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push_str("0.0");
        return;
    }
    let s = shortest(x);
    if (-5..16).contains(&s.exp) {
        push_fixed(s.digits(), s.exp, out);
    } else {
        push_mantissa(s.digits(), out);
        push_exponent(s.exp, 1, out);
    }
}

/// What `orjson.dumps(s)` writes for a string, quotes included: `"` and `\`
/// escaped with a backslash, `\b \t \n \f \r` in short form, the other
/// control characters below U+0020 as `\u00xx` (lower-case hex); everything
/// else (`/`, DEL, U+2028, non-ASCII) written as raw UTF-8.
pub fn write_json_str(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, hence a char boundary.
        out.push_str(s.get(start..i).unwrap_or(""));
        if short.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or(""));
    out.push('"');
}

/// Days since 1970-01-01 to a proleptic Gregorian `(year, month, day)`
/// (Howard Hinnant's `civil_from_days`); total over `i64`, never panics.
pub fn days_to_civil(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = era * 400 + yoe + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// A proleptic Gregorian date to days since 1970-01-01 (Hinnant's
/// `days_from_civil`), as `date.toordinal() - 719163` in Python. Meant for
/// real dates; other inputs give some number without panicking.
pub fn civil_to_days(y: i64, m: u32, d: u32) -> i64 {
    let m = i64::from(m);
    let y = if m <= 2 { y.saturating_sub(1) } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = (m + 9).rem_euclid(12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era.saturating_mul(146_097)
        .saturating_add(doe)
        .saturating_sub(719_468)
}

/// A UTC date and time as `datetime.fromtimestamp(t, UTC)` holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub microsecond: u32,
}

/// `datetime.fromtimestamp(t, UTC)`, or `None` where Python raises (NaN,
/// infinities, years outside 1..=9999). The fraction is turned into
/// microseconds as CPython does (`_PyTime_DoubleToDenominator`): `modf`, the
/// fraction times 1e6 in double precision, rounded half to even, with a carry
/// into the seconds.
pub fn utc_from_timestamp(t: f64) -> Option<UtcDateTime> {
    if !t.is_finite() {
        return None;
    }
    let mut int_part = t.trunc();
    // Far outside 0001..9999; also keeps the casts below exact.
    if int_part.abs() > 1e12 {
        return None;
    }
    let mut frac = ((t - int_part) * 1e6).round_ties_even();
    if frac >= 1e6 {
        frac -= 1e6;
        int_part += 1.0;
    } else if frac < 0.0 {
        frac += 1e6;
        int_part -= 1.0;
    }
    let secs = int_part as i64;
    let microsecond = frac as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (year, month, day) = days_to_civil(days);
    if !(1..=9999).contains(&year) {
        return None;
    }
    Some(UtcDateTime {
        year,
        month,
        day,
        hour: sod / 3_600,
        minute: sod / 60 % 60,
        second: sod % 60,
        microsecond,
    })
}

/// `streams.events.format_time`: `datetime.fromtimestamp(t, UTC).isoformat()`
/// with `Z`, to the millisecond (microseconds truncated) when the microsecond
/// is not 0, else to the second. Where Python raises, returns
/// `"<invalid time {repr}>"`.
pub fn format_time(t: f64) -> String {
    let Some(dt) = utc_from_timestamp(t) else {
        return format!("<invalid time {}>", py_repr(t));
    };
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second
    );
    if dt.microsecond != 0 {
        let _ = write!(out, ".{:03}", dt.microsecond / 1_000);
    }
    out.push('Z');
    out
}

/// `datetime.fromtimestamp(t, UTC).date().isoformat()` (`YYYY-MM-DD`). Where
/// Python raises, returns `"<invalid time {repr}>"`.
pub fn format_date(t: f64) -> String {
    match utc_from_timestamp(t) {
        Some(dt) => format!("{:04}-{:02}-{:02}", dt.year, dt.month, dt.day),
        None => format!("<invalid time {}>", py_repr(t)),
    }
}
