"""Input events, schema v1, as typed values (docs/design.md, "Input events").

Times are float seconds since the Unix epoch (UTC); dates are the epoch second of
their 00:00 UTC. The codec turns JSON into these; the core only ever sees these.
They are treated as values and never changed, but are not `frozen` dataclasses:
building a frozen one costs about five times as much, once for every event read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.policy import Policy

DAY = 86_400.0

PRODUCTS = ("cash_loan", "pay_later")
APPLICATION_KINDS = ("drawdown", "limit_increase")
EVENT_TYPES = ("repayment", "application", "credit_report", "override")
OVERRIDE_ACTIONS = ("restore", "hold", "release")
BUREAU_FIELDS = (
    "credit_score",
    "open_lenders",
    "hard_inquiries_30d",
    "delinquent_accounts",
    "total_debt",
    "monthly_income",
)


@dataclass(slots=True)
class Repayment:
    """One change of an installment in the lender's ledger."""

    event_id: str
    user_id: str
    occurred_at: float
    loan_id: str
    installment: int
    product: str
    due_date: float  # 00:00 UTC of the due date
    amount_due: float
    amount_paid: float
    paid_at: float | None
    region: str | None = None  # the user's region, when the record names one

    event_type = "repayment"


@dataclass(slots=True)
class Application:
    """A request to borrow from the line or to raise it."""

    event_id: str
    user_id: str
    occurred_at: float
    application_id: str
    product: str
    kind: str
    requested_amount: float
    channel: str | None = None
    region: str | None = None

    event_type = "application"


@dataclass(slots=True)
class CreditReport:
    """A change in the user's bureau file: only the changed fields are set."""

    event_id: str
    user_id: str
    occurred_at: float
    bureau: str
    credit_score: int | None = None
    open_lenders: int | None = None
    hard_inquiries_30d: int | None = None
    delinquent_accounts: int | None = None
    total_debt: float | None = None
    monthly_income: float | None = None
    region: str | None = None

    event_type = "credit_report"


@dataclass(slots=True)
class Override:
    """An operator's word on one user: restore now, hold automatic action until
    `until` (an appeal under review), or release a hold."""

    event_id: str
    user_id: str
    occurred_at: float
    action: str  # one of OVERRIDE_ACTIONS
    operator: str
    reason: str
    until: float | None  # required for a hold, optional for a restore, never for a release
    region: str | None = None

    event_type = "override"


@dataclass(slots=True)
class Tick:
    """The partition watermark reached `at`: fire the user's deadlines up to it."""

    at: float


Event = Repayment | Application | CreditReport | Override


@dataclass(frozen=True, slots=True)
class PolicySwitch:
    """A validated policy version that takes effect at event time `at` in every
    partition, in event-time order with the events, so that live and a replay given
    the policy history decide alike. Not an input event: never decoded, not in
    EVENT_TYPES, counted in no tally (its event_type, "policy", is none of theirs);
    built from a validated policy record. A reorder buffer holds it like an event,
    ordered by (`at`, `policy_id`), with no user ("").

    With a `region`, the policy is that region's only (a segment-scoped switch): it
    decides the users whose region it is, every other user stays under the
    partition's unscoped policy; None (unscoped) is the partition's policy."""

    at: float
    policy_id: str
    policy: Policy
    region: str | None = None

    event_type = "policy"

    @property
    def occurred_at(self) -> float:
        return self.at

    @property
    def event_id(self) -> str:
        return self.policy_id

    @property
    def user_id(self) -> str:
        return ""


def format_time(t: float) -> str:
    """RFC 3339 in UTC with a `Z`, millisecond precision only when needed."""
    dt = datetime.fromtimestamp(t, UTC)
    if dt.microsecond:
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return dt.isoformat(timespec="seconds").replace("+00:00", "Z")


def format_date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).date().isoformat()
