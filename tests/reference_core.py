"""The decision core as first written: every rule re-observed at every evaluation.

Kept as the reference the incremental core in `streams.core` must match exactly
(tests/test_incremental.py), decision for decision and state for state.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from streams.decisions import Decision, Reason, decision_id
from streams.events import DAY, Application, CreditReport, Event, Repayment, Tick
from streams.policy import REPAYMENT_CODES, Policy, Rule, Tier, whole_days
from streams.rules import cured_message, leverage, message  # text and shown values only
from streams.state import (
    APPLICATIONS_CAP,
    LEDGER_CAP,
    STATUS_RANK,
    Installment,
    UserState,
    capped_scores,
)

INQUIRY_WINDOW = 30 * DAY
Observed = float | int | None



def _overdue(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    worst = 0
    for inst in s.ledger.values():
        if inst.paid_at is None:
            worst = max(worst, inst.days_past_due(t))
    return worst


def _repeated_lateness(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    since = t - r.window
    late = p.late_after_days
    return sum(1 for i in s.ledger.values() if i.due > since and i.days_past_due(t) >= late)


def _score(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    score = s.bureau.get("credit_score")
    return None if score is None else int(score)


def _score_drop(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    score = s.bureau.get("credit_score")
    if score is None:
        return None
    since = t - r.window
    peak = max((v for at, v in s.scores if at > since), default=score)
    return max(0, int(peak - score))


def _multi_lender(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    return s.bureau.get("open_lenders")


def _application_burst(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    since = t - r.window
    count = sum(1 for at in s.applications if since < at <= t)
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
    return leverage(debt, income)  # the shown value's rule, shared with the core


def _dormant(p: Policy, r: Rule, s: UserState, t: float) -> Observed:
    if any(i.paid_at is None and i.amount_due > i.amount_paid for i in s.ledger.values()):
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


def next_change(p: Policy, s: UserState, t: float) -> float | None:
    """Earliest time > t at which an observed value can change without a new event."""
    times: list[float] = []
    lateness = p.rule("REPEATED_LATENESS")
    marks = p.day_marks
    for inst in s.ledger.values():
        if inst.paid_at is None:  # days past due cross the next mark
            for days in marks:
                at = inst.due + days * DAY
                if at > t:
                    times.append(at)
                    break
        if lateness is not None:
            times.append(inst.due + lateness.window)  # leaves the lateness window
    burst = p.rule("APPLICATION_BURST")
    if burst is not None:
        times.extend(at + burst.window for at in s.applications)
        reported = s.bureau_at.get("hard_inquiries_30d")
        if reported is not None:
            times.append(reported + INQUIRY_WINDOW)
    drop = p.rule("SCORE_DROP")
    if drop is not None:
        times.extend(at + drop.window for at, _ in s.scores)
    dormant = p.rule("DORMANT")
    if dormant is not None:
        since = s.last_drawdown if s.last_drawdown is not None else s.first_seen
        times.extend(since + whole_days(tier.threshold) * DAY for tier in dormant.tiers)
    future = [x for x in times if x > t]
    return min(future) if future else None



STATUS_OF_RANK = ("active", "warned", "downgraded", "closed")
ACTION_OF_RANK = (None, "warn", "downgrade", "close")
LEDGER_RETENTION = 90 * DAY  # settled installments kept this long past their window
MAX_REASONS = 4


@dataclass(frozen=True, slots=True)
class Correction:
    """A ledger record lowered an installment's days past due."""

    installment: str
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    tier: Tier  # the strictest crossed tier of its kind (due or waiting)
    observed: float | int
    effective_at: float  # when the tier acts (its condition start + notice)


def step(policy: Policy, state: UserState | None, event: Event | Tick
         ) -> tuple[UserState | None, list[Decision]]:
    """Apply one event (or a watermark tick) to one user's state."""
    if isinstance(event, Tick):
        if state is None:
            return None, []
        return state, fire(policy, state, event.at)
    if state is None:
        state = UserState(event.user_id, first_seen=event.occurred_at, clock=event.occurred_at)
    elif event.event_id in state.seen:
        return state, []  # a redelivery: nothing changes
    decisions = fire(policy, state, event.occurred_at)
    now = max(state.clock, event.occurred_at)
    correction = _apply(state, event, now, policy)
    state.seen.append(event.event_id)
    if len(state.seen) > policy.dedupe_ids:
        del state.seen[0]
    decisions += _evaluate(policy, state, now, event.event_id, correction)
    return state, decisions


