//! Why a user stands where they stand: a read-only view of a state under a policy, for
//! customer service (`closure-monitor explain`, the worker's `/users/{id}`).
//!
//! The view is taken at the user's clock (the event time up to which the engine has
//! evaluated them), with the same observations the rules decide on (`core::observe`):
//! every rule's observed value against its tiers, the notices running and when each
//! would act, the decision that set the status, and what would lift each restriction.
//! Nothing here changes a state or a decision.

use crate::core::{find_time, message, observe, shown, INQUIRY_WINDOW};
use crate::decisions::{Num, STATUSES};
use crate::events::DAY;
use crate::policy::*;
use crate::pyfmt::{format_date, format_time};
use crate::state::*;
use serde_json::{json, Map, Value};

fn num(n: Num) -> Value {
    match n {
        Num::Int(i) => json!(i),
        Num::Float(f) => json!(f),
    }
}

fn text(n: Num) -> String {
    let mut s = String::new();
    n.write_py(&mut s);
    s
}

fn time(t: Option<f64>) -> Value {
    t.map_or(Value::Null, |t| Value::String(format_time(t)))
}

fn hit(rule: &Rule, x: f64, threshold: f64) -> bool {
    if rule.below {
        x < threshold
    } else {
        x >= threshold
    }
}

/// The explanation of a state, as JSON (docs/customer-service.md describes each field).
pub fn explain(policy: &Policy, s: &UserState) -> Value {
    let t = s.clock;
    let pending = &s.adverse().pending;
    let announced = &s.adverse().announced;
    let mut rules = Vec::with_capacity(policy.rules.len());
    let mut notices = Vec::new();
    let mut crossed_rules: Vec<(String, Option<f64>)> = Vec::new();
    for rule in &policy.rules {
        let observed = observe(policy, rule, s, t);
        let x = observed.map(Num::as_f64);
        let mut tiers = Vec::with_capacity(rule.tiers.len());
        let mut strictest: Option<&Tier> = None;
        for (i, tier) in rule.tiers.iter().enumerate() {
            let crossed = x.is_some_and(|x| hit(rule, x, tier.threshold));
            if crossed {
                strictest = Some(tier);
            }
            let since = find_time(pending, &tier.key);
            let named = since.is_some()
                && find_time(announced, &tier.key) == since;
            let acts_at = since.map(|since| since + tier.notice);
            // A notice still running (one that ran out acted, or was weaker than the
            // status it found).
            if let (Some(since), Some(acts_at)) = (since, acts_at.filter(|at| *at > t)) {
                notices.push(json!({
                    "rule": rule.name(),
                    "tier": i,
                    "action": ACTIONS.get(usize::from(tier.rank)).copied().unwrap_or("warn"),
                    "limit_factor": tier.limit_factor,
                    "since": format_time(since),
                    "acts_at": format_time(acts_at),
                    "announced": named,
                }));
            }
            tiers.push(json!({
                "threshold": num(shown(tier.threshold)),
                "action": ACTIONS.get(usize::from(tier.rank)).copied().unwrap_or("warn"),
                "notice_days": tier.notice / DAY,
                "limit_factor": tier.limit_factor,
                "crossed": crossed,
                "notice_since": time(since),
                "acts_at": time(acts_at),
            }));
        }
        let window = py_int(rule.window / DAY);
        let first = rule.tiers.first().map_or(0.0, |t| t.threshold);
        // The reason a decision would give, for a crossed rule (at its strictest tier).
        let summary = match (observed, strictest) {
            (Some(o), Some(tier)) => Some(message(rule.code, o, shown(tier.threshold), window)),
            _ => None,
        };
        let mut entry = Map::new();
        entry.insert("code".into(), json!(rule.name()));
        entry.insert("observed".into(), observed.map_or(Value::Null, num));
        entry.insert("comparison".into(), json!(if rule.below { "below" } else { "at_or_above" }));
        entry.insert("window_days".into(), if rule.window > 0.0 { json!(rule.window / DAY) } else { Value::Null });
        entry.insert("crossed".into(), json!(strictest.is_some()));
        entry.insert("message".into(), summary.map_or(Value::Null, Value::String));
        entry.insert("tiers".into(), Value::Array(tiers));
        if strictest.is_some() {
            let (clears, at) = clears(policy, rule, s, t, first);
            entry.insert("clears".into(), json!(clears));
            entry.insert("clears_at".into(), time(at));
            crossed_rules.push((format!("{}: {}", rule.name(), clears), at));
        }
        rules.push(Value::Object(entry));
    }
    let status = STATUSES.get(usize::from(s.status)).copied().unwrap_or("active");
    let lift = lift(policy, s, &crossed_rules, &notices);
    let set_by = match (&s.adverse().adverse_id, s.status) {
        (Some(id), 1..) => json!({"decision_id": id, "reasons": s.adverse().adverse_codes}),
        _ => Value::Null,
    };
    json!({
        "user_id": s.user_id.as_str(),
        "as_of": format_time(t),
        "policy_version": &*policy.version,
        "status": status,
        "limit_factor": if s.status == 2 { json!(s.limit_factor) } else if s.status == 3 { json!(0.0) } else { json!(1.0) },
        "set_by": set_by,
        "first_seen": format_time(s.first_seen),
        "clear_since": time(s.clear_since.get().filter(|_| s.status >= 2)),
        "cooling_off_days": policy.cooling_off / DAY,
        "next_review": time(s.deadline),
        "held_until": time(s.hold_until.get()),
        "rules": rules,
        "notices": notices,
        "lift": lift,
    })
}

