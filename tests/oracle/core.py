"""The decision core: `step(policy, state, event) -> (state, decisions)`.

No Faust, Kafka, clock, I/O or metrics in here: the worker, `replay` and
`backtest` are loops around `step`. Everything runs in event time:

- before an event at t is applied, the user's deadlines <= t fire first, each
  evaluated at its own time; a `Tick(t)` (the partition watermark) fires them
  for users who send nothing;
- an event older than the user's clock (it arrived late) is applied at the clock;
- a tier with a notice period first sends `warn` (with `effective_at`) and acts
  only if its condition still holds then; a tier without acts at once; the
  strongest applicable action wins; decisions are emitted only on transitions;
- a repayment record that lowers an installment's days past due is a
  correction: if the user's restriction rested on repayment history and is no
  longer justified, `restore` with `DATA_CORRECTION` supersedes it;
- a restricted user with no adverse condition for the cooling-off period is
  restored with `CURED`; a warning whose conditions all cleared lapses the same way;
- an operator's override restores a user (`OVERRIDE`), holds automatic action until
  a time (`APPEAL_HOLD`: no notice starts, runs or acts meanwhile; restores in the
  user's favour still happen) or releases a hold; one for a user with no state is
  not applied (`rejection`);
- an event that names the user's region sets it in the state (the last applied one
  wins); which policy decides the user by it is the partition's choice.

`step` owns the state it is given: it updates it in place and returns it (replay
keeps millions of users; copying each state per event would halve throughput).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from dataclasses import dataclass
from typing import Any

from streams.codec import Rejection
from streams.events import (
    DAY,
    Application,
    CreditReport,
    Event,
    Override,
    Repayment,
    Tick,
    format_time,
)
from streams.policy import REPAYMENT_CODES, RULE_BIT, Policy, Rule, Tier
from tests.oracle.decisions import Decision, Reason, decision_id
from tests.oracle.rules import (
    OBSERVERS,
    UNTIL,
    application_change,
    constant,
    cured_message,
    dormant_change,
    ledger_change,
    message,
    score_change,
)
from tests.oracle.state import (
    APPLICATIONS_CAP,
    LEDGER_CAP,
    NEVER,
    SCORES_CAP,
    STATUS_RANK,
    Installment,
    Memo,
    UserState,
    capped_scores,
)

STATUS_OF_RANK = ("active", "warned", "downgraded", "closed")
ACTION_OF_RANK = (None, "warn", "downgrade", "close")
# The actions that restrict, whose decisions a restore supersedes (not an override's
# hold or release, which leave the restriction as it stands).
ADVERSE_ACTIONS = frozenset(("warn", "downgrade", "close"))
LEDGER_RETENTION = 90 * DAY  # settled installments kept this long past their window
MAX_REASONS = 4
INF = float("inf")
# What each kind of change can move: rule bits (policy.RULE_BIT) to re-observe.
LEDGER_BITS = RULE_BIT["OVERDUE"] | RULE_BIT["REPEATED_LATENESS"] | RULE_BIT["DORMANT"]
APPLICATION_BITS = RULE_BIT["APPLICATION_BURST"] | RULE_BIT["DORMANT"]
SCORE_DROP_BIT = RULE_BIT["SCORE_DROP"]
# Parts of rules.next_change (Memo.changes, in this order), by bit.
LEDGER_PART, APPLICATION_PART, SCORE_PART, DORMANT_PART = 1, 2, 4, 8
# Per bureau field: the rules a new value changes, and those any newer report of the
# field changes (the inquiries count for 30 days from their report; the score history).
BUREAU_BITS = (
    ("credit_score", RULE_BIT["SCORE_BELOW_MIN"], 0),
    ("open_lenders", RULE_BIT["MULTI_LENDER"], 0),
    ("hard_inquiries_30d", 0, RULE_BIT["APPLICATION_BURST"]),
    ("delinquent_accounts", RULE_BIT["EXTERNAL_DELINQUENCY"], 0),
    ("total_debt", RULE_BIT["OVER_LEVERAGE"], 0),
    ("monthly_income", RULE_BIT["OVER_LEVERAGE"], 0),
)


@dataclass(frozen=True, slots=True)
class Correction:
    """A ledger record lowered an installment's days past due."""

    installment: str
    before: int
    after: int


