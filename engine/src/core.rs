//! The decision core: `step(policy, state, event) -> decisions`, the port of the Python
//! engine's core (`tests/oracle/core.py`, the oracle the tests check this against,
//! decision for decision and state for state).
//!
//! Everything runs in event time: before an event at t is applied, the user's deadlines
//! <= t fire first, each evaluated at its own time; a tick (the partition watermark)
//! fires them for users who send nothing; an event older than the user's clock is
//! applied at the clock; a tier with a notice first sends `warn` and acts only if its
//! condition still holds then; decisions are emitted only on transitions; a correction
//! of the repayment record a restriction rested on restores with DATA_CORRECTION; a
//! restricted user with no adverse condition for the cooling-off is restored (CURED).

use crate::decisions::{decision_id, Decision, Num, Reason, STATUSES};
use crate::events::{Event, Override, DAY};
use crate::policy::*;
use crate::pyfmt::{decimal, py_g, py_round, write_int, write_time};
use crate::state::*;
use std::sync::Arc;

const LEDGER_RETENTION: f64 = 90.0 * DAY;
const MAX_REASONS: usize = 4;
/// hard_inquiries_30d counts for 30 days after its report.
pub(crate) const INQUIRY_WINDOW: f64 = 30.0 * DAY;
const LEVERAGE_CAP: f64 = 1e6;
const STATUS_ACTIVE: u8 = 0;

/// A ledger record lowered an installment's days past due below a mark.
struct Correction {
    installment: String,
    before: i64,
    after: i64,
}

#[derive(Clone, Copy)]
struct Finding {
    rule: usize,
    tier: usize,
    observed: Num,
    effective_at: f64,
}

/// Apply one new event (not a redelivery: `state.has_seen` is false) to a state,
/// firing the deadlines before it; the decisions are appended to `out`.
pub fn step_new(policy: &Policy, s: &mut UserState, event: &Event, out: &mut Vec<Decision>) {
    let t = event.occurred_at();
    fire(policy, s, t, out);
    let now = if s.clock > t { s.clock } else { t };
    let correction = match event {
        Event::Override(o) => {
            apply_override(policy, s, o, now, out);
            None
        }
        _ => apply(s, event, now, policy),
    };
    if let Some(region) = event.region() {
        if s.region.as_deref() != Some(region) {
            s.region = Some(ShortStr::new(region));
        }
    }
    s.see(event.event_id(), policy.dedupe_ids);
    evaluate(policy, s, now, Some(event.event_id()), correction, out);
}

/// A user under a policy switched to at `at`: their deadlines up to then (or their
/// clock, if later) fire, and they are judged at that time under the new policy, so
/// that its tiers apply from its time on, not from the user's next event.
pub fn review(policy: &Policy, s: &mut UserState, at: f64, out: &mut Vec<Decision>) {
    let now = if s.clock > at { s.clock } else { at };
    fire(policy, s, now, out);
    evaluate(policy, s, now, None, None, out);
}

/// Evaluate the user at each of its deadlines <= until, in order.
pub fn fire(policy: &Policy, s: &mut UserState, until: f64, out: &mut Vec<Decision>) {
    while let Some(deadline) = s.deadline {
        if deadline > until {
            break;
        }
        evaluate(policy, s, deadline, None, None, out);
    }
}

