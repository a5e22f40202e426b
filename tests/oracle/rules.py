"""What each rule observes in a user's state at event time t, and when that can change.

`observe` gives each enabled rule's observed value (None where the rule has
nothing to judge, e.g. no score reported yet). `next_change` gives the earliest
time after t at which an observed value can change with no new event: days past
due growing, windows sliding, reports ageing. The core evaluates exactly there,
so deadline decisions never depend on when the watermark happens to move.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable

from streams.events import DAY
from streams.policy import Policy, Rule, whole_days
from tests.oracle.state import UserState

INQUIRY_WINDOW = 30 * DAY  # hard_inquiries_30d counts for 30 days after its report
Observed = float | int | None


def _overdue(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    worst = 0
    for inst in s.ledger.values():
        if inst.paid_at is None:  # Installment.days_past_due(t), inline
            due = inst.due
            if t >= due + 86_400.0:
                days = int((t - due) // 86_400.0)
                if days > worst:
                    worst = days
    return worst


def _repeated_lateness(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    since = t - r.window
    late = p.late_after_days
    count = 0
    for inst in s.ledger.values():
        due = inst.due
        if due > since:  # Installment.days_past_due(t) >= late, inline
            end = inst.paid_at if inst.paid_at is not None else t
            days = 0 if end < due + 86_400.0 else int((end - due) // 86_400.0)
            if days >= late:
                count += 1
    return count


def _score(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    score = s.bureau.get("credit_score")
    return None if score is None else int(score)


def _score_drop(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    score = s.bureau.get("credit_score")
    if score is None:
        return None
    since = t - r.window
    peak: float | None = None
    for at, value in s.scores:
        if at > since and (peak is None or value > peak):
            peak = value
    if peak is None:
        peak = score
    return max(0, int(peak - score))


def _multi_lender(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    return s.bureau.get("open_lenders")


def _application_burst(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    since = t - r.window
    apps = s.applications  # sorted: those in (since, t] are a slice
    count = bisect_right(apps, t) - bisect_right(apps, since)
    reported = s.bureau_at.get("hard_inquiries_30d")
    if reported is not None and t < reported + INQUIRY_WINDOW:
        count += int(s.bureau["hard_inquiries_30d"])
    return count


def _external(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    return s.bureau.get("delinquent_accounts")


def _leverage(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    debt = s.bureau.get("total_debt")
    income = s.bureau.get("monthly_income")
    if debt is None or not income:  # no income on file: nothing to judge, never a cut
        return None
    return leverage(debt, income)


LEVERAGE_CAP = 1e6  # debt of a million years' income: shown as that, never as infinity


def leverage(debt: float, monthly_income: float) -> float:
    """Debt over annual income to three decimals, never rounded up past the ratio, so
    that what a reason shows never reaches a threshold the ratio itself does not
    (1.49958 is 1.499 against a limit of 1.5), but exact ratios stay exact (12,012 over
    12,000 is 1.001, which the division gives as 1.000999...); at most LEVERAGE_CAP, so
    a tiny income gives a finite number (JSON has no infinity; the decision schema
    wants a number)."""
    ratio = debt / (12.0 * monthly_income)
    if ratio >= LEVERAGE_CAP:
        return LEVERAGE_CAP
    shown = round(ratio, 3)
    if shown - ratio > 1e-9 * max(1.0, ratio):  # rounded up by more than the division's error
        shown = round(shown - 0.001, 3)
    return shown


def _dormant(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    for i in s.ledger.values():
        if i.paid_at is None and i.amount_due > i.amount_paid:
            return None  # something outstanding: not dormant
    since = s.last_drawdown if s.last_drawdown is not None else s.first_seen
    return int((t - since) // DAY)


OBSERVERS: dict[str, Callable[[Policy, Rule, UserState, float], Observed]] = {
    "OVERDUE": _overdue,
    "REPEATED_LATENESS": _repeated_lateness,
    "SCORE_BELOW_MIN": _score,
    "SCORE_DROP": _score_drop,
    "MULTI_LENDER": _multi_lender,
    "APPLICATION_BURST": _application_burst,
    "EXTERNAL_DELINQUENCY": _external,
    "OVER_LEVERAGE": _leverage,
    "DORMANT": _dormant,
}

# When a rule's crossed tiers can next change with no new event: a time before which
# re-observing the rule is pointless. Early is always safe (the rule is re-observed);
# MARGIN keeps float rounding from ever making it late.
MARGIN = 1.0
NO_CHANGE = float("inf")


def _overdue_until(p: Policy, r: Rule, s: UserState, t: float) -> float:
    first = NO_CHANGE
    low = t - MARGIN
    marks = p.day_marks  # every whole-day threshold of OVERDUE is among them
    for inst in s.ledger.values():
        if inst.paid_at is None:
            due = inst.due
            for days in marks:
                at = due + days * DAY
                if at > low:
                    if at < first:
                        first = at
                    break
    return first - MARGIN


def _repeated_lateness_until(p: Policy, r: Rule, s: UserState, t: float) -> float:
    first = NO_CHANGE
    low = t - MARGIN
    window = r.window
    late = p.late_after_days * DAY
    for inst in s.ledger.values():
        at = inst.due + window  # leaves the window
        if low < at < first:
            first = at
        if inst.paid_at is None:
            at = inst.due + late  # becomes late
            if low < at < first:
                first = at
    return first - MARGIN


def _score_drop_until(p: Policy, r: Rule, s: UserState, t: float) -> float:
    first = NO_CHANGE
    low = t - MARGIN
    window = r.window
    for at, _ in s.scores:
        at += window
        if low < at < first:
            first = at
    return first - MARGIN


def _application_burst_until(p: Policy, r: Rule, s: UserState, t: float) -> float:
    first = NO_CHANGE
    low = t - MARGIN
    window = r.window
    for at in s.applications:
        if low < at < first:  # not yet counted
            first = at
        at += window  # leaves the window
        if low < at < first:
            first = at
    reported = s.bureau_at.get("hard_inquiries_30d")
    if reported is not None:
        at = reported + INQUIRY_WINDOW
        if low < at < first:
            first = at
    return first - MARGIN


def _dormant_until(p: Policy, r: Rule, s: UserState, t: float) -> float:
    first = NO_CHANGE
    low = t - MARGIN
    since = s.last_drawdown if s.last_drawdown is not None else s.first_seen
    for tier in r.tiers:
        at = since + whole_days(tier.threshold) * DAY
        if low < at < first:
            first = at
    return first - MARGIN


def constant(p: Policy, r: Rule, s: UserState, t: float) -> float:
    return NO_CHANGE  # a bureau field: only an event changes it


UNTIL: dict[str, Callable[[Policy, Rule, UserState, float], float]] = {
    "OVERDUE": _overdue_until,
    "REPEATED_LATENESS": _repeated_lateness_until,
    "SCORE_BELOW_MIN": constant,
    "SCORE_DROP": _score_drop_until,
    "MULTI_LENDER": constant,
    "APPLICATION_BURST": _application_burst_until,
    "EXTERNAL_DELINQUENCY": constant,
    "OVER_LEVERAGE": constant,
    "DORMANT": _dormant_until,
}

# Reason text; {s} is "s" unless the observed count is one ("1 day", "2 days"), and
# {window_days} the rule's window in days, in words. Only crossed tiers are explained,
# so the observed value is at least the threshold.
MESSAGES = {
    "OVERDUE": "an installment is {observed} day{s} past due (limit {threshold})",
    "REPEATED_LATENESS": "{observed} late installment{s} in the last {window_days} "
                         "(limit {threshold})",
    "SCORE_BELOW_MIN": "credit score {observed} is below {threshold}",
    "SCORE_DROP": "credit score fell {observed} point{s} from its {window}-day high "
                  "(limit {threshold})",
    "MULTI_LENDER": "open credit at {observed} institution{s} (limit {threshold})",
    "APPLICATION_BURST": "credit applications and inquiries in {window_days}: {observed} "
                         "(limit {threshold})",
    "EXTERNAL_DELINQUENCY": "{observed} overdue account{s} at other lenders "
                            "(limit {threshold})",
    "OVER_LEVERAGE": "debt is {observed} times annual income (limit {threshold})",
    "DORMANT": "no drawdown for {observed} day{s} with nothing outstanding "
               "(limit {threshold})",
}


def message(code: str, observed: float | int, threshold: float | int, window: int) -> str:
    """A reason's text: what was observed against the limit, in words."""
    return MESSAGES[code].format(observed=observed, threshold=threshold, window=window,
                                 window_days=days(window), s="" if observed == 1 else "s")