# Not frozen: a frozen dataclass costs several times as much to build, and findings are
# built at every evaluation that looks at crossed tiers; none is changed once built.
@dataclass(slots=True)
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
        if isinstance(event, Override):
            return None, []  # an unknown user: not applied (see `rejection`)
        state = UserState(event.user_id, first_seen=event.occurred_at, clock=event.occurred_at)
    elif event.event_id in state.seen:
        return state, []  # a redelivery: nothing changes
    return state, step_new(policy, state, event)


def review(policy: Policy, state: UserState, at: float) -> list[Decision]:
    """A user under a policy switched to at `at`: their deadlines up to then (or their
    clock, if later) fire, and they are judged at that time under the new policy."""
    now = state.clock if state.clock > at else at
    decisions = fire(policy, state, now) if state.deadline is not None else []
    return decisions + _evaluate(policy, state, now, None, None)


def step_new(policy: Policy, state: UserState, event: Event) -> list[Decision]:
    """`step` for an event known not to be a redelivery, on an existing state."""
    t = event.occurred_at
    decisions = fire(policy, state, t) if state.deadline is not None else []
    now = state.clock if state.clock > t else t  # max(clock, t)
    if event.region is not None:  # the last applied event naming a region gives it
        state.region = event.region
    if isinstance(event, Override):
        decisions += _override(policy, state, event, now)
        correction = None
    else:
        correction = _apply(state, event, now, policy)
    state.seen.append(event.event_id)
    if len(state.seen) > policy.dedupe_ids:
        del state.seen[0]
    decisions += _evaluate(policy, state, now, event.event_id, correction)
    return decisions


def rejection(state: UserState | None, event: Event) -> Rejection | None:
    """Why the event is not applied to this state, if it is not: an override for a user
    with no state. Checked when the event is applied (in event-time order), not when it
    is decoded; counted and dead-lettered as a rejection."""
    if state is None and isinstance(event, Override):
        return Rejection("unknown_user", f"no such user: {event.user_id}", "override")
    return None


def is_duplicate(state: UserState | None, event: Event) -> bool:
    """Whether `step` would drop this event as a redelivery."""
    return state is not None and event.event_id in state.seen


def fire(policy: Policy, state: UserState, until: float) -> list[Decision]:
    """Evaluate the user at each of its deadlines <= until, in order."""
    out: list[Decision] = []
    while state.deadline is not None and state.deadline <= until:
        out += _evaluate(policy, state, state.deadline, None, None)
    return out


def _memo(policy: Policy, s: UserState) -> Memo:
    memo = s.memo
    if memo is None or memo.policy is not policy:
        n = len(policy.rules)
        memo = s.memo = Memo(policy, [-1] * n, [NEVER] * n, low_due=_settled_low_due(s.ledger),
                             plan=_plan(policy))
    return memo


def _apply(s: UserState, e: Event, now: float, policy: Policy) -> Correction | None:
    t = e.occurred_at
    memo = s.memo
    if memo is None or memo.policy is not policy:
        memo = _memo(policy, s)
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
        memo.dirty |= LEDGER_BITS
        memo.stale |= LEDGER_PART
        if paid_at is not None and new.due < memo.low_due:
            memo.low_due = new.due  # a settled installment: one prune may drop
        if old is not None:
            # A correction only when the new record puts the installment below a mark
            # (late, or an OVERDUE tier) the record it replaces had reached: a payment
            # recorded after it was made, as late as the ledger had it, corrects nothing
            # (its days past due stopped growing, no more).
            before, after = old.days_past_due(now), new.days_past_due(now)
            marks = policy.day_marks
            if bisect_right(marks, after) < bisect_right(marks, before):
                return Correction(key, before, after)
    elif isinstance(e, Application):
        insort(s.applications, t)
        if e.kind == "drawdown" and (s.last_drawdown is None or t > s.last_drawdown):
            s.last_drawdown = t
        memo.dirty |= APPLICATION_BITS
        memo.stale |= APPLICATION_PART | DORMANT_PART
    elif isinstance(e, CreditReport):
        bureau, bureau_at = s.bureau, s.bureau_at
        dirty = memo.dirty
        for name, on_value, on_report in BUREAU_BITS:
            value = getattr(e, name)
            if value is not None and t >= bureau_at.get(name, t):
                dirty |= on_value | on_report if bureau.get(name) != value else on_report
                bureau[name] = value
                bureau_at[name] = t
        if e.credit_score is not None:
            _add_score(s, t, e.credit_score)
            dirty |= SCORE_DROP_BIT
            memo.stale |= SCORE_PART
        memo.dirty = dirty
        if e.hard_inquiries_30d is not None:
            memo.stale |= APPLICATION_PART
    return None