fn apply(s: &mut UserState, e: &Event, now: f64, policy: &Policy) -> Option<Correction> {
    match e {
        Event::Repayment(r) => {
            let t = r.occurred_at;
            // The key, "loan#n", is only built when it is stored or named.
            let mut digits = [0u8; 20];
            let n = decimal(r.installment, &mut digits);
            let key = || ShortStr::joined(&[&r.loan_id, "#", n]);
            let at = s.ledger.iter().position(|(k, _)| is_ledger_key(k.as_bytes(), &r.loan_id, n));
            let old = at.and_then(|i| s.ledger.get(i)).map(|(_, inst)| *inst);
            if let Some(old) = &old {
                if t < old.recorded_at {
                    return None; // superseded by a later record of the same installment
                }
            }
            let mut paid_at = r.paid_at;
            if paid_at.is_none() && r.amount_paid >= r.amount_due {
                paid_at = Some(t); // fully paid but no time given: paid when recorded
            }
            let new = Installment::new(t, r.due_date, r.amount_due, r.amount_paid, paid_at);
            let (before, after) = (
                old.as_ref().map(|o| o.days_past_due(now)),
                new.days_past_due(now),
            );
            match at.and_then(|i| s.ledger.get_mut(i)) {
                Some(slot) => slot.1 = new,
                None => {
                    reserve_tight(&mut s.ledger, 1);
                    s.ledger.push((key(), new));
                }
            }
            // A correction only when the new record puts the installment below a mark
            // (late, or an OVERDUE tier) the record it replaces had reached.
            if let Some(before) = before {
                if policy.marks_reached(after) < policy.marks_reached(before) {
                    let installment = key().as_str().to_owned();
                    return Some(Correction { installment, before, after });
                }
            }
            None
        }
        Event::Application(a) => {
            let t = a.occurred_at;
            let at = s.applications.partition_point(|x| *x <= t); // bisect.insort
            reserve_tight(&mut s.applications, 1);
            s.applications.insert(at, t);
            if a.kind == "drawdown" && s.last_drawdown.get().is_none_or(|d| t > d) {
                s.last_drawdown = OptTime::some(t);
            }
            None
        }
        Event::CreditReport(c) => {
            let t = c.occurred_at;
            let values = [
                c.credit_score.map(|v| Num::Int(v.into())),
                c.open_lenders.map(|v| Num::Int(v.into())),
                c.hard_inquiries_30d.map(|v| Num::Int(v.into())),
                c.delinquent_accounts.map(|v| Num::Int(v.into())),
                c.total_debt.map(Num::Float),
                c.monthly_income.map(Num::Float),
            ];
            for (field, value) in values.iter().enumerate() {
                let Some(value) = *value else { continue };
                let field = field as u8;
                if s.bureau.get(field).is_none_or(|(_, at)| t >= at) {
                    s.bureau.set(field, value, t);
                }
            }
            if let Some(score) = c.credit_score.map(i64::from) {
                add_score(s, t, score);
            }
            None
        }
        Event::Override(_) => None, // `apply_override`
        Event::Policy(_) => None,   // the partition's (`Partition::switch`)
    }
}

/// An operator's override at `now` (docs/design.md, "Overrides"): restore the user
/// (and hold, with `until`), hold automatic action until `until`, or release a hold.
/// Its decisions name the operator; `evaluate` follows as for every event.
fn apply_override(policy: &Policy, s: &mut UserState, o: &Override, now: f64, out: &mut Vec<Decision>) {
    let trigger = Some(o.event_id.as_str());
    let operator = || Some(o.operator.clone());
    match o.action {
        "restore" => {
            if s.status != STATUS_ACTIVE {
                let reason = Reason {
                    code: "OVERRIDE",
                    message: format!("restored by {}: {}", o.operator, o.reason),
                    observed: Num::Int(0),
                    threshold: Num::Int(0),
                };
                let mut d = restore(policy, s, now, trigger, reason, None);
                d.operator = operator();
                out.push(d);
            }
            if let Some(until) = o.until {
                hold(policy, s, o, until, now, out);
            }
        }
        "hold" => {
            if let Some(until) = o.until {
                hold(policy, s, o, until, now, out);
            }
        }
        _ => {
            if s.hold_until.get().is_some() {
                s.hold_until = OptTime::NONE;
                let reason = Reason {
                    code: "OVERRIDE",
                    message: format!("hold released by {}: {}", o.operator, o.reason),
                    observed: Num::Int(0),
                    threshold: Num::Int(0),
                };
                let status = STATUSES.get(usize::from(s.status)).copied().unwrap_or("active");
                let mut d = decide(policy, s, "release", status, now, trigger, vec![reason], None, None, None);
                d.operator = operator();
                out.push(d);
            }
        }
    }
}

/// Hold automatic action until `until`: the notices running are withdrawn (a fresh
/// one, with its warning, starts when the hold ends, if the condition still holds).
fn hold(policy: &Policy, s: &mut UserState, o: &Override, until: f64, now: f64, out: &mut Vec<Decision>) {
    s.hold_until = OptTime::some(until);
    if !s.adverse().pending.is_empty() || !s.adverse().announced.is_empty() {
        let adverse = s.adverse_mut();
        adverse.pending.clear();
        adverse.announced.clear();
    }
    let mut message = String::with_capacity(96);
    message.push_str("automatic action held until ");
    write_time(until, &mut message);
    message.push_str(" by ");
    message.push_str(&o.operator);
    message.push_str(": ");
    message.push_str(&o.reason);
    let reason = Reason { code: "APPEAL_HOLD", message, observed: Num::Int(0), threshold: Num::Int(0) };
    let status = STATUSES.get(usize::from(s.status)).copied().unwrap_or("active");
    let trigger = Some(o.event_id.as_str());
    let mut d = decide(policy, s, "hold", status, now, trigger, vec![reason], None, Some(until), None);
    d.operator = Some(o.operator.clone());
    out.push(d);
}