def is_duplicate(state: UserState | None, event: Event) -> bool:
    """Whether `step` would drop this event as a redelivery."""
    return state is not None and event.event_id in state.seen


def fire(policy: Policy, state: UserState, until: float) -> list[Decision]:
    """Evaluate the user at each of its deadlines <= until, in order."""
    out: list[Decision] = []
    while state.deadline is not None and state.deadline <= until:
        out += _evaluate(policy, state, state.deadline, None, None)
    return out


def _apply(s: UserState, e: Event, now: float, policy: Policy) -> Correction | None:
    t = e.occurred_at
    if isinstance(e, Repayment):
        key = f"{e.loan_id}#{e.installment}"
        old = s.ledger.get(key)
        if old is not None and t < old.recorded_at:
            return None  # superseded by a later record of the same installment
        paid_at = e.paid_at
        if paid_at is None and e.amount_paid >= e.amount_due:
            paid_at = t  # fully paid but no time given: paid when recorded
        new = Installment(t, e.due_date, e.amount_due, e.amount_paid, paid_at)
        s.ledger[key] = new
        if old is not None:
            # A correction only when the new record puts the installment below a mark
            # (late, or an OVERDUE tier) the record it replaces had reached: a payment
            # recorded after it was made, as late as the ledger had it, corrects nothing
            # (its days past due stopped growing, no more).
            before, after = old.days_past_due(now), new.days_past_due(now)
            marks = policy.day_marks
            if bisect.bisect_right(marks, after) < bisect.bisect_right(marks, before):
                return Correction(key, before, after)
    elif isinstance(e, Application):
        bisect.insort(s.applications, t)
        if e.kind == "drawdown" and (s.last_drawdown is None or t > s.last_drawdown):
            s.last_drawdown = t
    elif isinstance(e, CreditReport):
        for name in ("credit_score", "open_lenders", "hard_inquiries_30d",
                     "delinquent_accounts", "total_debt", "monthly_income"):
            value = getattr(e, name)
            if value is not None and t >= s.bureau_at.get(name, t):
                s.bureau[name] = value
                s.bureau_at[name] = t
        if e.credit_score is not None:
            _add_score(s, t, e.credit_score)
    return None


def _add_score(s: UserState, t: float, score: int) -> None:
    """Keep only rolling-maximum candidates: no later point has a score as high."""
    points = s.scores
    bisect.insort(points, (t, score))
    kept: list[tuple[float, int]] = []
    best = -1
    for at, value in reversed(points):
        if value > best:
            kept.append((at, value))
            best = value
    kept.reverse()
    s.scores = capped_scores(kept)


def _prune(policy: Policy, s: UserState, t: float) -> None:
    lateness = policy.rule("REPEATED_LATENESS")
    keep_after = t - (lateness.window if lateness else 0.0) - LEDGER_RETENTION
    if len(s.ledger) > 8 or any(i.due < keep_after for i in s.ledger.values()):
        settled = [(i.due, k) for k, i in s.ledger.items() if i.paid_at is not None]
        settled.sort()
        excess = len(s.ledger) - LEDGER_CAP
        for n, (due, key) in enumerate(settled):
            if due < keep_after or n < excess:
                del s.ledger[key]
    burst = policy.rule("APPLICATION_BURST")
    horizon = t - (burst.window if burst else 0.0)
    apps = s.applications
    if apps and (apps[0] <= horizon or len(apps) > APPLICATIONS_CAP):
        s.applications = [a for a in apps if a > horizon][-APPLICATIONS_CAP:]
    drop = policy.rule("SCORE_DROP")
    if s.scores and drop is not None and s.scores[0][0] <= t - drop.window:
        s.scores = [p for p in s.scores if p[0] > t - drop.window]


def _crossed(policy: Policy, s: UserState, t: float) -> list[tuple[Rule, Tier, float | int]]:
    out = []
    for rule in policy.rules:
        observed = OBSERVERS[rule.code](policy, rule, s, t)
        if observed is None:
            continue
        for tier in rule.tiers:
            if (observed < tier.threshold) if rule.below else (observed >= tier.threshold):
                out.append((rule, tier, observed))
            else:
                break
    return out