def days(n: float) -> str:
    """'1 day', '2.5 days'."""
    return f"{n:g} day" + ("" if n == 1 else "s")


def cured_message(clear_days: float, cooling_off_days: float) -> str:
    """CURED after a restriction: how long no adverse condition held, against the policy."""
    return f"no adverse condition for {days(clear_days)} (cooling-off {days(cooling_off_days)})"


def next_change(p: Policy, s: UserState, t: float) -> float | None:
    """Earliest time > t at which an observed value can change without a new event."""
    at = min(ledger_change(p, s, t), application_change(p, s, t), score_change(p, s, t),
             dormant_change(p, s, t))
    return None if at == NO_CHANGE else at


# next_change in parts, each the least time > t of its own inputs (NO_CHANGE if none),
# so that the core recomputes only the part whose inputs changed or whose time came.

def ledger_change(p: Policy, s: UserState, t: float) -> float:
    first = NO_CHANGE
    window = p.lateness_window
    marks = p.day_marks
    for inst in s.ledger.values():
        due = inst.due
        if inst.paid_at is None:  # days past due cross the next mark
            for days in marks:
                at = due + days * DAY
                if at > t:
                    if at < first:
                        first = at
                    break
        if window is not None:
            at = due + window  # leaves the lateness window
            if t < at < first:
                first = at
    return first


def application_change(p: Policy, s: UserState, t: float) -> float:
    window = p.burst_window
    if window is None:
        return NO_CHANGE
    first = NO_CHANGE
    for at in s.applications:
        at += window
        if t < at < first:
            first = at
    reported = s.bureau_at.get("hard_inquiries_30d")
    if reported is not None:
        at = reported + INQUIRY_WINDOW
        if t < at < first:
            first = at
    return first


def score_change(p: Policy, s: UserState, t: float) -> float:
    window = p.drop_window
    first = NO_CHANGE
    if window is not None:
        for at, _ in s.scores:
            at += window
            if t < at < first:
                first = at
    return first


def dormant_change(p: Policy, s: UserState, t: float) -> float:
    dormant = p.by_code.get("DORMANT")
    first = NO_CHANGE
    if dormant is not None:
        since = s.last_drawdown if s.last_drawdown is not None else s.first_seen
        for tier in dormant.tiers:
            at = since + whole_days(tier.threshold) * DAY
            if t < at < first:
                first = at
    return first