def _override(policy: Policy, s: UserState, e: Override, now: float) -> list[Decision]:
    """Apply an operator's override at `now`: the decisions it makes itself."""
    out: list[Decision] = []
    trigger, operator = e.event_id, e.operator
    if e.action == "restore":
        if s.status != "active":
            out.append(_restore(policy, s, now, trigger,
                                Reason("OVERRIDE", f"restored by {operator}: {e.reason}", 0, 0),
                                operator=operator))
        if e.until is not None:
            out.append(_hold(policy, s, now, e, e.until))
    elif e.action == "hold":
        assert e.until is not None  # the codec requires it
        out.append(_hold(policy, s, now, e, e.until))
    elif s.hold_until is not None:  # a release; of a user not held, it makes no decision
        s.hold_until = None
        out.append(_decide(policy, s, "release", s.status, now, trigger,
                           (Reason("OVERRIDE", f"hold released by {operator}: {e.reason}",
                                   0, 0),),
                           None, operator=operator))
    # The memo's shortcut in _evaluate assumes nothing but events and time changed the
    # state since the last evaluation: a restore (now active, notices cleared), a hold
    # (notices withdrawn) and a release (notices to start afresh) each need the full
    # evaluation that follows. The wake time NEVER has passed: the next one is full.
    if s.memo is not None:
        s.memo.wake = NEVER
    return out


def _hold(policy: Policy, s: UserState, now: float, e: Override, until: float) -> Decision:
    """Hold automatic action until `until`: the notices running are withdrawn."""
    s.hold_until = until
    s.pending = {}
    s.announced = {}
    return _decide(policy, s, "hold", s.status, now, e.event_id,
                   (Reason("APPEAL_HOLD", f"automatic action held until {format_time(until)} "
                                          f"by {e.operator}: {e.reason}", 0, 0),),
                   None, until, operator=e.operator)


def _add_score(s: UserState, t: float, score: int) -> None:
    """Keep only rolling-maximum candidates: no later point has a score as high."""
    points = s.scores
    if not points or t > points[-1][0]:
        # The latest report (the usual case). The candidates' scores strictly decrease
        # with time, so those the new point outdoes (score <= its own) are at the end.
        while points and points[-1][1] <= score:
            points.pop()
        points.append((t, score))
        if len(points) > SCORES_CAP:
            s.scores = capped_scores(points)
        return
    insort(points, (t, score))
    kept: list[tuple[float, int]] = []
    best = -1
    for at, value in reversed(points):
        if value > best:
            kept.append((at, value))
            best = value
    kept.reverse()
    s.scores = capped_scores(kept)


def _settled_low_due(ledger: dict[str, Installment]) -> float:
    """Memo.low_due: the earliest due date of a settled installment (INF if none)."""
    return min([i.due for i in ledger.values() if i.paid_at is not None], default=INF)


def _prune(policy: Policy, s: UserState, t: float, memo: Memo) -> None:
    ledger = s.ledger
    if ledger:
        window = policy.lateness_window
        keep_after = t - (window if window is not None else 0.0) - LEDGER_RETENTION
        # Only settled installments are dropped: nothing to drop while the ledger is
        # within its cap and no settled one's due date (of which low_due is a lower
        # bound) is older than keep_after. An old unpaid installment stays, and must
        # not make every evaluation look through the ledger again.
        if len(ledger) > LEDGER_CAP or memo.low_due < keep_after:
            settled = [(i.due, k) for k, i in ledger.items() if i.paid_at is not None]
            settled.sort()
            excess = len(ledger) - LEDGER_CAP
            for n, (due, key) in enumerate(settled):
                if due < keep_after or n < excess:
                    del ledger[key]
                    memo.dirty |= LEDGER_BITS
                    memo.stale |= LEDGER_PART
            memo.low_due = _settled_low_due(ledger)
    apps = s.applications
    if apps:
        window = policy.burst_window
        horizon = t - (window if window is not None else 0.0)
        if apps[0] <= horizon or len(apps) > APPLICATIONS_CAP:
            s.applications = [a for a in apps if a > horizon][-APPLICATIONS_CAP:]
            memo.dirty |= APPLICATION_BITS
            memo.stale |= APPLICATION_PART
    window = policy.drop_window
    if s.scores and window is not None and s.scores[0][0] <= t - window:
        s.scores = [p for p in s.scores if p[0] > t - window]
        memo.dirty |= SCORE_DROP_BIT
        memo.stale |= SCORE_PART