def _classify(s: UserState, crossed: list[tuple[Rule, Tier, float | int]], t: float
              ) -> tuple[list[Finding], list[Finding]]:
    """Split crossed tiers into due ones and ones waiting out their notice."""
    due: list[Finding] = []
    waiting: list[Finding] = []
    live = set()
    for rule, tier, observed in crossed:
        if not tier.notice:
            due.append(Finding(rule, tier, observed, t))
            continue
        live.add(tier.key)
        since = s.pending.setdefault(tier.key, t)
        finding = Finding(rule, tier, observed, since + tier.notice)
        (due if t >= finding.effective_at else waiting).append(finding)
    for key in [k for k in s.pending if k not in live]:
        del s.pending[key]  # the condition cleared: its warning lapses
    return due, waiting


def _level(due: list[Finding]) -> tuple[int, float]:
    """(rank, limit factor) of the strongest due action."""
    rank = max((f.tier.rank for f in due), default=0)
    factors = [f.tier.limit_factor for f in due if f.tier.rank == 2 and f.tier.limit_factor]
    return rank, (min(factors) if rank == 2 and factors else 1.0)


def _evaluate(policy: Policy, s: UserState, t: float, trigger: str | None,
              correction: Correction | None) -> list[Decision]:
    s.clock = t
    _prune(policy, s, t)
    crossed = _crossed(policy, s, t)
    due, waiting = _classify(s, crossed, t)
    out: list[Decision] = []
    rank = STATUS_RANK[s.status]

    if correction is not None and rank and REPAYMENT_CODES.intersection(s.adverse_codes):
        target, factor = _level(due)
        if target == 0 and waiting:
            target = 1
        if (target, -factor) < (rank, -s.limit_factor):
            reason = Reason("DATA_CORRECTION",
                            f"installment {correction.installment} corrected: "
                            f"{correction.before} -> {correction.after} days past due",
                            correction.after, correction.before)
            pending = dict(s.pending)  # notices already served still count
            announced = dict(s.announced)  # and so do the warnings that named them
            out.append(_restore(policy, s, t, trigger, reason, supersedes=s.adverse_id))
            # A tier no warning named (it waited while a stronger restriction held, so
            # it would not have acted) starts its notice now, and is announced below.
            s.pending.update({k: v for k, v in pending.items() if announced.get(k) == v})
            s.announced = {k: v for k, v in announced.items() if pending.get(k) == v}
            if len(s.pending) < len(pending):
                due, waiting = _classify(s, crossed, t)
            rank = 0

    target, factor = _level(due)
    if (target, -factor) > (rank, -s.limit_factor):
        action = ACTION_OF_RANK[target]
        assert action is not None
        effective = None
        findings = due
        if action == "warn":
            effective = min((f.effective_at for f in waiting), default=t)
            findings = due + waiting
            _announce(s, waiting)
        out.append(_decide(policy, s, action, STATUS_OF_RANK[target], t, trigger,
                           _reasons(policy, findings),
                           factor if target == 2 else None, effective))
        s.limit_factor = factor if target == 2 else 1.0
        rank = target
    # Tiers waiting out a notice that would act on this user: a stronger action, or a
    # further cut. None acts unannounced: one that no warning of its notice (or of a
    # notice still running to as strong an action, no later) covers gets one now.
    acting = [f for f in waiting if f.tier.rank > rank or (
        f.tier.rank == rank == 2 and (f.tier.limit_factor or 1.0) < s.limit_factor)]
    if acting and not _covered(s, acting, waiting):
        # Effective when the first action it announces would be taken: a milder tier
        # with a shorter notice acts before the strongest one.
        out.append(_decide(policy, s, "warn", STATUS_OF_RANK[max(rank, 1)], t, trigger,
                           _reasons(policy, waiting), None,
                           min(f.effective_at for f in acting)))
        _announce(s, waiting)
        rank = max(rank, 1)

    if rank == 1 and not due and not waiting:
        out.append(_restore(policy, s, t, trigger,
                            Reason("CURED", "the conditions behind the warning no longer hold",
                                   0, 0)))
    elif rank >= 2 and not crossed:
        if s.clear_since is None:
            s.clear_since = t
        if t - s.clear_since >= policy.cooling_off:
            days = round((t - s.clear_since) / DAY, 2)
            out.append(_restore(policy, s, t, trigger, Reason(
                "CURED", cured_message(days, policy.cooling_off / DAY), days,
                round(policy.cooling_off / DAY, 2))))
    else:
        s.clear_since = None

    s.deadline = _next_deadline(policy, s, t)
    return out


