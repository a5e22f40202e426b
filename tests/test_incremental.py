"""The incremental core equals the reference (every rule re-observed every time).

Random event sequences and watermark ticks for one user, under policies that
enable, disable and re-shape rules: decisions and the dumped state must be
identical after every step, and the core's memo of crossed tiers must be what a
fresh observation finds.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from streams import core
from streams.events import DAY, Tick
from streams.policy import DEFAULT_POLICY, compile_policy
from streams.state import dump
from tests import reference_core
from tests.factories import application, day, repayment, report


def _policies() -> list[Any]:
    import yaml

    base = yaml.safe_load(DEFAULT_POLICY.read_text())
    out = [compile_policy(base)]
    dormant = yaml.safe_load(DEFAULT_POLICY.read_text())
    dormant["rules"]["DORMANT"] = {"enabled": True, "tiers": [
        {"threshold": 20.5, "action": "warn"},
        {"threshold": 45, "action": "close", "notice_days": 10}]}
    dormant["cooling_off_days"] = 7.5
    out.append(compile_policy(dormant))
    lean = yaml.safe_load(DEFAULT_POLICY.read_text())
    for code in ("REPEATED_LATENESS", "APPLICATION_BURST", "SCORE_DROP"):
        lean["rules"][code]["enabled"] = False
    lean["late_after_days"] = 3
    lean["rules"]["OVERDUE"]["tiers"] = [
        {"threshold": 2.5, "action": "warn"},
        {"threshold": 12, "action": "downgrade", "limit_factor": 0.4, "notice_days": 3}]
    out.append(compile_policy(lean))
    tight = yaml.safe_load(DEFAULT_POLICY.read_text())
    tight["rules"]["REPEATED_LATENESS"]["window_days"] = 20
    tight["rules"]["APPLICATION_BURST"]["window_days"] = 3
    tight["rules"]["APPLICATION_BURST"]["tiers"] = [
        {"threshold": 2, "action": "warn"},
        {"threshold": 3, "action": "downgrade", "limit_factor": 0.8, "notice_days": 1}]
    tight["rules"]["SCORE_DROP"]["window_days"] = 10
    tight["rules"]["SCORE_DROP"]["tiers"] = [
        {"threshold": 20, "action": "warn"},
        {"threshold": 40, "action": "close", "notice_days": 2}]
    tight["dedupe_ids"] = 2
    out.append(compile_policy(tight))
    return out


POLICIES = _policies()

# Whole days mostly, so that dues, windows and notices coincide as they do in real logs.
_time = st.integers(0, 60).map(float) | st.floats(0, 60, allow_nan=False).map(
    lambda x: round(x, 3))
_repayment = st.builds(
    lambda at, due, loan, n, paid, amount: repayment(
        at, due=due, loan=f"L{loan}", n=n,
        paid_at=None if paid is None else at + paid,
        amount_paid=None if paid is not None else amount),
    _time, st.sampled_from([-5, 0, 3, 10, 20, 30]), st.integers(0, 3), st.integers(1, 3),
    st.none() | st.integers(-30, 5).map(float),
    st.none() | st.sampled_from([0.0, 50.0, 100.0]))
_application = st.builds(lambda at, kind: application(at, kind=kind), _time,
                         st.sampled_from(["drawdown", "limit_increase"]))
_report = st.builds(
    lambda at, fields: report(at, **fields), _time,
    st.fixed_dictionaries({}, optional={
        "credit_score": st.integers(300, 950),
        "open_lenders": st.integers(0, 12),
        "hard_inquiries_30d": st.integers(0, 12),
        "delinquent_accounts": st.integers(0, 4),
        "total_debt": st.sampled_from([0.0, 1000.0, 200_000.0, 500_000.0]),
        "monthly_income": st.sampled_from([0.0, 1000.0, 10_000.0])}))
_item = _repayment | _application | _report | _time.map(lambda x: Tick(day(x)))


def _checked_evaluate(policy, s, t, trigger, correction):  # type: ignore[no-untyped-def]
    """core._evaluate, then: the memo's counts are what a fresh observation finds."""
    out = _evaluate(policy, s, t, trigger, correction)
    fresh = core._crossed(policy, s, t)
    assert s.memo is not None and s.memo.dirty == 0
    assert s.memo.counts == [sum(1 for r, _, _ in fresh if r is rule) for rule in policy.rules]
    return out


_evaluate = core._evaluate


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(_item, min_size=1, max_size=60), which=st.integers(0, len(POLICIES) - 1),
       redeliver=st.booleans())
@example(items=[repayment(0, due=10, loan="A"), repayment(0, due=10, loan="B"), Tick(day(11.5))],
         which=0, redeliver=False)
def test_incremental_core_equals_reference(items: list[Any], which: int, redeliver: bool):
    policy = POLICIES[which]
    if redeliver:
        items = items + [i for i in items[::3] if not isinstance(i, Tick)]
    fast = ref = None
    core._evaluate = _checked_evaluate
    try:
        for item in items:
            fast, got = core.step(policy, fast, item)
            ref, want = reference_core.step(policy, ref, item)
            assert [d.as_dict() for d in got] == [d.as_dict() for d in want]
            assert (fast is None) == (ref is None)
            if fast is not None and ref is not None:
                assert dump(fast) == dump(ref)
    finally:
        core._evaluate = _evaluate


def test_reference_policies_differ():
    assert len({p.version for p in POLICIES}) == 1  # same version, different rules
    assert POLICIES[1].rule("DORMANT") is not None and POLICIES[2].rule("SCORE_DROP") is None
    assert DAY == 86_400.0
