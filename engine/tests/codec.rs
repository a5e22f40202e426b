//! The codec against Python's: every record of `tests/data/codec.jsonl` (written by
//! `tests/gen_codec.py` with `streams.codec`) decoded here and compared, the event's
//! fields exactly (floats by their bits) or the rejection's reason, event_type and
//! detail (the detail of `not_json` excepted: orjson's wording is its own).

use _engine::codec::{decode, parse_date, parse_time, Rejection, MAX_RECORD_BYTES, REJECT_REASONS};
use _engine::events::Event;
use serde_json::{json, Map, Value};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/codec.jsonl");

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut acc = 0u32;
        for &c in &data {
            acc = acc << 6 | value(c);
        }
        acc <<= 6 * (4 - data.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..data.len()]);
    }
    out
}

fn bits(x: f64) -> Value {
    Value::String(format!("0x{:016x}", x.to_bits()))
}

fn opt_bits(x: Option<f64>) -> Value {
    x.map_or(Value::Null, bits)
}

/// The result as the fixture writes it.
fn result_json(result: &Result<Event, Rejection>) -> Value {
    let (event, fields) = match result {
        Err(r) => {
            return json!({"reason": r.reason, "detail": r.detail, "event_type": r.event_type})
        }
        Ok(Event::Repayment(e)) => (
            "repayment",
            json!({
                "event_id": e.event_id, "user_id": e.user_id, "occurred_at": bits(e.occurred_at),
                "loan_id": e.loan_id, "installment": e.installment, "product": e.product,
                "due_date": bits(e.due_date), "amount_due": bits(e.amount_due),
                "amount_paid": bits(e.amount_paid), "paid_at": opt_bits(e.paid_at),
            }),
        ),
        Ok(Event::Application(e)) => (
            "application",
            json!({
                "event_id": e.event_id, "user_id": e.user_id, "occurred_at": bits(e.occurred_at),
                "application_id": e.application_id, "product": e.product, "kind": e.kind,
                "requested_amount": bits(e.requested_amount), "channel": e.channel,
            }),
        ),
        Ok(Event::CreditReport(e)) => (
            "credit_report",
            json!({
                "event_id": e.event_id, "user_id": e.user_id, "occurred_at": bits(e.occurred_at),
                "bureau": e.bureau, "credit_score": e.credit_score, "open_lenders": e.open_lenders,
                "hard_inquiries_30d": e.hard_inquiries_30d,
                "delinquent_accounts": e.delinquent_accounts, "total_debt": opt_bits(e.total_debt),
                "monthly_income": opt_bits(e.monthly_income),
            }),
        ),
    };
    json!({"event": event, "fields": fields})
}

fn parsed_json(result: Result<f64, String>) -> Value {
    match result {
        Ok(x) => json!({"ok": bits(x)}),
        Err(e) => json!({"err": e}),
    }
}

/// `want` with a not_json detail blanked, in both.
fn comparable(mut got: Value, mut want: Value) -> (Value, Value) {
    if want.get("reason") == Some(&json!("not_json"))
        && got.get("reason") == Some(&json!("not_json"))
    {
        let detail = got
            .get("detail")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        assert!(
            detail.chars().count() <= 200,
            "not_json detail over 200 characters: {detail}"
        );
        if let (Some(g), Some(w)) = (got.as_object_mut(), want.as_object_mut()) {
            g.insert("detail".into(), Value::Null);
            w.insert("detail".into(), Value::Null);
        }
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
    let mut quirks = 0;
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
            let raw = base64_decode(case["raw"].as_str().expect("raw"));
            let result = decode(&raw);
            if let Err(r) = &result {
                assert!(
                    REJECT_REASONS.contains(&r.reason),
                    "{name}: reason {}",
                    r.reason
                );
            }
            if case.get("python").is_some() {
                quirks += 1;
            }
            let (got, want) = comparable(result_json(&result), want);
            (got, want, short(&raw))
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
    println!("{total} cases, {quirks} where Python's fast path differs from its full checks");
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
    assert!(total > 5000, "the fixture has only {total} cases");
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
