//! `src/pyfmt.rs` against Python itself: every row of `tests/data/pyfmt.tsv`
//! (written by `tests/gen_pyfmt.py` with CPython 3.11 and orjson 3.13).
//! `PYFMT_FIXTURE=/path/to.tsv` checks another fixture, e.g. a bigger one.

use _engine::pyfmt::*;

fn fixture() -> (String, String) {
    let path = std::env::var("PYFMT_FIXTURE")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pyfmt.tsv").into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (path, text)
}

fn float(hex: &str) -> f64 {
    f64::from_bits(u64::from_str_radix(hex, 16).unwrap_or_else(|e| panic!("bad bits {hex}: {e}")))
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

fn json_float(x: f64) -> String {
    let mut out = String::new();
    write_json_float(x, &mut out);
    out
}

/// What the Rust side gives for one row, in the fixture's notation, and a
/// readable form of the input for the report.
fn run(function: &str, input: &str) -> (String, String) {
    match function {
        "repr" => (py_repr(float(input)), format!("{:?}", float(input))),
        "g" => (py_g(float(input)), format!("{:?}", float(input))),
        "json_float" => (json_float(float(input)), format!("{:?}", float(input))),
        "time" => (format_time(float(input)), format!("{:?}", float(input))),
        "date" => (format_date(float(input)), format!("{:?}", float(input))),
        "round" => {
            let (x, nd) = input.split_once(':').expect("bits:ndigits");
            let nd: i32 = nd.parse().expect("ndigits");
            let r = py_round(float(x), nd);
            (
                format!("{:016x}", r.to_bits()),
                format!("round({:?}, {nd}) = {r:?}", float(x)),
            )
        }
        "json_str" => {
            let s = String::from_utf8(unhex(input)).expect("utf-8 input");
            let mut out = String::new();
            write_json_str(&s, &mut out);
            let hex: String = out.bytes().map(|b| format!("{b:02x}")).collect();
            (hex, format!("{s:?} -> {out}"))
        }
        "days_to_civil" => {
            let (y, m, d) = days_to_civil(input.parse().expect("days"));
            (format!("{y}-{m}-{d}"), input.to_owned())
        }
        "civil_to_days" => {
            let parts: Vec<&str> = input.split('-').collect();
            let [y, m, d] = parts[..] else {
                panic!("bad date {input}")
            };
            let days = civil_to_days(
                y.parse().expect("y"),
                m.parse().expect("m"),
                d.parse().expect("d"),
            );
            (days.to_string(), input.to_owned())
        }
        other => panic!("unknown function {other}"),
    }
}

#[test]
fn matches_python() {
    let (path, text) = fixture();
    let mut checked = 0usize;
    let mut errors_only = 0usize;
    let mut failures = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split('\t');
        let (Some(function), Some(input), Some(expected)) = (cols.next(), cols.next(), cols.next())
        else {
            panic!("{path}:{}: not 3 columns: {line:?}", lineno + 1);
        };
        let (got, shown) = run(function, input);
        checked += 1;
        if expected == "ERROR" {
            // Python raises: times say so, other functions only must not panic.
            errors_only += 1;
            if matches!(function, "time" | "date") && !got.starts_with("<invalid time") {
                failures.push(format!(
                    "{path}:{}: {function}({shown}) [{input}]\n    python: raises\n    rust:   {got}",
                    lineno + 1
                ));
            }
            continue;
        }
        if got != expected {
            failures.push(format!(
                "{path}:{}: {function}({shown}) [{input}]\n    python: {expected}\n    rust:   {got}",
                lineno + 1
            ));
        }
    }
    assert!(checked > 1000, "{path}: only {checked} rows");
    if !failures.is_empty() {
        let shown: Vec<&str> = failures.iter().take(30).map(String::as_str).collect();
        panic!(
            "{} of {checked} rows differ from Python (first {}):\n{}",
            failures.len(),
            shown.len(),
            shown.join("\n")
        );
    }
    eprintln!("{checked} rows match Python ({errors_only} where Python raises)");
}

/// The calendar helpers agree with each other far beyond datetime's range.
#[test]
fn civil_round_trip() {
    let mut days = -1_000_000_000i64;
    while days < 1_000_000_000 {
        let (y, m, d) = days_to_civil(days);
        assert!(
            (1..=12).contains(&m) && (1..=31).contains(&d),
            "{days}: {y}-{m}-{d}"
        );
        assert_eq!(civil_to_days(y, m, d), days, "{y}-{m}-{d}");
        days += 9_973;
    }
    for days in -800_000..3_000_000 {
        let (y, m, d) = days_to_civil(days);
        assert_eq!(civil_to_days(y, m, d), days, "{y}-{m}-{d}");
    }
}

/// Nothing panics, whatever the input.
#[test]
fn total_on_odd_inputs() {
    let odd = [
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        -5e-324,
        0.0,
        -0.0,
        1e12,
        -1e12,
        1e12 + 1.0,
        9.3e18,
        -9.3e18,
        1e19,
        -1e300,
    ];
    for &x in &odd {
        let _ = (
            py_repr(x),
            py_g(x),
            format_time(x),
            format_date(x),
            json_float(x),
        );
        for nd in [
            -400,
            -309,
            -308,
            -30,
            -1,
            0,
            3,
            6,
            17,
            323,
            324,
            i32::MIN,
            i32::MAX,
        ] {
            let _ = py_round(x, nd);
        }
    }
    for days in [i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 719_468] {
        let _ = days_to_civil(days);
    }
    for (y, m, d) in [
        (i64::MIN, 0, 0),
        (i64::MAX, u32::MAX, u32::MAX),
        (0, 13, 40),
    ] {
        let _ = civil_to_days(y, m, d);
    }
    assert_eq!(json_float(f64::NAN), "null");
    assert_eq!(json_float(f64::NEG_INFINITY), "null");
}
