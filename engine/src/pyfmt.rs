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
    let mut out = String::with_capacity(24);
    write_py_repr(x, &mut out);
    out
}

/// `py_repr`, appended to `out`.
pub fn write_py_repr(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "inf" } else { "-inf" });
        return;
    }
    push_finite(x, -4, 2, out);
}

/// A finite float as Python's repr and orjson both write it but for two choices:
/// plain decimals for a decimal exponent from `fixed_from` to 15, and at least
/// `exp_width` digits of exponent otherwise (`repr`: -4 and 2, `1e-05`; orjson: -5
/// and 1, `0.00001`, `1e+16`).
fn push_finite(x: f64, fixed_from: i32, exp_width: usize, out: &mut String) {
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push_str("0.0");
        return;
    }
    if push_whole(x, out) {
        return;
    }
    let s = shortest(x);
    if (fixed_from..16).contains(&s.exp) {
        push_fixed(s.digits(), s.exp, out);
    } else {
        push_mantissa(s.digits(), out);
        push_exponent(s.exp, exp_width, out);
    }
}

/// A whole number below 2**53 in magnitude (most times and amounts) written as
/// Python's repr and orjson both write it, `1767225600.0`, with its sign already
/// written: every such integer is exact, so its shortest digits are all of its
/// digits, and below 1e16 neither switches to an exponent. False for any other value.
fn push_whole(x: f64, out: &mut String) -> bool {
    let magnitude = x.abs();
    if magnitude >= 9_007_199_254_740_992.0 || magnitude.fract() != 0.0 {
        return false;
    }
    // Below 2**53: exact as an i64, written without the formatting machinery.
    out.push_str(decimal(magnitude as i64, &mut [0u8; 20]));
    out.push_str(".0");
    true
}

/// An integer in decimal (Python's `str(int)`), appended to `out`.
pub fn write_int(n: i64, out: &mut String) {
    out.push_str(decimal(n, &mut [0u8; 20]));
}

/// `n` in decimal, as Python's `str(int)`, written at the end of `buf`.
pub fn decimal(n: i64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        if let Some(slot) = buf.get_mut(at) {
            *slot = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        if let Some(slot) = buf.get_mut(at) {
            *slot = b'-';
        }
    }
    // 19 digits and a sign at most: `at` stays in the buffer, and the bytes are ASCII.
    std::str::from_utf8(buf.get(at..).unwrap_or_default()).unwrap_or_default()
}

/// `n` (< 10^width) in `width` digits, zeros in front, appended to `out`.
fn push_padded(n: u32, width: u32, out: &mut String) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
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
    // A whole number below 10^6 is written as the integer it is (six significant
    // digits hold it exactly, and 'g' drops the point).
    if x.abs() < 1e6 && x == x.trunc() {
        write_int(x.abs() as i64, &mut out);
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
    match round_scaled(x, ndigits) {
        Some(r) => r,
        None => round_exact(x, ndigits),
    }
}

/// 10^0 ..= 10^22, every one exact in a double.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `py_round` without formatting, for 0 <= `ndigits` <= 22 where `x * 10^ndigits` is
/// below 2^52 and not within its rounding error of a tie (None otherwise): k, the
/// integer nearest that product, is then the one nearest the exact `x * 10^ndigits`,
/// so the decimal Python rounds to is `k * 10^-ndigits`, and `k / 10^ndigits` (one IEEE
/// division of two exact values) is the double nearest it, which Python reads back.
fn round_scaled(x: f64, ndigits: i32) -> Option<f64> {
    let scale = *POW10.get(usize::try_from(ndigits).ok()?)?;
    let p = x * scale;
    // NaN and infinities are left to `round_exact`.
    if p.is_nan() || p.abs() >= 4_503_599_627_370_496.0 {
        return None;
    }
    let k = round_ties_even_small(p);
    // The product is off the exact one by at most half an ulp of p: under |p| * 2^-53,
    // or half the least subnormal. `p - k` is exact (Sterbenz).
    let error = p.abs() * f64::EPSILON + f64::MIN_POSITIVE;
    if (p - k).abs() + error >= 0.5 {
        return None;
    }
    Some(k / scale)
}

/// `x.round_ties_even()` for |x| < 2^52, with no call to the library's rint (the
/// processors this is built for by default have no rounding instruction): adding
/// 2^52 leaves no fraction bit, so the sum is rounded to an integer under the
/// default rounding, ties to even (2^52 is even), and taking 2^52 off again is exact.
/// The sign is x's, as rint gives -0.0 for a negative x that rounds to zero.
fn round_ties_even_small(x: f64) -> f64 {
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    let k = if x >= 0.0 { (x + TWO_52) - TWO_52 } else { (x - TWO_52) + TWO_52 };
    k.copysign(x)
}