_Entry = tuple[int, Rule, int, Any, Any, tuple[float, ...], int]


class _Plan:
    """What `_refresh` needs of a policy, compiled once per policy object.

    Per enabled rule: its index, itself, its bit, its observer, its UNTIL (None when
    the rule only changes with an event) and the tier arithmetic below; and the part
    of the plan each mask of dirty rule bits selects, filled in as masks occur.
    """

    __slots__ = ("by_mask", "entries", "policy")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        entries = []
        for i, r in enumerate(policy.rules):
            until = UNTIL[r.code]
            # Tiers are strictly monotone (policy._tier checks it), so the crossed tiers
            # are a prefix of the tiers and counting them is a bisection: with the
            # thresholds ascending, bisect_right gives how many are <= the observed value
            # (the crossed ones of an "at or above" rule); for a "below" rule the crossed
            # ones are those > the observed value, i.e. all but that many.
            ascending = tuple(sorted(t.threshold for t in r.tiers))
            entries.append((i, r, RULE_BIT[r.code], OBSERVERS[r.code],
                            None if until is constant else until, ascending,
                            len(ascending) if r.below else 0))
        self.entries: tuple[_Entry, ...] = tuple(entries)
        self.by_mask: dict[int, tuple[_Entry, ...]] = {}

    def select(self, dirty: int) -> tuple[_Entry, ...]:
        todo = self.by_mask.get(dirty)
        if todo is None:
            todo = self.by_mask[dirty] = tuple(e for e in self.entries if dirty & e[2])
        return todo


# Per policy object (held, so that its id is not reused while it is a key): its plan.
_plans: dict[int, _Plan] = {}


def _plan(policy: Policy) -> _Plan:
    known = _plans.get(id(policy))
    if known is not None and known.policy is policy:
        return known
    if len(_plans) > 64:
        _plans.clear()
    plan = _plans[id(policy)] = _Plan(policy)
    return plan


def _refresh(policy: Policy, s: UserState, t: float, memo: Memo
             ) -> dict[int, float | int | None] | None:
    """Bring the memo's crossed-tier counts to time t; when any changed, what the
    rules re-observed now observed (by rule index), else None.

    Re-observes only the rules an applied event or a prune touched (memo.dirty)
    and those whose own next change (rules.UNTIL) has come.
    """
    dirty = memo.dirty
    until = memo.until
    if t >= memo.until_min:
        # Some rule's next change has come: walk every rule, skipping (below) those
        # neither dirty nor due. A first evaluation (dirty == -1) skips none.
        todo = memo.plan.entries
        every = dirty == -1
    elif dirty:
        todo = memo.plan.by_mask.get(dirty)  # only the dirty rules
        if todo is None:
            todo = memo.plan.select(dirty)
        every = True
    else:
        return None
    counts = memo.counts
    changed = False
    fresh = {}
    for i, rule, bit, observe, next_until, ascending, below in todo:
        if not every and not dirty & bit and t < until[i]:
            continue
        observed = fresh[i] = observe(policy, rule, s, t)
        if observed is None:
            n = 0
        elif below:
            n = below - bisect_right(ascending, observed)
        else:
            n = bisect_right(ascending, observed)
        if n != counts[i]:
            counts[i] = n
            changed = True
        until[i] = INF if next_until is None else next_until(policy, rule, s, t)
    memo.until_min = min(until) if until else INF  # (min's default= is slow)
    memo.dirty = 0
    return fresh if changed else None


def _crossed_now(policy: Policy, s: UserState, t: float, counts: list[int],
                 fresh: dict[int, float | int | None]
                 ) -> list[tuple[Rule, Tier, float | int]]:
    """`_crossed` from the memo's counts: observes only crossed rules not just observed."""
    out = []
    for i, rule in enumerate(policy.rules):
        n = counts[i]
        if n > 0:
            observed = fresh[i] if i in fresh else OBSERVERS[rule.code](policy, rule, s, t)
            assert observed is not None
            for tier in rule.tiers[:n]:
                out.append((rule, tier, observed))
    return out


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
    if len(s.pending) > len(live):  # every live key is pending: some are not live
        for key in [k for k in s.pending if k not in live]:
            del s.pending[key]  # the condition cleared: its warning lapses
    return due, waiting