/// What would clear a crossed rule (bring it under its mildest tier), and when it clears
/// by itself with nothing new (a window sliding past), if it does.
fn clears(policy: &Policy, rule: &Rule, s: &UserState, t: f64, first: f64) -> (String, Option<f64>) {
    let limit = text(shown(first));
    match rule.code {
        OVERDUE => {
            let mut owed: Vec<String> = s
                .ledger
                .iter()
                .filter(|(_, i)| !i.is_paid() && (i.days_past_due(t) as f64) >= first)
                .map(|(k, i)| {
                    let days = i.days_past_due(t);
                    let s = if days == 1 { "" } else { "s" };
                    format!("{} (due {}, {days} day{s} past due)", k.as_str(), format_date(i.due))
                })
                .collect();
            owed.sort();
            (format!("pay the installments {limit} or more days past due: {}", owed.join(", ")), None)
        }
        REPEATED_LATENESS => {
            let since = t - rule.window;
            let mut leaving: Vec<f64> = s
                .ledger
                .iter()
                .filter(|(_, i)| i.due > since && i.days_past_due(t) >= policy.late_after_days)
                .map(|(_, i)| i.due + rule.window)
                .collect();
            leaving.sort_by(f64::total_cmp);
            let at = fewer_than(first, &mut leaving.iter().map(|at| (*at, 1.0)));
            let when = at.map_or(String::new(), |at| format!(", on {} at the latest", format_date(at)));
            (format!("when fewer than {limit} late installments fall in the last {} days{when}", py_int(rule.window / DAY)), at)
        }
        SCORE_BELOW_MIN => (format!("when a credit report shows a score of at least {limit}"), None),
        SCORE_DROP => {
            let score = s.bureau_value(CREDIT_SCORE).map_or(0.0, Num::as_f64);
            let since = t - rule.window;
            let at = s
                .scores
                .iter()
                .filter(|p| p.0 > since && p.1 as f64 - score >= first)
                .map(|p| p.0 + rule.window)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            let when = at.map_or(String::new(), |at| format!(", or on {} when the high leaves the window", format_date(at)));
            (format!("when the score comes back to within {limit} points of its {}-day high{when}", py_int(rule.window / DAY)), at)
        }
        MULTI_LENDER => (format!("when a credit report shows open credit at fewer than {limit} institutions"), None),
        APPLICATION_BURST => {
            let since = t - rule.window;
            let mut leaving: Vec<(f64, f64)> = s
                .applications
                .iter()
                .filter(|at| since < **at && **at <= t)
                .map(|at| (at + rule.window, 1.0))
                .collect();
            if let (Some(reported), Some(v)) = (s.bureau_at(HARD_INQUIRIES), s.bureau_value(HARD_INQUIRIES)) {
                if t < reported + INQUIRY_WINDOW {
                    leaving.push((reported + INQUIRY_WINDOW, py_int(v.as_f64()) as f64));
                }
            }
            leaving.sort_by(|a, b| a.0.total_cmp(&b.0));
            let at = fewer_than(first, &mut leaving.iter().copied());
            let when = at.map_or(String::new(), |at| format!(", on {} with no new ones", format_date(at)));
            (format!("when applications and inquiries in {} days fall below {limit}{when}", py_int(rule.window / DAY)), at)
        }
        EXTERNAL_DELINQUENCY => (format!("when a credit report shows fewer than {limit} overdue accounts at other lenders"), None),
        OVER_LEVERAGE => (format!("when a credit report shows debt under {limit} times annual income"), None),
        _ => ("with a drawdown".to_owned(), None),
    }
}