/// Whether a ledger key is `format!("{loan}#{n}")`.
fn is_ledger_key(key: &[u8], loan: &str, n: &str) -> bool {
    key.len() == loan.len() + 1 + n.len()
        && key.starts_with(loan.as_bytes())
        && key.ends_with(n.as_bytes())
        && key.get(loan.len()) == Some(&b'#')
}

/// Keep only rolling-maximum candidates: no later point has a score as high.
fn add_score(s: &mut UserState, t: f64, score: i64) {
    let points = &mut s.scores;
    if points.last().is_none_or(|last| t > last.0) {
        while points.last().is_some_and(|last| last.1 <= score) {
            points.pop();
        }
        reserve_tight(points, 1);
        points.push((t, score));
    } else {
        // bisect.insort of (t, score): after every point that compares <= it.
        let at = points.partition_point(|p| p.0 < t || (p.0 == t && p.1 <= score));
        reserve_tight(points, 1);
        points.insert(at, (t, score));
        let mut kept: Vec<(f64, i64)> = Vec::with_capacity(points.len());
        let mut best = -1i64;
        for p in points.iter().rev() {
            if p.1 > best {
                kept.push(*p);
                best = p.1;
            }
        }
        kept.reverse();
        *points = kept;
    }
    capped_scores(points);
}

/// At most SCORES_CAP rolling-maximum candidates: past the cap, those just after the
/// oldest go (the oldest is the window's high; the newest are the highs to come).
fn capped_scores(points: &mut Vec<(f64, i64)>) {
    if points.len() > SCORES_CAP {
        let drop = points.len() - SCORES_CAP;
        points.drain(1..1 + drop);
    }
}

fn prune(policy: &Policy, s: &mut UserState, t: f64) {
    let keep_after = t - policy.lateness_window.unwrap_or(0.0) - LEDGER_RETENTION;
    // Settled installments go: those due before keep_after, and past the cap, the
    // earliest settled ones (by due date, then key).
    let excess = s.ledger.len().saturating_sub(LEDGER_CAP);
    if excess > 0 {
        // (due, key, place in the ledger) of each settled installment
        let mut settled: Vec<(f64, &[u8], usize)> = s
            .ledger
            .iter()
            .enumerate()
            .filter(|(_, (_, i))| i.is_paid())
            .map(|(at, (k, i))| (i.due, k.as_bytes(), at))
            .collect();
        settled.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut gone = vec![false; s.ledger.len()];
        for (n, (due, _, at)) in settled.iter().enumerate() {
            if *due < keep_after || n < excess {
                if let Some(g) = gone.get_mut(*at) {
                    *g = true;
                }
            }
        }
        let mut at = 0;
        s.ledger.retain(|_| {
            at += 1;
            !gone.get(at - 1).copied().unwrap_or(false)
        });
    } else if s.ledger.iter().any(|(_, i)| i.is_paid() && i.due < keep_after) {
        s.ledger.retain(|(_, i)| !(i.is_paid() && i.due < keep_after));
    }
    let horizon = t - policy.burst_window.unwrap_or(0.0);
    if let Some(first) = s.applications.first() {
        if *first <= horizon || s.applications.len() > APPLICATIONS_CAP {
            s.applications.retain(|a| *a > horizon);
            let len = s.applications.len();
            if len > APPLICATIONS_CAP {
                s.applications.drain(..len - APPLICATIONS_CAP);
            }
        }
    }
    if let Some(window) = policy.drop_window {
        if s.scores.first().is_some_and(|p| p.0 <= t - window) {
            s.scores.retain(|p| p.0 > t - window);
        }
    }
}

/// `rules.leverage`: debt over annual income to three decimals, never rounded up past
/// the ratio, exact ratios exact, at most LEVERAGE_CAP.
pub fn leverage(debt: f64, monthly_income: f64) -> f64 {
    let ratio = debt / (12.0 * monthly_income);
    if ratio >= LEVERAGE_CAP {
        return LEVERAGE_CAP;
    }
    let mut shown = py_round(ratio, 3);
    if shown - ratio > 1e-9 * ratio.max(1.0) {
        shown = py_round(shown - 0.001, 3);
    }
    shown
}

