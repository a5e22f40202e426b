//! `codec::decode` on any bytes: never a panic; an event it gives holds what the
//! checks promise, a rejection names one of the known reasons.
#![no_main]

use _engine::codec::{decode, MAX_AMOUNT, MAX_RECORD_BYTES, REJECT_REASONS};
use _engine::events::{Event, APPLICATION_KINDS, EVENT_TYPES, OVERRIDE_ACTIONS, PRODUCTS};
use libfuzzer_sys::fuzz_target;

fn amount(x: f64, what: &str) {
    assert!(x.is_finite() && (0.0..=MAX_AMOUNT).contains(&x), "{what} = {x}");
}

fn text(s: &str, limit: usize, what: &str) {
    let n = s.chars().count();
    assert!((1..=limit).contains(&n), "{what}: {n} characters");
}

fn time(t: f64, what: &str) {
    assert!(t.is_finite(), "{what} = {t}");
}

fn count(value: Option<i32>, low: i32, high: i32, what: &str) {
    if let Some(v) = value {
        assert!((low..=high).contains(&v), "{what} = {v}");
    }
}

fuzz_target!(|raw: &[u8]| {
    match decode(raw) {
        Ok(event) => {
            assert!(raw.len() <= MAX_RECORD_BYTES && std::str::from_utf8(raw).is_ok());
            assert!(EVENT_TYPES.contains(&event.event_type()));
            time(event.occurred_at(), "occurred_at");
            text(event.event_id(), 128, "event_id");
            text(event.user_id(), 64, "user_id");
            match &event {
                Event::Repayment(r) => {
                    text(&r.loan_id, 128, "loan_id");
                    assert!((1..=10_000).contains(&r.installment), "installment = {}", r.installment);
                    assert!(PRODUCTS.contains(&r.product));
                    // 00:00 UTC of a date.
                    assert!(
                        r.due_date.is_finite() && r.due_date % 86_400.0 == 0.0,
                        "due_date = {}",
                        r.due_date
                    );
                    amount(r.amount_due, "amount_due");
                    amount(r.amount_paid, "amount_paid");
                    if let Some(t) = r.paid_at {
                        time(t, "paid_at");
                    }
                }
                Event::Application(a) => {
                    text(&a.application_id, 128, "application_id");
                    assert!(PRODUCTS.contains(&a.product));
                    assert!(APPLICATION_KINDS.contains(&a.kind));
                    amount(a.requested_amount, "requested_amount");
                    assert!(a.requested_amount > 0.0);
                    if let Some(c) = &a.channel {
                        assert!(c.chars().count() <= 64);
                    }
                }
                Event::CreditReport(c) => {
                    text(&c.bureau, 64, "bureau");
                    count(c.credit_score, 300, 950, "credit_score");
                    count(c.open_lenders, 0, 10_000, "open_lenders");
                    count(c.hard_inquiries_30d, 0, 10_000, "hard_inquiries_30d");
                    count(c.delinquent_accounts, 0, 10_000, "delinquent_accounts");
                    if let Some(x) = c.total_debt {
                        amount(x, "total_debt");
                    }
                    if let Some(x) = c.monthly_income {
                        amount(x, "monthly_income");
                    }
                }
                Event::Override(o) => {
                    assert!(OVERRIDE_ACTIONS.contains(&o.action));
                    text(&o.operator, 128, "operator");
                    text(&o.reason, 500, "reason");
                    match o.until {
                        Some(t) => {
                            time(t, "until");
                            assert!(t > o.occurred_at && o.action != "release");
                        }
                        None => assert!(o.action != "hold"),
                    }
                    assert_eq!(&*o.raw, raw);
                }
                Event::Policy(_) => panic!("the decoder made a policy switch"),
            }
        }
        Err(rejection) => {
            assert!(REJECT_REASONS.contains(&rejection.reason), "{rejection:?}");
            assert!(!rejection.detail.is_empty(), "{rejection:?}");
            // A rejection names the event type only once the record named a known one.
            if let Some(kind) = rejection.event_type {
                assert!(EVENT_TYPES.contains(&kind));
                assert!(matches!(
                    rejection.reason,
                    "unsupported_version" | "schema" | "key_mismatch" | "unknown_user"
                ));
            }
            let _ = rejection.to_string();
        }
    }
});