/// When a count made of (leaves at, weight) items, all counted now, falls below `limit`.
fn fewer_than(limit: f64, items: &mut dyn Iterator<Item = (f64, f64)>) -> Option<f64> {
    let items: Vec<(f64, f64)> = items.collect();
    let mut count: f64 = items.iter().map(|i| i.1).sum();
    for (at, weight) in items {
        count -= weight;
        if count < limit {
            return Some(at);
        }
    }
    None
}

/// What would lift the user's restriction, in sentences.
fn lift(policy: &Policy, s: &UserState, crossed: &[(String, Option<f64>)], notices: &[Value]) -> Vec<String> {
    let cooling = py_int(policy.cooling_off / DAY);
    let mut out = Vec::new();
    if let Some(until) = s.hold_until.get() {
        out.push(format!(
            "Automatic action is on hold until {} (an appeal under review): no warning, \
             downgrade or closure is taken before then.",
            format_time(until)
        ));
    }
    match s.status {
        0 if notices.is_empty() => {}
        0 | 1 => {
            out.push("The warning lapses, and nothing is taken, as soon as none of these conditions holds:".to_owned());
            out.extend(crossed.iter().map(|(c, _)| c.clone()));
        }
        _ => match s.clear_since.get() {
            Some(since) if crossed.is_empty() => out.push(format!(
                "No adverse condition since {}: the full line is restored on {} if none comes back before then ({cooling}-day cooling-off).",
                format_date(since),
                format_date(since + policy.cooling_off),
            )),
            _ => {
                out.push(format!(
                    "The full line is restored {cooling} days after every one of these conditions clears:"
                ));
                out.extend(crossed.iter().map(|(c, _)| c.clone()));
            }
        },
    }
    for n in notices {
        let action = n.get("action").and_then(Value::as_str).unwrap_or("");
        let rule = n.get("rule").and_then(Value::as_str).unwrap_or("");
        let at = n.get("acts_at").and_then(Value::as_str).unwrap_or("");
        let stronger = match s.status {
            2 => action == "close" || action == "downgrade",
            3 => false,
            _ => action != "warn",
        };
        if stronger {
            out.push(format!("If {rule} still holds at {at}, the line is {}.", past(action)));
        }
    }
    out
}

fn past(action: &str) -> &'static str {
    match action {
        "close" => "closed",
        "downgrade" => "downgraded",
        _ => "warned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_fall_below_the_limit_as_items_leave() {
        let mut items = [(10.0, 1.0), (20.0, 1.0), (30.0, 1.0)].into_iter();
        assert_eq!(fewer_than(2.0, &mut items), Some(20.0));
        let mut none = std::iter::empty();
        assert_eq!(fewer_than(1.0, &mut none), None);
        let mut weighted = [(5.0, 3.0)].into_iter();
        assert_eq!(fewer_than(1.0, &mut weighted), Some(5.0));
    }
}