/// What a rule observes in the state at t (None where it has nothing to judge).
pub(crate) fn observe(policy: &Policy, rule: &Rule, s: &UserState, t: f64) -> Option<Num> {
    match rule.code {
        OVERDUE => {
            let worst = s
                .ledger
                .iter()
                .filter(|(_, i)| !i.is_paid())
                .map(|(_, i)| i.days_past_due(t))
                .max()
                .unwrap_or(0);
            Some(Num::Int(worst.max(0)))
        }
        REPEATED_LATENESS => {
            let since = t - rule.window;
            let late = policy.late_after_days;
            let n = s
                .ledger
                .iter()
                .filter(|(_, i)| i.due > since && i.days_past_due(t) >= late)
                .count();
            Some(Num::Int(n as i64))
        }
        SCORE_BELOW_MIN => s
            .bureau_value(CREDIT_SCORE)
            .map(|v| Num::Int(py_int(v.as_f64()))),
        SCORE_DROP => {
            let score = s.bureau_value(CREDIT_SCORE)?;
            let since = t - rule.window;
            let peak = s
                .scores
                .iter()
                .filter(|p| p.0 > since)
                .map(|p| p.1)
                .max()
                .map(Num::Int)
                .unwrap_or(score);
            let drop = match (peak, score) {
                (Num::Int(p), Num::Int(v)) => p - v,
                (p, v) => py_int(p.as_f64() - v.as_f64()),
            };
            Some(Num::Int(drop.max(0)))
        }
        MULTI_LENDER => s.bureau_value(OPEN_LENDERS),
        APPLICATION_BURST => {
            let since = t - rule.window;
            let mut count =
                s.applications.iter().filter(|at| since < **at && **at <= t).count() as i64;
            if let Some(reported) = s.bureau_at(HARD_INQUIRIES) {
                if t < reported + INQUIRY_WINDOW {
                    if let Some(v) = s.bureau_value(HARD_INQUIRIES) {
                        count += py_int(v.as_f64());
                    }
                }
            }
            Some(Num::Int(count))
        }
        EXTERNAL_DELINQUENCY => s.bureau_value(DELINQUENT_ACCOUNTS),
        OVER_LEVERAGE => {
            let debt = s.bureau_value(TOTAL_DEBT)?;
            let income = s.bureau_value(MONTHLY_INCOME)?.as_f64();
            if income == 0.0 {
                return None; // no income on file: nothing to judge, never a cut
            }
            Some(Num::Float(leverage(debt.as_f64(), income)))
        }
        DORMANT => {
            if s.ledger
                .iter()
                .any(|(_, i)| !i.is_paid() && i.amount_due > i.amount_paid)
            {
                return None; // something outstanding: not dormant
            }
            let since = s.last_drawdown.get().unwrap_or(s.first_seen);
            Some(Num::Int(py_int(crate::state::py_floordiv(t - since, DAY))))
        }
        _ => None,
    }
}

/// Earliest time > t at which an observed value can change without a new event.
fn next_change(policy: &Policy, s: &UserState, t: f64) -> Option<f64> {
    let mut best = f64::INFINITY;
    let mut consider = |at: f64| {
        if at > t && at < best {
            best = at;
        }
    };
    for (_, inst) in &s.ledger {
        if !inst.is_paid() {
            // days past due cross the next mark
            for days in &policy.day_marks {
                let at = inst.due + *days as f64 * DAY;
                if at > t {
                    consider(at);
                    break;
                }
            }
        }
        if let Some(window) = policy.lateness_window {
            consider(inst.due + window); // leaves the lateness window
        }
    }
    if let Some(window) = policy.burst_window {
        for at in &s.applications {
            consider(at + window);
        }
        if let Some(reported) = s.bureau_at(HARD_INQUIRIES) {
            consider(reported + INQUIRY_WINDOW);
        }
    }
    if let Some(window) = policy.drop_window {
        for (at, _) in &s.scores {
            consider(at + window);
        }
    }
    if let Some(rule) = policy.dormant.and_then(|i| policy.rules.get(i)) {
        let since = s.last_drawdown.get().unwrap_or(s.first_seen);
        for tier in &rule.tiers {
            consider(since + whole_days(tier.threshold) as f64 * DAY);
        }
    }
    (best != f64::INFINITY).then_some(best)
}

type Crossed = Vec<(usize, usize, Num)>;