/// `py_round` through exact decimal formatting, for every input.
fn round_exact(x: f64, ndigits: i32) -> f64 {
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
    push_finite(x, -5, 1, out);
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
    let mut frac = round_ties_even_small((t - int_part) * 1e6);
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
    let mut out = String::with_capacity(24);
    write_time(t, &mut out);
    out
}

/// `format_time`, appended to `out`.
pub fn write_time(t: f64, out: &mut String) {
    let Some(dt) = utc_from_timestamp(t) else {
        out.push_str("<invalid time ");
        write_py_repr(t, out);
        out.push('>');
        return;
    };
    // The year is within 1..=9999 (`utc_from_timestamp`).
    push_padded(dt.year as u32, 4, out);
    out.push('-');
    push_padded(dt.month, 2, out);
    out.push('-');
    push_padded(dt.day, 2, out);
    out.push('T');
    push_padded(dt.hour, 2, out);
    out.push(':');
    push_padded(dt.minute, 2, out);
    out.push(':');
    push_padded(dt.second, 2, out);
    if dt.microsecond != 0 {
        out.push('.');
        push_padded(dt.microsecond / 1_000, 3, out);
    }
    out.push('Z');
}

/// `datetime.fromtimestamp(t, UTC).date().isoformat()` (`YYYY-MM-DD`). Where
/// Python raises, returns `"<invalid time {repr}>"`.
pub fn format_date(t: f64) -> String {
    match utc_from_timestamp(t) {
        Some(dt) => format!("{:04}-{:02}-{:02}", dt.year, dt.month, dt.day),
        None => format!("<invalid time {}>", py_repr(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ties_even_small_is_rint() {
        let mut x = -5.0;
        while x <= 5.0 {
            for v in [x, x + 1e-9, x - 1e-9, x * 1e6, x * 1e14 + 0.5, 0.5 + x * 1e14 + 1.0] {
                let (ours, std) = (round_ties_even_small(v), v.round_ties_even());
                assert_eq!(ours.to_bits(), std.to_bits(), "{v}");
            }
            x += 0.125;
        }
        for v in [0.0, -0.0, 0.49999999999999994, -0.49999999999999994, 4_503_599_627_370_495.5] {
            assert_eq!(round_ties_even_small(v).to_bits(), v.round_ties_even().to_bits(), "{v}");
        }
    }

    #[test]
    fn decimal_is_str_of_int() {
        let mut buf = [0u8; 20];
        for n in [0, 1, 9, 10, 12, 10_000, -1, -10, i64::MAX, i64::MIN, i64::MIN + 1] {
            assert_eq!(decimal(n, &mut buf), n.to_string());
            let mut out = String::from("x");
            write_int(n, &mut out);
            assert_eq!(out, format!("x{n}"));
        }
    }

    /// The scaled path agrees with the exact one wherever it answers, near ties too.
    #[test]
    fn round_scaled_is_exact() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut answered = 0;
        for i in 0..400_000u32 {
            let r = next();
            let nd = (r % 24) as i32 - 1;
            let x = match i % 4 {
                // any bits
                0 => f64::from_bits(next()),
                // a few decimals, as amounts and ratios are
                1 => {
                    let sign = if r & 1 == 0 { 1.0 } else { -1.0 };
                    sign * (r >> 20) as f64 / POW10[(r % 8) as usize]
                }
                // ties and their neighbours: (k + 1/2) / 10^nd, a few ulps either way
                2 => {
                    let scale = POW10[(nd.max(0) as usize).min(22)];
                    let tie = ((r >> 24) % 1_000_000) as f64 + 0.5;
                    let bits = (tie / scale).to_bits();
                    f64::from_bits(bits.wrapping_add(next() % 7).wrapping_sub(3))
                }
                // magnitudes around 2^52 / 10^nd
                _ => {
                    let scale = POW10[(nd.max(0) as usize).min(22)];
                    4_503_599_627_370_496.0 / scale * (0.5 + (r >> 11) as f64 / (1u64 << 53) as f64)
                }
            };
            let exact = round_exact(x, nd);
            if let Some(fast) = round_scaled(x, nd) {
                answered += 1;
                assert_eq!(fast.to_bits(), exact.to_bits(), "round({x:?}, {nd})");
            }
            assert_eq!(py_round(x, nd).to_bits(), exact.to_bits(), "round({x:?}, {nd})");
        }
        assert!(answered > 100_000, "{answered}");
    }
}