def _level(due: list[Finding]) -> tuple[int, float]:
    """(rank, limit factor) of the strongest due action."""
    rank = 0
    factor = INF  # the least limit factor of a due downgrade
    for f in due:
        tier = f.tier
        if tier.rank > rank:
            rank = tier.rank
        if tier.rank == 2 and tier.limit_factor and tier.limit_factor < factor:
            factor = tier.limit_factor
    return rank, (factor if rank == 2 and factor != INF else 1.0)


def _evaluate(policy: Policy, s: UserState, t: float, trigger: str | None,
              correction: Correction | None) -> list[Decision]:
    s.clock = t
    memo = s.memo
    if memo is None or memo.policy is not policy:
        memo = _memo(policy, s)
    hold = s.hold_until
    if hold is not None and t >= hold:
        # The hold ran out (no decision says so): notices start afresh now, which the
        # memo's shortcut below, knowing nothing of holds, would skip.
        s.hold_until = None
        memo.wake = NEVER
    held = s.hold_until is not None
    _prune(policy, s, t, memo)
    fresh = _refresh(policy, s, t, memo)
    if (fresh is None and correction is None and t < memo.wake
            and (s.status == "active" or any(memo.counts))):
        # The same tiers crossed as at the last evaluation, none of them due since, no
        # correction, no cooling-off running: no decision, nothing to update.
        s.clear_since = None
        s.deadline = _next_deadline(policy, s, t, memo)
        return []
    if s.status == "active" and not any(memo.counts):
        # Active with no tier crossed (a new user, mostly): what the steps below come to.
        # No finding, so any pending notice lapses and no warning waits; no correction
        # applies to an active user and nothing is restored.
        s.pending.clear()
        memo.wake = INF
        s.clear_since = None
        s.deadline = _next_deadline(policy, s, t, memo)
        return []
    crossed = _crossed_now(policy, s, t, memo.counts, fresh or {})
    if held:  # no notice starts, runs out or is announced while a hold is in force
        due, waiting = [], []
    else:
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

    memo.wake = min([f.effective_at for f in waiting]) if waiting else INF
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

    if rank == 1 and not due and not waiting and not (held and crossed):
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

    s.deadline = _next_deadline(policy, s, t, memo)
    return out


def _next_deadline(policy: Policy, s: UserState, t: float, memo: Memo) -> float | None:
    """The earliest of: a pending notice running out, `next_change`, the cooling-off end."""
    # Each part of next_change(t) is the least time > t among times that depend on the
    # state only: while none of its inputs changed, the one found earlier holds if ahead.
    changes = memo.changes
    stale = memo.stale
    ledger, applications, scores, dormancy = changes
    if stale & LEDGER_PART or ledger <= t:
        ledger = changes[0] = ledger_change(policy, s, t)
    if stale & APPLICATION_PART or applications <= t:
        applications = changes[1] = application_change(policy, s, t)
    if stale & SCORE_PART or scores <= t:
        scores = changes[2] = score_change(policy, s, t)
    if stale & DORMANT_PART or dormancy <= t:
        dormancy = changes[3] = dormant_change(policy, s, t)
    memo.stale = 0
    best = min(ledger, applications, scores, dormancy)
    if s.pending:
        notice_of = policy.notice_of
        for key, since in s.pending.items():
            notice = notice_of.get(key)
            if notice is not None:
                at = since + notice
                if t < at < best:
                    best = at
    if s.clear_since is not None and STATUS_RANK[s.status] >= 2:
        at = s.clear_since + policy.cooling_off
        if t < at < best:
            best = at
    hold = s.hold_until
    if hold is not None and t < hold < best:  # the hold runs out: notices start then
        best = hold
    return best if best != INF else None


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
            effective_at: float | None = None, supersedes: str | None = None,
            operator: str | None = None) -> Decision:
    d = Decision(decision_id(policy.version, s.user_id, s.seq, action, t), s.user_id, action,
                 s.status, status_after, limit_factor, reasons, policy.version, trigger, t,
                 effective_at, supersedes, operator)
    s.seq += 1
    if action in ADVERSE_ACTIONS:
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
             supersedes: str | None = None, operator: str | None = None) -> Decision:
    d = _decide(policy, s, "restore", "active", t, trigger, (reason,), 1.0,
                supersedes=supersedes, operator=operator)
    s.limit_factor = 1.0
    s.announced = {}
    s.pending.clear()
    s.clear_since = None
    s.adverse_id = None
    s.adverse_codes = ()
    return d