fn crossed(policy: &Policy, s: &UserState, t: f64) -> Crossed {
    let mut out = Vec::new();
    for (ri, rule) in policy.rules.iter().enumerate() {
        let Some(observed) = observe(policy, rule, s, t) else { continue };
        let x = observed.as_f64();
        for (ti, tier) in rule.tiers.iter().enumerate() {
            let hit = if rule.below { x < tier.threshold } else { x >= tier.threshold };
            if !hit {
                break;
            }
            out.push((ri, ti, observed));
        }
    }
    out
}

fn tier(policy: &Policy, rule: usize, tier: usize) -> Option<&Tier> {
    policy.rules.get(rule).and_then(|r| r.tiers.get(tier))
}

pub(crate) fn find_time(items: &[(Arc<str>, f64)], key: &Arc<str>) -> Option<f64> {
    items
        .iter()
        .find(|(k, _)| Arc::ptr_eq(k, key) || **k == **key)
        .map(|(_, v)| *v)
}

/// Split crossed tiers into due ones and ones waiting out their notice.
fn classify(
    policy: &Policy,
    s: &mut UserState,
    crossed: &Crossed,
    t: f64,
) -> (Vec<Finding>, Vec<Finding>) {
    let mut due = Vec::new();
    let mut waiting = Vec::new();
    let mut live: Vec<&Arc<str>> = Vec::new();
    for &(ri, ti, observed) in crossed {
        let Some(tier) = tier(policy, ri, ti) else { continue };
        if tier.notice == 0.0 {
            due.push(Finding { rule: ri, tier: ti, observed, effective_at: t });
            continue;
        }
        live.push(&tier.key);
        let since = match find_time(&s.adverse().pending, &tier.key) {
            Some(since) => since,
            None => {
                let pending = &mut s.adverse_mut().pending;
                reserve_tight(pending, 1);
                pending.push((tier.key.clone(), t));
                t
            }
        };
        let f = Finding { rule: ri, tier: ti, observed, effective_at: since + tier.notice };
        if t >= f.effective_at {
            due.push(f);
        } else {
            waiting.push(f);
        }
    }
    // The conditions that cleared: their warnings lapse.
    if s.adverse().pending.len() > live.len() {
        s.adverse_mut().pending.retain(|(k, _)| live.iter().any(|l| ***l == **k));
    }
    (due, waiting)
}

/// (rank, limit factor) of the strongest due action.
fn level(policy: &Policy, due: &[Finding]) -> (u8, f64) {
    let mut rank = 0u8;
    let mut factor = f64::INFINITY;
    for f in due {
        if let Some(tier) = tier(policy, f.rule, f.tier) {
            rank = rank.max(tier.rank);
        }
    }
    for f in due {
        if let Some(tier) = tier(policy, f.rule, f.tier) {
            if let Some(lf) = tier.limit_factor {
                if tier.rank == 2 && lf != 0.0 && lf < factor {
                    factor = lf;
                }
            }
        }
    }
    (rank, if rank == 2 && factor != f64::INFINITY { factor } else { 1.0 })
}

/// (a, -fa) < (b, -fb), Python's tuple order.
fn weaker(a: u8, fa: f64, b: u8, fb: f64) -> bool {
    a < b || (a == b && -fa < -fb)
}

