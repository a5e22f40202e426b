//! The risk policy as the engine holds it: validated in Python (`streams/policy.py`,
//! whose messages name the field), handed over as JSON, compiled here once.

use serde::Deserialize;
use std::sync::Arc;

pub const ADVERSE_CODES: [&str; 9] = [
    "OVERDUE",
    "REPEATED_LATENESS",
    "SCORE_BELOW_MIN",
    "SCORE_DROP",
    "MULTI_LENDER",
    "APPLICATION_BURST",
    "EXTERNAL_DELINQUENCY",
    "OVER_LEVERAGE",
    "DORMANT",
];
pub const OVERDUE: usize = 0;
pub const REPEATED_LATENESS: usize = 1;
pub const SCORE_BELOW_MIN: usize = 2;
pub const SCORE_DROP: usize = 3;
pub const MULTI_LENDER: usize = 4;
pub const APPLICATION_BURST: usize = 5;
pub const EXTERNAL_DELINQUENCY: usize = 6;
pub const OVER_LEVERAGE: usize = 7;
pub const DORMANT: usize = 8;
pub const ACTIONS: [&str; 4] = ["", "warn", "downgrade", "close"];

const DAY: f64 = 86_400.0;

#[derive(Debug)]
pub struct Tier {
    /// "OVERDUE/2": rule code and tier number, the name of its pending notice.
    pub key: Arc<str>,
    pub threshold: f64,
    /// 1 warn, 2 downgrade, 3 close.
    pub rank: u8,
    /// Seconds; 0 acts at once.
    pub notice: f64,
    pub limit_factor: Option<f64>,
}

#[derive(Debug)]
pub struct Rule {
    /// Index into ADVERSE_CODES.
    pub code: usize,
    /// "observed below threshold" (SCORE_BELOW_MIN); every other rule is "at or above".
    pub below: bool,
    /// Seconds, 0 where the rule has none.
    pub window: f64,
    /// Mildest first.
    pub tiers: Vec<Tier>,
}

impl Rule {
    pub fn name(&self) -> &'static str {
        ADVERSE_CODES.get(self.code).copied().unwrap_or("")
    }
}

#[derive(Debug)]
pub struct Policy {
    /// Shared with every decision made under it.
    pub version: Arc<str>,
    pub cooling_off: f64,
    pub late_after_days: i64,
    pub dedupe_ids: usize,
    /// Enabled rules, in file order (the tie-break of reason ranking).
    pub rules: Vec<Rule>,
    /// The days past due at which an unpaid installment changes a rule's view.
    pub day_marks: Vec<i64>,
    pub lateness_window: Option<f64>,
    pub burst_window: Option<f64>,
    pub drop_window: Option<f64>,
    /// Index into `rules` of DORMANT, when enabled.
    pub dormant: Option<usize>,
}

#[derive(Deserialize)]
struct TierIn {
    threshold: f64,
    action: String,
    notice: f64,
    limit_factor: Option<f64>,
}

#[derive(Deserialize)]
struct RuleIn {
    code: String,
    window: f64,
    tiers: Vec<TierIn>,
}

#[derive(Deserialize)]
struct PolicyIn {
    version: String,
    cooling_off: f64,
    late_after_days: i64,
    dedupe_ids: usize,
    rules: Vec<RuleIn>,
}

/// `policy.whole_days`: a day count observed as a whole number reaches `threshold`
/// at its ceiling.
pub fn whole_days(threshold: f64) -> i64 {
    let whole = threshold.trunc();
    whole as i64 + i64::from(threshold - whole > 0.0)
}

impl Policy {
    /// A compiled policy from `streams.policy.Policy.engine_json()`; the Python side has
    /// validated it, so an error here means the two sides disagree on the format.
    pub fn from_json(data: &[u8]) -> Result<Policy, String> {
        let p: PolicyIn = serde_json::from_slice(data).map_err(|e| format!("policy: {e}"))?;
        let mut rules = Vec::with_capacity(p.rules.len());
        for r in p.rules {
            let code = ADVERSE_CODES
                .iter()
                .position(|c| *c == r.code)
                .ok_or_else(|| format!("policy: unknown rule {}", r.code))?;
            let mut tiers = Vec::with_capacity(r.tiers.len());
            for (i, t) in r.tiers.into_iter().enumerate() {
                let rank = ACTIONS
                    .iter()
                    .position(|a| *a == t.action && !a.is_empty())
                    .ok_or_else(|| format!("policy: unknown action {}", t.action))?;
                tiers.push(Tier {
                    key: Arc::from(format!("{}/{}", r.code, i)),
                    threshold: t.threshold,
                    rank: rank as u8,
                    notice: t.notice,
                    limit_factor: t.limit_factor,
                });
            }
            rules.push(Rule { code, below: code == SCORE_BELOW_MIN, window: r.window, tiers });
        }
        let mut marks = vec![p.late_after_days];
        if let Some(overdue) = rules.iter().find(|r| r.code == OVERDUE) {
            marks.extend(overdue.tiers.iter().map(|t| whole_days(t.threshold)));
        }
        marks.sort_unstable();
        marks.dedup();
        let window = |code: usize| rules.iter().find(|r| r.code == code).map(|r| r.window);
        let lateness_window = window(REPEATED_LATENESS);
        let burst_window = window(APPLICATION_BURST);
        let drop_window = window(SCORE_DROP);
        let dormant = rules.iter().position(|r| r.code == DORMANT);
        Ok(Policy {
            version: Arc::from(p.version),
            cooling_off: p.cooling_off,
            late_after_days: p.late_after_days,
            dedupe_ids: p.dedupe_ids.max(1),
            rules,
            day_marks: marks,
            lateness_window,
            burst_window,
            drop_window,
            dormant,
        })
    }

    /// The notice of an enabled tier by its key (None for a key of no enabled tier).
    /// A key taken from the policy's own tiers is found by address first.
    pub fn notice_of(&self, key: &Arc<str>) -> Option<f64> {
        let tiers = || self.rules.iter().flat_map(|r| r.tiers.iter());
        tiers()
            .find(|t| Arc::ptr_eq(&t.key, key))
            .or_else(|| tiers().find(|t| *t.key == **key))
            .map(|t| t.notice)
    }

    /// How many day marks are <= days (`bisect_right`).
    pub fn marks_reached(&self, days: i64) -> usize {
        self.day_marks.partition_point(|m| *m <= days)
    }
}

pub const DAY_SECONDS: f64 = DAY;
