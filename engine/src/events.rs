//! Input events, schema v1, as typed values (docs/design.md, "Input events").
//!
//! Times are f64 seconds since the Unix epoch (UTC); dates are the epoch second of
//! their 00:00 UTC, exactly as the Python engine holds them.

use crate::policy::Policy;
use crate::state::ShortStr;
use std::sync::Arc;

pub const DAY: f64 = 86_400.0;

pub const PRODUCTS: [&str; 2] = ["cash_loan", "pay_later"];
pub const APPLICATION_KINDS: [&str; 2] = ["drawdown", "limit_increase"];
pub const EVENT_TYPES: [&str; 4] = ["repayment", "application", "credit_report", "override"];
pub const OVERRIDE_ACTIONS: [&str; 3] = ["restore", "hold", "release"];

// Ids and names are `ShortStr`s: held in place when short (as they mostly are), so an
// event decodes with no allocation of its own.

/// One change of an installment in the lender's ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct Repayment {
    pub event_id: ShortStr,
    pub user_id: ShortStr,
    pub occurred_at: f64,
    pub loan_id: ShortStr,
    pub installment: i64,
    pub product: &'static str,
    /// 00:00 UTC of the due date.
    pub due_date: f64,
    pub amount_due: f64,
    pub amount_paid: f64,
    pub paid_at: Option<f64>,
    /// The user's region, when the producer gives it (segment-scoped policies); boxed,
    /// as few events carry one (an event is moved through the reorder buffer whole).
    pub region: Option<Box<ShortStr>>,
}

/// A request to borrow from the line or to raise it.
#[derive(Clone, Debug, PartialEq)]
pub struct Application {
    pub event_id: ShortStr,
    pub user_id: ShortStr,
    pub occurred_at: f64,
    pub application_id: ShortStr,
    pub product: &'static str,
    pub kind: &'static str,
    pub requested_amount: f64,
    pub channel: Option<ShortStr>,
    pub region: Option<Box<ShortStr>>,
}

/// A change in the user's bureau file: only the changed fields are set.
#[derive(Clone, Debug, PartialEq)]
pub struct CreditReport {
    pub event_id: ShortStr,
    pub user_id: ShortStr,
    pub occurred_at: f64,
    pub bureau: ShortStr,
    // Counts the decoder bounds (300..=950, 0..=10,000): four bytes each keep an
    // event, moved whole through the reorder buffer, smaller.
    pub credit_score: Option<i32>,
    pub open_lenders: Option<i32>,
    pub hard_inquiries_30d: Option<i32>,
    pub delinquent_accounts: Option<i32>,
    pub total_debt: Option<f64>,
    pub monthly_income: Option<f64>,
    pub region: Option<Box<ShortStr>>,
}

/// An operator's override: restore the user now, hold automatic action until a time
/// (an appeal under review), or release a hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    pub event_id: ShortStr,
    pub user_id: ShortStr,
    pub occurred_at: f64,
    /// restore | hold | release (OVERRIDE_ACTIONS)
    pub action: &'static str,
    pub operator: String,
    pub reason: String,
    /// Required for a hold, optional for a restore (restore, then hold until then).
    pub until: Option<f64>,
    pub region: Option<Box<ShortStr>>,
    /// The record as it came: an override refused when applied (no such user) is
    /// dead-lettered with it. Overrides are few; the others keep no copy.
    pub raw: Box<[u8]>,
}

/// A new policy in force from `at` (a validated record of the policies topic, or of a
/// replay's policy history): ordered with the events by (at, policy_id); it has no user.
#[derive(Clone, Debug)]
pub struct PolicySwitch {
    pub at: f64,
    pub policy_id: String,
    pub policy: Arc<Policy>,
    /// The region it applies to; None: every user not in a region with a policy.
    pub region: Option<String>,
}

impl PartialEq for PolicySwitch {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.policy_id == other.policy_id
            && Arc::ptr_eq(&self.policy, &other.policy) && self.region == other.region
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Repayment(Repayment),
    Application(Application),
    CreditReport(CreditReport),
    Override(Box<Override>),
    Policy(Box<PolicySwitch>),
}

impl Event {
    pub fn event_id(&self) -> &str {
        match self {
            Event::Repayment(e) => &e.event_id,
            Event::Application(e) => &e.event_id,
            Event::CreditReport(e) => &e.event_id,
            Event::Override(e) => &e.event_id,
            Event::Policy(p) => &p.policy_id,
        }
    }

    pub fn user_id(&self) -> &str {
        match self {
            Event::Repayment(e) => &e.user_id,
            Event::Application(e) => &e.user_id,
            Event::CreditReport(e) => &e.user_id,
            Event::Override(e) => &e.user_id,
            Event::Policy(_) => "",
        }
    }

    pub fn occurred_at(&self) -> f64 {
        match self {
            Event::Repayment(e) => e.occurred_at,
            Event::Application(e) => e.occurred_at,
            Event::CreditReport(e) => e.occurred_at,
            Event::Override(e) => e.occurred_at,
            Event::Policy(p) => p.at,
        }
    }

    /// The user's region the event carries.
    #[inline]
    pub fn region(&self) -> Option<&str> {
        match self {
            Event::Repayment(e) => e.region.as_deref().map(ShortStr::as_str),
            Event::Application(e) => e.region.as_deref().map(ShortStr::as_str),
            Event::CreditReport(e) => e.region.as_deref().map(ShortStr::as_str),
            Event::Override(e) => e.region.as_deref().map(ShortStr::as_str),
            Event::Policy(_) => None,
        }
    }

    /// Index into EVENT_TYPES (4 for a policy switch, which is none of them).
    pub fn kind(&self) -> usize {
        match self {
            Event::Repayment(_) => 0,
            Event::Application(_) => 1,
            Event::CreditReport(_) => 2,
            Event::Override(_) => 3,
            Event::Policy(_) => 4,
        }
    }

    pub fn event_type(&self) -> &'static str {
        EVENT_TYPES.get(self.kind()).copied().unwrap_or("policy")
    }
}