fn evaluate(
    policy: &Policy,
    s: &mut UserState,
    t: f64,
    trigger: Option<&str>,
    correction: Option<Correction>,
    out: &mut Vec<Decision>,
) {
    s.clock = t;
    if s.hold_until.get().is_some_and(|until| t >= until) {
        s.hold_until = OptTime::NONE; // the hold ran out
    }
    let held = s.hold_until.get().is_some();
    prune(policy, s, t);
    let crossed = crossed(policy, s, t);
    // While held, nothing is classified: no notice starts, none acts.
    let (mut due, mut waiting) =
        if held { (Vec::new(), Vec::new()) } else { classify(policy, s, &crossed, t) };
    let mut rank = s.status;

    if let Some(c) = correction {
        let codes = &s.adverse().adverse_codes;
        if rank > 0 && codes.iter().any(|c| *c == "OVERDUE" || *c == "REPEATED_LATENESS") {
            let (mut target, factor) = level(policy, &due);
            if target == 0 && !waiting.is_empty() {
                target = 1;
            }
            if weaker(target, factor, rank, s.limit_factor) {
                let reason = Reason {
                    code: "DATA_CORRECTION",
                    message: format!(
                        "installment {} corrected: {} -> {} days past due",
                        c.installment, c.before, c.after
                    ),
                    observed: Num::Int(c.after),
                    threshold: Num::Int(c.before),
                };
                let pending = s.adverse().pending.clone(); // notices already served still count
                let announced = s.adverse().announced.clone(); // and the warnings that named them
                let supersedes = s.adverse().adverse_id.clone();
                let d = restore(policy, s, t, trigger, reason, supersedes);
                out.push(d);
                // A tier no warning named (it waited while a stronger restriction held,
                // so it would not have acted) starts its notice now, and is announced.
                s.adverse_mut().pending = pending
                    .iter()
                    .filter(|(k, v)| find_time(&announced, k) == Some(*v))
                    .cloned()
                    .collect();
                s.adverse_mut().announced = announced
                    .iter()
                    .filter(|(k, v)| find_time(&pending, k) == Some(*v))
                    .cloned()
                    .collect();
                if s.adverse().pending.len() < pending.len() {
                    (due, waiting) = classify(policy, s, &crossed, t);
                }
                rank = 0;
            }
        }
    }

    let (target, factor) = level(policy, &due);
    if weaker(rank, s.limit_factor, target, factor)
    {
        let action = ACTIONS.get(usize::from(target)).copied().unwrap_or("warn");
        let mut effective = None;
        let mut findings = due.clone();
        if target == 1 {
            effective = Some(
                waiting.iter().map(|f| f.effective_at).fold(None, |m: Option<f64>, x| {
                    Some(m.map_or(x, |m| if x < m { x } else { m }))
                })
                .unwrap_or(t),
            );
            findings.extend(waiting.iter().copied());
            announce(policy, s, &waiting);
        }
        let reasons = reasons(policy, &findings);
        let status_after = STATUSES.get(usize::from(target)).copied().unwrap_or("warned");
        let limit = (target == 2).then_some(factor);
        let d = decide(policy, s, action, status_after, t, trigger, reasons, limit, effective, None);
        out.push(d);
        s.limit_factor = if target == 2 { factor } else { 1.0 };
        rank = target;
    }
    // Tiers waiting out a notice that would act on this user: a stronger action, or a
    // further cut. None acts unannounced.
    let acting: Vec<Finding> = waiting
        .iter()
        .filter(|f| {
            tier(policy, f.rule, f.tier).is_some_and(|tr| {
                tr.rank > rank
                    || (tr.rank == rank && rank == 2 && tr.limit_factor.unwrap_or(1.0) < s.limit_factor)
            })
        })
        .copied()
        .collect();
    if !acting.is_empty() && !covered(policy, s, &acting, &waiting) {
        // Effective when the first action it announces would be taken.
        let effective = acting.iter().map(|f| f.effective_at).fold(f64::INFINITY, f64::min);
        let status_after = STATUSES.get(usize::from(rank.max(1))).copied().unwrap_or("warned");
        let reasons = reasons(policy, &waiting);
        let d = decide(policy, s, "warn", status_after, t, trigger, reasons, None, Some(effective), None);
        out.push(d);
        announce(policy, s, &waiting);
        rank = rank.max(1);
    }

    // While held, a warning lapses only once nothing is crossed.
    if rank == 1 && due.is_empty() && waiting.is_empty() && (!held || crossed.is_empty()) {
        let reason = Reason {
            code: "CURED",
            message: "the conditions behind the warning no longer hold".to_owned(),
            observed: Num::Int(0),
            threshold: Num::Int(0),
        };
        let d = restore(policy, s, t, trigger, reason, None);
        out.push(d);
    } else if rank >= 2 && crossed.is_empty() {
        let since = s.clear_since.get().unwrap_or(t);
        s.clear_since = OptTime::some(since);
        if t - since >= policy.cooling_off {
            let days = py_round((t - since) / DAY, 2);
            let reason = Reason {
                code: "CURED",
                message: cured_message(days, policy.cooling_off / DAY),
                observed: Num::Float(days),
                threshold: Num::Float(py_round(policy.cooling_off / DAY, 2)),
            };
            let d = restore(policy, s, t, trigger, reason, None);
            out.push(d);
        }
    } else {
        s.clear_since = OptTime::NONE;
    }
    s.tidy();
    s.deadline = next_deadline(policy, s, t);
}

fn next_deadline(policy: &Policy, s: &UserState, t: f64) -> Option<f64> {
    let mut best = next_change(policy, s, t).unwrap_or(f64::INFINITY);
    for (key, since) in &s.adverse().pending {
        if let Some(notice) = policy.notice_of(key) {
            let at = since + notice;
            if t < at && at < best {
                best = at;
            }
        }
    }
    if let Some(since) = s.clear_since.get() {
        if s.status >= 2 {
            let at = since + policy.cooling_off;
            if t < at && at < best {
                best = at;
            }
        }
    }
    if let Some(until) = s.hold_until.get() {
        if t < until && until < best {
            best = until; // the hold runs out: evaluated as usual from then
        }
    }
    (best != f64::INFINITY).then_some(best)
}