def _next_deadline(policy: Policy, s: UserState, t: float) -> float | None:
    times = [since + tier.notice for tier, since in _pending_tiers(policy, s)]
    change = next_change(policy, s, t)
    if change is not None:
        times.append(change)
    if s.clear_since is not None and STATUS_RANK[s.status] >= 2:
        times.append(s.clear_since + policy.cooling_off)
    future = [x for x in times if x > t]
    return min(future) if future else None


def _pending_tiers(policy: Policy, s: UserState) -> list[tuple[Tier, float]]:
    if not s.pending:
        return []
    return [(tier, s.pending[tier.key]) for rule in policy.rules for tier in rule.tiers
            if tier.key in s.pending]


def _reasons(policy: Policy, findings: list[Finding]) -> tuple[Reason, ...]:
    """One reason per rule (its strictest tier), strongest action first, then policy order."""
    best: dict[str, Finding] = {}
    for f in findings:
        if f.rule.code not in best or f.tier.rank >= best[f.rule.code].tier.rank:
            best[f.rule.code] = f
    order = {r.code: i for i, r in enumerate(policy.rules)}
    ranked = sorted(best.values(), key=lambda f: (-f.tier.rank, order[f.rule.code]))
    return tuple(_reason(f) for f in ranked[:MAX_REASONS])


def _reason(f: Finding) -> Reason:
    threshold = f.tier.threshold
    shown: float | int = int(threshold) if threshold == int(threshold) else threshold
    window = int(f.rule.window / DAY)
    return Reason(f.rule.code,
                  message(f.rule.code, f.observed, shown, window),
                  f.observed, shown)


def _announce(s: UserState, waiting: list[Finding]) -> None:
    """A warning names these tiers' notices (each by the time it started)."""
    for f in waiting:
        s.announced[f.tier.key] = s.pending[f.tier.key]


def _covered(s: UserState, acting: list[Finding], waiting: list[Finding]) -> bool:
    """Whether every acting tier is announced: its own notice was named by a warning, or
    an announced notice still running comes to as strong an action (as deep a cut) no
    later. A condition that clears and comes back starts a new notice, which a warning
    names unless one already running covers it (a score flickering at a line while
    another rule's cut is on notice brings no warning a flicker)."""
    running = [g for g in waiting if s.announced.get(g.tier.key) == s.pending[g.tier.key]]
    return all(any(g.tier.rank >= f.tier.rank and g.effective_at <= f.effective_at
                   and (g.tier.rank > 2 or (g.tier.limit_factor or 1.0)
                        <= (f.tier.limit_factor or 1.0))
                   for g in running)
               for f in acting)


def _decide(policy: Policy, s: UserState, action: str, status_after: str, t: float,
            trigger: str | None, reasons: tuple[Reason, ...], limit_factor: float | None,
            effective_at: float | None = None, supersedes: str | None = None) -> Decision:
    d = Decision(decision_id(policy.version, s.user_id, s.seq, action, t), s.user_id, action,
                 s.status, status_after, limit_factor, reasons, policy.version, trigger, t,
                 effective_at, supersedes)
    s.seq += 1
    if action != "restore":
        # What a restore supersedes: the decision that set the current status; the
        # codes are that decision's reasons and those of warnings given since in the
        # same status: what the restriction rests on (a DATA_CORRECTION restore needs
        # a repayment code among them).
        codes = tuple(r.code for r in reasons)
        if action != "warn" or status_after != s.status or s.adverse_id is None:
            s.adverse_id = d.decision_id
            s.adverse_codes = codes
        else:
            s.adverse_codes = tuple(dict.fromkeys(s.adverse_codes + codes))
    s.status = status_after
    return d


def _restore(policy: Policy, s: UserState, t: float, trigger: str | None, reason: Reason,
             supersedes: str | None = None) -> Decision:
    d = _decide(policy, s, "restore", "active", t, trigger, (reason,), 1.0,
                supersedes=supersedes)
    s.limit_factor = 1.0
    s.announced = {}
    s.pending.clear()
    s.clear_since = None
    s.adverse_id = None
    s.adverse_codes = ()
    return d
