//! The codec against Python's: every record of `tests/data/codec.jsonl` (written by
//! `tests/gen_codec.py` with `streams.codec`) decoded here and compared, the event's
//! fields exactly (floats by their bits) or the rejection's reason, event_type and
//! detail (the detail of `not_json` excepted: the parser's own text, not orjson's).

use std::collections::HashMap;

use _engine::codec::{decode, parse_date, parse_time, Rejection, MAX_RECORD_BYTES, REJECT_REASONS};
use _engine::events::Event;
use base64::Engine as _;
use serde_json::{json, Map, Value};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/codec.jsonl");

/// A record's bytes as the fixture writes them: a string (its UTF-8) or a list of
/// pieces: a string, {"b64": ...}, {"repeat": piece, "times": n}, or [case, from, to]
/// (bytes of an earlier case's record).
fn record_bytes(raw: &Value, earlier: &HashMap<String, Vec<u8>>, out: &mut Vec<u8>) {
    match raw {
        Value::String(text) => out.extend_from_slice(text.as_bytes()),
        Value::Array(items) => match items.as_slice() {
            [Value::String(case), Value::Number(from), Value::Number(to)] => {
                let bytes = &earlier[case.as_str()];
                let at = |n: &serde_json::Number| usize::try_from(n.as_u64().unwrap()).unwrap();
                out.extend_from_slice(&bytes[at(from)..at(to)]);
            }
            _ => {
                for item in items {
                    record_bytes(item, earlier, out);
                }
            }
        },
        Value::Object(piece) => {
            if let Some(text) = piece.get("b64").and_then(Value::as_str) {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .expect("base64");
                out.extend_from_slice(&bytes);
            } else {
                let mut unit = Vec::new();
                record_bytes(&piece["repeat"], earlier, &mut unit);
                let times = piece["times"].as_u64().expect("times");
                for _ in 0..times {
                    out.extend_from_slice(&unit);
                }
            }
        }
        _ => panic!("not a record: {raw}"),
    }
}

fn bits(x: f64) -> Value {
    Value::String(format!("0x{:016x}", x.to_bits()))
}

fn opt_bits(x: Option<f64>) -> Value {
    x.map_or(Value::Null, bits)
}

/// The result as the fixture writes it: what `streams._engine.decode_fields` gives, the
/// floats as their bits.
fn result_json(result: &Result<Event, Rejection>) -> Value {
    match result {
        Err(r) => json!(["rejected", r.reason, r.detail, r.event_type]),
        Ok(Event::Repayment(e)) => json!([
            "repayment",
            e.event_id,
            e.user_id,
            bits(e.occurred_at),
            e.loan_id,
            e.installment,
            e.product,
            bits(e.due_date),
            bits(e.amount_due),
            bits(e.amount_paid),
            opt_bits(e.paid_at),
            e.region,
        ]),
        Ok(Event::Application(e)) => json!([
            "application",
            e.event_id,
            e.user_id,
            bits(e.occurred_at),
            e.application_id,
            e.product,
            e.kind,
            bits(e.requested_amount),
            e.channel,
            e.region,
        ]),
        Ok(Event::CreditReport(e)) => json!([
            "credit_report",
            e.event_id,
            e.user_id,
            bits(e.occurred_at),
            e.bureau,
            e.credit_score,
            e.open_lenders,
            e.hard_inquiries_30d,
            e.delinquent_accounts,
            opt_bits(e.total_debt),
            opt_bits(e.monthly_income),
            e.region,
        ]),
        Ok(Event::Override(e)) => json!([
            "override",
            e.event_id,
            e.user_id,
            bits(e.occurred_at),
            e.action,
            e.operator,
            e.reason,
            opt_bits(e.until),
            e.region,
        ]),
        Ok(Event::Policy(_)) => panic!("the decoder made a policy switch"),
    }
}

fn parsed_json(result: Result<f64, String>) -> Value {
    match result {
        Ok(x) => json!({"ok": bits(x)}),
        Err(e) => json!({"err": e}),
    }
}

/// `got` and `want` with a not_json detail blanked, in both.
fn comparable(mut got: Value, mut want: Value) -> (Value, Value) {
    let not_json = |v: &Value| v[0] == "rejected" && v[1] == "not_json";
    if not_json(&got) && not_json(&want) {
        let detail = got[2].as_str().unwrap_or("").to_owned();
        assert!(
            detail.chars().count() <= 200,
            "not_json detail over 200 characters: {detail}"
        );
        got[2] = Value::Null;
        want[2] = Value::Null;
    }
    (got, want)
}

fn short(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let shown: String = text.chars().take(300).collect();
    if shown.len() < text.len() {
        format!("{shown:?}... ({} bytes)", raw.len())
    } else {
        format!("{shown:?}")
    }
}