/// One reason per rule (its strictest tier), strongest action first, then policy order.
fn reasons(policy: &Policy, findings: &[Finding]) -> Vec<Reason> {
    let mut best: Vec<Finding> = Vec::new();
    for f in findings {
        let rank = tier(policy, f.rule, f.tier).map_or(0, |t| t.rank);
        match best.iter_mut().find(|b| b.rule == f.rule) {
            Some(b) => {
                if rank >= tier(policy, b.rule, b.tier).map_or(0, |t| t.rank) {
                    *b = *f;
                }
            }
            None => best.push(*f),
        }
    }
    best.sort_by_key(|f| (std::cmp::Reverse(tier(policy, f.rule, f.tier).map_or(0, |t| t.rank)), f.rule));
    best.iter().take(MAX_REASONS).filter_map(|f| reason(policy, f)).collect()
}

/// A threshold as a decision's reason shows it: whole numbers as integers.
pub(crate) fn shown(threshold: f64) -> Num {
    if threshold == threshold.trunc() && threshold.abs() < 9.0e15 {
        Num::Int(threshold as i64)
    } else {
        Num::Float(threshold)
    }
}

fn reason(policy: &Policy, f: &Finding) -> Option<Reason> {
    let rule = policy.rules.get(f.rule)?;
    let shown = shown(rule.tiers.get(f.tier)?.threshold);
    let window = py_int(rule.window / DAY);
    Some(Reason {
        code: rule.name(),
        message: message(rule.code, f.observed, shown, window),
        observed: f.observed,
        threshold: shown,
    })
}

/// A reason's text: what was observed against the limit, in words (`rules.MESSAGES`).
pub(crate) fn message(code: usize, observed: Num, threshold: Num, window: i64) -> String {
    let mut o = String::with_capacity(96);
    let s = if observed.as_f64() == 1.0 { "" } else { "s" };
    // The text is pieces: words, the observed value, and (by code) a plural "s" or
    // the window in days.
    let put = |pieces: &[&str], o: &mut String| pieces.iter().for_each(|p| o.push_str(p));
    match code {
        OVERDUE => {
            o.push_str("an installment is ");
            observed.write_py(&mut o);
            put(&[" day", s, " past due (limit "], &mut o);
        }
        REPEATED_LATENESS => {
            observed.write_py(&mut o);
            put(&[" late installment", s, " in the last "], &mut o);
            write_days(window as f64, &mut o);
            o.push_str(" (limit ");
        }
        SCORE_BELOW_MIN => {
            o.push_str("credit score ");
            observed.write_py(&mut o);
            o.push_str(" is below ");
            threshold.write_py(&mut o);
            return o;
        }
        SCORE_DROP => {
            o.push_str("credit score fell ");
            observed.write_py(&mut o);
            put(&[" point", s, " from its "], &mut o);
            write_int(window, &mut o);
            o.push_str("-day high (limit ");
        }
        MULTI_LENDER => {
            o.push_str("open credit at ");
            observed.write_py(&mut o);
            put(&[" institution", s, " (limit "], &mut o);
        }
        APPLICATION_BURST => {
            o.push_str("credit applications and inquiries in ");
            write_days(window as f64, &mut o);
            o.push_str(": ");
            observed.write_py(&mut o);
            o.push_str(" (limit ");
        }
        EXTERNAL_DELINQUENCY => {
            observed.write_py(&mut o);
            put(&[" overdue account", s, " at other lenders (limit "], &mut o);
        }
        OVER_LEVERAGE => {
            o.push_str("debt is ");
            observed.write_py(&mut o);
            o.push_str(" times annual income (limit ");
        }
        _ => {
            o.push_str("no drawdown for ");
            observed.write_py(&mut o);
            put(&[" day", s, " with nothing outstanding (limit "], &mut o);
        }
    }
    threshold.write_py(&mut o);
    o.push(')');
    o
}

/// `rules.days`: '1 day', '180 days', '2.5 days'.
fn write_days(n: f64, o: &mut String) {
    o.push_str(&py_g(n));
    o.push_str(if n == 1.0 { " day" } else { " days" });
}

fn cured_message(clear_days: f64, cooling_off_days: f64) -> String {
    let mut o = String::with_capacity(64);
    o.push_str("no adverse condition for ");
    write_days(clear_days, &mut o);
    o.push_str(" (cooling-off ");
    write_days(cooling_off_days, &mut o);
    o.push(')');
    o
}

/// A warning names these tiers' notices (each by the time it started).
fn announce(policy: &Policy, s: &mut UserState, waiting: &[Finding]) {
    for f in waiting {
        let Some(tier) = tier(policy, f.rule, f.tier) else { continue };
        let Some(since) = find_time(&s.adverse().pending, &tier.key) else { continue };
        let announced = &mut s.adverse_mut().announced;
        match announced.iter_mut().find(|(k, _)| **k == *tier.key) {
            Some(slot) => slot.1 = since,
            None => {
                reserve_tight(announced, 1);
                announced.push((tier.key.clone(), since));
            }
        }
    }
}

/// Whether every acting tier is announced: its own notice was named by a warning, or an
/// announced notice still running comes to as strong an action (as deep a cut) no later.
fn covered(policy: &Policy, s: &UserState, acting: &[Finding], waiting: &[Finding]) -> bool {
    let running: Vec<(&Tier, f64)> = waiting
        .iter()
        .filter_map(|g| {
            let tier = tier(policy, g.rule, g.tier)?;
            let pending = find_time(&s.adverse().pending, &tier.key);
            (pending.is_some() && find_time(&s.adverse().announced, &tier.key) == pending)
                .then_some((tier, g.effective_at))
        })
        .collect();
    acting.iter().all(|f| {
        let Some(ft) = tier(policy, f.rule, f.tier) else { return true };
        running.iter().any(|(gt, g_eff)| {
            gt.rank >= ft.rank
                && *g_eff <= f.effective_at
                && (gt.rank > 2 || gt.limit_factor.unwrap_or(1.0) <= ft.limit_factor.unwrap_or(1.0))
        })
    })
}

#[allow(clippy::too_many_arguments)]
fn decide(
    policy: &Policy,
    s: &mut UserState,
    action: &'static str,
    status_after: &'static str,
    t: f64,
    trigger: Option<&str>,
    reasons: Vec<Reason>,
    limit_factor: Option<f64>,
    effective_at: Option<f64>,
    supersedes: Option<String>,
) -> Decision {
    let id = decision_id(&policy.version, s.user_id.as_str(), s.seq, action, t);
    let status_before = STATUSES.get(usize::from(s.status)).copied().unwrap_or("active");
    let after = STATUSES.iter().position(|x| *x == status_after).unwrap_or(0) as u8;
    s.seq += 1;
    if matches!(action, "warn" | "downgrade" | "close") {
        // What a restore supersedes: the decision that set the current status; the codes
        // are its reasons and those of warnings given since in the same status.
        let status = s.status;
        let adverse = s.adverse_mut();
        if action != "warn" || after != status || adverse.adverse_id.is_none() {
            adverse.adverse_id = Some(id.clone());
            adverse.adverse_codes = reasons.iter().map(|r| r.code).collect();
        } else {
            for r in &reasons {
                if !adverse.adverse_codes.contains(&r.code) {
                    adverse.adverse_codes.push(r.code);
                }
            }
        }
    }
    s.status = after;
    Decision {
        decision_id: id,
        user_id: s.user_id.as_str().to_owned(),
        action,
        status_before,
        status_after,
        limit_factor,
        reasons,
        trigger_event_id: trigger.map(str::to_owned),
        event_time: t,
        effective_at,
        supersedes,
        operator: None,
        policy_version: policy.version.clone(),
    }
}

fn restore(
    policy: &Policy,
    s: &mut UserState,
    t: f64,
    trigger: Option<&str>,
    reason: Reason,
    supersedes: Option<String>,
) -> Decision {
    let d = decide(policy, s, "restore", "active", t, trigger, vec![reason], Some(1.0), None, supersedes);
    s.limit_factor = 1.0;
    s.clear_adverse();
    s.clear_since = OptTime::NONE;
    s.status = STATUS_ACTIVE;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_key_is_loan_hash_n() {
        assert!(is_ledger_key(b"l1#2", "l1", "2"));
        assert!(is_ledger_key(b"a#b#12", "a#b", "12"));
        assert!(!is_ledger_key(b"l1#2", "l1", "12"));
        assert!(!is_ledger_key(b"l1#12", "l1", "2"));
        assert!(!is_ledger_key(b"l1x2", "l1", "2"));
        assert!(!is_ledger_key(b"l2#2", "l1", "2"));
    }
}