#[test]
fn codec_matches_python() {
    // CODEC_FIXTURE: another file gen_codec.py wrote (`--output`), e.g. a larger run.
    let path = std::env::var("CODEC_FIXTURE").unwrap_or_else(|_| FIXTURE.to_owned());
    let data = std::fs::read_to_string(&path).expect("the fixture: run tests/gen_codec.py");
    let mut counts: Map<String, Value> = Map::new();
    let mut mismatches = Vec::new();
    let mut records: HashMap<String, Vec<u8>> = HashMap::new();
    let mut total = 0;
    for line in data.lines() {
        let case: Value = serde_json::from_str(line).expect("a fixture line");
        let name = case["case"].as_str().unwrap_or("?").to_owned();
        let want = case["want"].clone();
        total += 1;
        let (got, want, input) = if let Some(value) = case.get("time").and_then(Value::as_str) {
            (
                parsed_json(parse_time(value)),
                want,
                format!("time {value:?}"),
            )
        } else if let Some(value) = case.get("date").and_then(Value::as_str) {
            (
                parsed_json(parse_date(value)),
                want,
                format!("date {value:?}"),
            )
        } else {
            let mut raw = Vec::new();
            record_bytes(&case["raw"], &records, &mut raw);
            let result = decode(&raw);
            if let Err(r) = &result {
                assert!(
                    REJECT_REASONS.contains(&r.reason),
                    "{name}: reason {}",
                    r.reason
                );
            }
            let (got, want) = comparable(result_json(&result), want);
            let input = short(&raw);
            records.insert(name.clone(), raw);
            (got, want, input)
        };
        let kind = name.split('/').next().unwrap_or("?").to_owned();
        let key = if got == want {
            format!("{kind}: pass")
        } else {
            format!("{kind}: FAIL")
        };
        let count = counts.entry(key).or_insert(json!(0));
        *count = json!(count.as_u64().unwrap_or(0) + 1);
        if got != want {
            mismatches.push(format!(
                "{name}\n  input: {input}\n  want:  {want}\n  got:   {got}"
            ));
        }
    }
    println!("{total} cases");
    for (key, count) in &counts {
        println!("  {key}: {count}");
    }
    for m in mismatches.iter().take(30) {
        println!("{m}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {total} cases differ from Python (first ones above)",
        mismatches.len()
    );
    assert!(total > 2000, "the fixture has only {total} cases");
}

#[test]
fn size_limit_comes_first() {
    let junk = vec![0xFFu8; MAX_RECORD_BYTES + 1];
    let r = decode(&junk).expect_err("oversize");
    assert_eq!(
        (r.reason, r.detail.as_str()),
        ("oversize", "record of 65537 bytes (limit 65536)")
    );
    assert_eq!(
        r.to_string(),
        "oversize: record of 65537 bytes (limit 65536)"
    );
}

#[test]
fn never_panics_on_damaged_bytes() {
    // A cheap deterministic fuzz over short inputs built from JSON-ish bytes.
    let alphabet = b"{}[],:\"\\ 0123456789.eE+-tfnul\xff\xc3\xa9\x00u";
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200_000 {
        let len = (next() % 24) as usize;
        let raw: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let _ = decode(&raw);
    }
}

/// Decoding time of generator-like records, in release mode:
/// `cargo test --release --test codec -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing() {
    let records: [&[u8]; 3] = [
        br#"{"event_id":"u000206-5","event_type":"repayment","user_id":"u000206","occurred_at":"2026-01-04T07:20:30Z","schema_version":1,"loan_id":"u000206-l1","installment":3,"product":"cash_loan","due_date":"2026-04-04","amount_due":5294.67,"amount_paid":0.0,"paid_at":null}"#,
        br#"{"event_id":"u000206-2","event_type":"application","user_id":"u000206","occurred_at":"2026-01-04T07:18:15Z","schema_version":1,"application_id":"u000206-a1","product":"cash_loan","kind":"drawdown","requested_amount":15200,"channel":"app"}"#,
        br#"{"event_id":"u000049-1","event_type":"credit_report","user_id":"u000049","occurred_at":"2026-01-01T01:09:57Z","schema_version":1,"bureau":"baihang","credit_score":738,"open_lenders":2,"hard_inquiries_30d":0,"delinquent_accounts":0,"total_debt":55563.31,"monthly_income":18510.0}"#,
    ];
    for raw in records {
        assert!(decode(raw).is_ok());
        let n = 1_000_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(decode(std::hint::black_box(raw)).is_ok());
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(n);
        println!("{} bytes: {ns:.0} ns per record", raw.len());
    }
}
