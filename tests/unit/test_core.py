"""The decision core: one test per rule and per transition, plain asserts on `step`."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import _engine
from streams.codec import Rejection, decode
from streams.compiled import compiled_policy
from streams.events import DAY, Event, Tick
from streams.policy import compile_policy, load_policy
from tests.factories import application, day, encode, override, repayment, report
from tests.oracle.core import rejection, step
from tests.oracle.decisions import Decision
from tests.oracle.rules import LEVERAGE_CAP, leverage
from tests.oracle.state import UserState, dump, load

POLICY = load_policy()


def run(items: Iterable[Event | float], policy=POLICY, state: UserState | None = None
        ) -> tuple[UserState | None, list[Decision]]:
    """Events in order; a number is a watermark tick at that day.

    Every step is taken twice: by the Python core (whose state and decisions the
    tests read) and by the engine (`streams._engine`, from the record as a producer
    writes it, its state stored and loaded between steps), and the two must agree
    byte for byte: each test's expectations are the engine's too. An event the
    core does not apply (an override for a user with no state) is rejected by both,
    for the same reason."""
    engine = compiled_policy(policy)
    stored = None if state is None else dump(state)
    out: list[Decision] = []
    for item in items:
        want_rejected = None
        if isinstance(item, int | float):
            ev: Event | Tick = Tick(day(item))
            stored, lines, rejected = _engine.step(engine, stored, tick=ev.at)
        else:
            raw = encode(item)
            decoded = decode(raw)
            assert not isinstance(decoded, Rejection)
            ev = decoded
            stored, lines, rejected = _engine.step(engine, stored, raw=raw)
            why = rejection(state, decoded)
            if why is not None:
                want_rejected = (why.reason, why.detail, why.event_type)
        state, ds = step(policy, state, ev)
        assert rejected == want_rejected
        assert lines == [d.to_json() for d in ds]
        assert stored == (None if state is None else dump(state))
        out += ds
    return state, out


def actions(ds: list[Decision]) -> list[tuple[str, str]]:
    return [(d.action, d.reasons[0].code) for d in ds]


def policy_with(**rules) -> object:
    data = yaml_default()
    for code, body in rules.items():
        data["rules"][code] = body
    return compile_policy(data)


def yaml_default() -> dict:
    import yaml

    from streams.policy import DEFAULT_POLICY

    return yaml.safe_load(DEFAULT_POLICY.read_text())


# --- OVERDUE: graded tiers fired by deadlines -------------------------------------------

def test_two_loans_overdue_at_one_deadline_give_one_warning_with_both_reasons():
    _, ds = run([repayment(0, due=10, loan="A"), repayment(0, due=10, loan="B"), 11.5])
    assert actions(ds) == [("warn", "OVERDUE")]
    assert [(r.code, r.observed) for r in ds[0].reasons] == [
        ("OVERDUE", 1), ("REPEATED_LATENESS", 2)]


def test_overdue_warns_then_downgrades_then_closes_on_deadlines():
    _, ds = run([repayment(0, due=10), 200])
    assert actions(ds) == [("warn", "OVERDUE"), ("downgrade", "OVERDUE"), ("close", "OVERDUE")]
    warn, down, close = ds
    assert warn.event_time == day(11) and warn.effective_at == day(11)
    assert warn.trigger_event_id is None  # a deadline fired it
    assert down.event_time == day(40) and down.limit_factor == 0.5
    assert down.status_before == "warned" and down.status_after == "downgraded"
    assert close.event_time == day(100) and close.limit_factor is None
    assert close.reasons[0].observed == 90 and close.reasons[0].threshold == 90
    assert warn.reasons[0].message == "an installment is 1 day past due (limit 1)"
    assert close.reasons[0].message == "an installment is 90 days past due (limit 90)"


def test_deadline_decisions_do_not_depend_on_tick_granularity():
    events = [repayment(0, due=10)]
    _, coarse = run([*events, 200])
    _, fine = run([*events, *range(1, 201)])
    assert [d.as_dict() for d in coarse] == [d.as_dict() for d in fine]


def test_no_decision_is_repeated_per_event():
    items: list = [repayment(0, due=10), 12]
    items += [application(13 + i * 0.1) for i in range(3)]
    _, ds = run(items)
    assert actions(ds) == [("warn", "OVERDUE")]


def test_event_fires_pending_deadlines_before_it_is_applied():
    # No tick at all: the next event at day 45 fires the day-11 warn and day-40 downgrade first.
    _, ds = run([repayment(0, due=10), application(45)])
    assert [(d.action, d.event_time) for d in ds] == [("warn", day(11)), ("downgrade", day(40))]
    assert all(d.trigger_event_id is None for d in ds)


def test_severe_condition_acts_at_once_with_strongest_action():
    # First record shows 95 days unpaid and a multi-lender warn: one close, both reasons.
    _, ds = run([report(100, open_lenders=6), repayment(105, due=10)])
    assert actions(ds) == [("warn", "MULTI_LENDER"), ("close", "OVERDUE")]
    close = ds[-1]
    assert [r.code for r in close.reasons] == ["OVERDUE", "MULTI_LENDER"]
    assert close.trigger_event_id is not None


# --- warn with notice: act, or lapse ------------------------------------------------------

def test_warn_then_act_after_notice():
    _, ds = run([report(0, credit_score=510), 30])
    assert actions(ds) == [("warn", "SCORE_BELOW_MIN"), ("downgrade", "SCORE_BELOW_MIN")]
    warn, down = ds
    assert warn.effective_at == day(14)
    assert down.event_time == day(14) and down.limit_factor == 0.6


def test_warning_lapses_when_condition_clears_before_notice():
    _, ds = run([report(0, credit_score=510), report(5, credit_score=700), 30])
    assert actions(ds) == [("warn", "SCORE_BELOW_MIN"), ("restore", "CURED")]
    assert ds[1].status_before == "warned" and ds[1].status_after == "active"


def test_warn_tier_lapses_when_overdue_is_paid():
    _, ds = run([repayment(0, due=10), repayment(13, due=10, paid_at=13), 60])
    assert actions(ds) == [("warn", "OVERDUE"), ("restore", "CURED")]


# --- recovery -------------------------------------------------------------------------------

def test_restore_after_cooling_off():
    _, ds = run([repayment(0, due=10), repayment(45, due=10, paid_at=45), 74])
    assert actions(ds) == [("warn", "OVERDUE"), ("downgrade", "OVERDUE")]  # 29 days clear
    _, ds = run([repayment(0, due=10), repayment(45, due=10, paid_at=45), 80])
    assert actions(ds)[-1] == ("restore", "CURED")
    restore = ds[-1]
    assert restore.event_time == day(75) and restore.limit_factor == 1.0
    assert restore.reasons[0].observed == 30
    assert restore.reasons[0].message == "no adverse condition for 30 days (cooling-off 30 days)"
    one_day = yaml_default()
    one_day["cooling_off_days"] = 1
    _, ds = run([repayment(0, due=10), repayment(45, due=10, paid_at=45), 50],
                policy=compile_policy(one_day))
    assert ds[-1].reasons[0].message == "no adverse condition for 1 day (cooling-off 1 day)"


def test_cooling_off_restarts_when_a_condition_returns():
    items = [repayment(0, due=10), repayment(45, due=10, paid_at=45),
             report(60, open_lenders=6), report(62, open_lenders=2), 91]
    _, ds = run(items)
    assert ("restore", "CURED") not in actions(ds)  # clear only since day 62
    _, ds = run([*items, 93])
    assert actions(ds)[-1] == ("restore", "CURED") and ds[-1].event_time == day(92)


def test_correction_reverses_closure():
    # Paid on time, but the ledger's record of it arrives 120 days later.
    items = [repayment(0, due=10), 110,
             repayment(130, due=10, paid_at=9.5)]
    _, ds = run(items)
    assert actions(ds) == [("warn", "OVERDUE"), ("downgrade", "OVERDUE"), ("close", "OVERDUE"),
                           ("restore", "DATA_CORRECTION")]
    restore = ds[-1]
    assert restore.supersedes == ds[2].decision_id
    assert restore.reasons[0].observed == 0 and restore.reasons[0].threshold == 120
    assert restore.status_after == "active" and restore.trigger_event_id == items[-1].event_id


def test_correction_restores_to_what_other_rules_still_justify():
    items = [repayment(0, due=10), report(1, delinquent_accounts=1), 45,
             repayment(50, due=10, paid_at=9)]
    _, ds = run(items)
    # Downgraded to 0.6 at day 15 (external delinquency after 14 days notice), to 0.5 at
    # day 40 (OVERDUE 30). The correction undoes the second cut only.
    assert actions(ds) == [("warn", "EXTERNAL_DELINQUENCY"), ("downgrade", "EXTERNAL_DELINQUENCY"),
                           ("downgrade", "OVERDUE"), ("restore", "DATA_CORRECTION"),
                           ("downgrade", "EXTERNAL_DELINQUENCY")]
    assert ds[3].supersedes == ds[2].decision_id
    assert ds[4].limit_factor == 0.6 and ds[4].event_time == day(50)


def test_correction_leaves_a_restriction_other_rules_justify():
    items = [report(1, delinquent_accounts=3), repayment(2, due=10), 45,
             repayment(50, due=10, paid_at=9)]
    _, ds = run(items)
    assert ("close", "EXTERNAL_DELINQUENCY") in actions(ds)
    assert ("restore", "DATA_CORRECTION") not in actions(ds)
    assert ds[-1].status_after == "closed"


def test_late_payment_is_not_a_correction():
    _, ds = run([repayment(0, due=10), 45, repayment(46, due=10, paid_at=46)])
    assert ("restore", "DATA_CORRECTION") not in actions(ds)


def test_late_payment_recorded_after_it_was_made_is_not_a_correction():
    # Paid 35 days late (day 45.9), recorded hours later, past midnight: the ledger had it
    # at 36 days, the record says 35. The 30-day downgrade was right: no DATA_CORRECTION,
    # a CURED restore after the cooling-off instead.
    _, ds = run([repayment(0, due=10), 45, repayment(46.1, due=10, paid_at=45.9), 120])
    assert actions(ds) == [("warn", "OVERDUE"), ("downgrade", "OVERDUE"), ("restore", "CURED")]
    assert ds[-1].event_time == day(46.1) + 30 * DAY
    _, ds = run([repayment(0, due=10), repayment(60, due=10, paid_at=45), 120])
    assert ("restore", "DATA_CORRECTION") not in actions(ds)


def test_correction_below_the_tier_a_restriction_rested_on_restores():
    # The ledger had it unpaid until day 45 (35 days, downgraded at 30); the record that
    # arrives then says it was paid on day 20, 10 days late: the 30-day tier never held.
    _, ds = run([repayment(0, due=10), 45, repayment(45.5, due=10, paid_at=20)])
    assert actions(ds) == [("warn", "OVERDUE"), ("downgrade", "OVERDUE"),
                           ("restore", "DATA_CORRECTION")]
    assert (ds[-1].reasons[0].observed, ds[-1].reasons[0].threshold) == (10, 35)


def test_correction_leaves_a_restriction_that_rested_on_other_rules():
    # An OVERDUE warning, cleared; a MULTI_LENDER downgrade, whose condition then clears;
    # a late correction of the old installment does not cut the downgrade's cooling-off.
    base = [repayment(-5, due=0), 1.5, report(2, open_lenders=9),
            repayment(3, due=0, paid_at=3), 20, report(30, open_lenders=2)]
    _, plain = run([*base, 100])
    _, corrected = run([*base, repayment(35, due=0, paid_at=-0.5), 100])
    assert ("downgrade", "MULTI_LENDER") in actions(plain)
    assert actions(corrected) == actions(plain)
    assert actions(corrected)[-1] == ("restore", "CURED")
    assert corrected[-1].event_time == plain[-1].event_time


def test_a_warning_is_effective_when_its_first_action_would_be_taken():
    # Three accounts overdue elsewhere: a downgrade after 14 days' notice, a close after
    # 30. The one warning announces both; it takes effect with the first.
    _, ds = run([report(0, delinquent_accounts=3), 60])
    assert [d.action for d in ds] == ["warn", "downgrade", "close"]
    assert ds[0].effective_at == ds[1].event_time == day(14)
    assert ds[2].event_time == day(30)


def test_no_action_without_a_warning_that_named_its_reason():
    # Warned of an EXTERNAL_DELINQUENCY cut to 0.6 (day 14); at day 5 a low score starts
    # a SCORE_BELOW_MIN cut to 0.6 (day 19), which the warning already given covers (the
    # same cut, sooner); at day 10 the delinquency clears, and the score's cut, now
    # covered by nothing, is announced that day rather than sprung on day 19.
    _, ds = run([report(0, delinquent_accounts=1), report(5, credit_score=510),
                 report(10, delinquent_accounts=0), 40])
    assert [(d.action, [r.code for r in d.reasons]) for d in ds[:2]] == [
        ("warn", ["EXTERNAL_DELINQUENCY"]), ("warn", ["SCORE_BELOW_MIN"])]
    assert ds[1].event_time == day(10) and ds[1].effective_at == day(19)
    assert actions(ds[2:]) == [("downgrade", "SCORE_BELOW_MIN")]
    assert ds[2].event_time == day(19)


def test_a_further_cut_is_announced():
    # Downgraded to 0.6 by a score under 520 (day 14, after notice); a delinquency
    # elsewhere then starts a notice of another 0.6 cut (no further cut: no warning), and
    # a leverage of 3 one of 0.7 (no further cut either). A score under 450 starts the
    # close's notice: announced.
    _, ds = run([report(0, credit_score=510), 20, report(21, delinquent_accounts=1),
                 report(22, total_debt=360_000, monthly_income=10_000), 25,
                 report(26, credit_score=440), 70])
    assert [d.action for d in ds] == ["warn", "downgrade", "warn", "close"]
    assert ds[2].event_time == day(26) and ds[2].status_after == "downgraded"
    assert ds[2].effective_at == ds[3].event_time == day(56)


def test_a_deeper_cut_is_announced_before_it_is_made():
    # Downgraded to 0.7 for leverage (day 30); a delinquency elsewhere on day 32 starts the
    # notice of a cut to 0.6 (day 46): a warning says so that day.
    _, ds = run([report(0, total_debt=360_000, monthly_income=10_000), 31,
                 report(32, delinquent_accounts=1), 50])
    assert [(d.action, d.limit_factor) for d in ds] == [
        ("warn", None), ("downgrade", 0.7), ("warn", None), ("downgrade", 0.6)]
    assert ds[2].event_time == day(32) and ds[2].status_after == "downgraded"
    assert ds[2].effective_at == ds[3].event_time == day(46)


def test_a_long_fall_is_measured_from_the_windows_high():
    # 40 reports two days apart, each 4 points lower: 900 to 744, a fall of 156, more
    # rolling-maximum candidates than a state keeps (32). The high of 900 is kept.
    items: list[Event | float] = [report(2 * k, credit_score=900 - 4 * k) for k in range(40)]
    _, ds = run([*items, 100])
    assert actions(ds)[-1] == ("downgrade", "SCORE_DROP")
    assert max(r.observed for d in ds for r in d.reasons if r.code == "SCORE_DROP") == 156


def test_after_a_correction_a_cut_no_warning_named_gets_its_notice():
    # Downgraded to 0.5 for OVERDUE (day 30); open credit at 8 lenders from day 35 (a 0.6
    # cut after 14 days' notice, no cut while at 0.5, so not announced); the overdue is
    # corrected on day 52. The restore is followed by a warning of the MULTI_LENDER cut,
    # effective 14 days on, not by the cut at once.
    _, ds = run([repayment(0, due=0), 32, report(35, open_lenders=8), 50,
                 repayment(52, due=0, paid_at=0), 70])
    assert [(d.action, d.reasons[0].code) for d in ds] == [
        ("warn", "OVERDUE"), ("downgrade", "OVERDUE"), ("restore", "DATA_CORRECTION"),
        ("warn", "MULTI_LENDER"), ("downgrade", "MULTI_LENDER")]
    assert ds[3].event_time == day(52) and ds[3].effective_at == ds[4].event_time == day(66)
    assert ds[4].limit_factor == 0.6


def test_stale_record_does_not_override_newer_one():
    newer = repayment(20, due=10, paid_at=9)
    stale = repayment(5, due=10)  # older occurred_at, delivered after: loses
    _, ds = run([newer, stale, 60])
    assert ds == []


# --- the other rules ------------------------------------------------------------------------

def test_repeated_lateness_counts_late_installments_in_window():
    items = []
    for n in range(1, 4):
        due = 30 * n
        items += [repayment(due - 20, due=due, n=n),
                  repayment(due + 5, due=due, n=n, paid_at=due + 5)]
    _, ds = run([*items, 200])
    assert ("downgrade", "REPEATED_LATENESS") in actions(ds)
    down = next(d for d in ds if d.action == "downgrade")
    assert down.reasons[0].observed == 3 and down.limit_factor == 0.7


def test_score_drop_from_rolling_max():
    _, ds = run([report(0, credit_score=800), report(10, credit_score=640), 40])
    assert ("downgrade", "SCORE_DROP") in actions(ds)
    drop = next(d for d in ds if d.action == "downgrade").reasons[0]
    assert drop.observed == 160 and drop.threshold == 150


def test_score_drop_forgets_maximum_outside_window():
    _, ds = run([report(0, credit_score=800), report(200, credit_score=700), 230])
    assert ds == []


def test_multi_lender_warn_and_downgrade():
    _, ds = run([report(0, open_lenders=9), 20])
    assert actions(ds) == [("warn", "MULTI_LENDER"), ("downgrade", "MULTI_LENDER")]


def test_application_burst_counts_applications_and_hard_inquiries():
    items = [application(i * 0.5) for i in range(4)] + [report(2, hard_inquiries_30d=2)]
    _, ds = run(items)
    assert actions(ds) == [("warn", "APPLICATION_BURST")]
    assert ds[0].reasons[0].observed == 6


def test_application_burst_lapses_as_window_slides():
    items = [application(i * 0.1) for i in range(6)]
    _, ds = run([*items, 40])
    assert actions(ds) == [("warn", "APPLICATION_BURST"), ("restore", "CURED")]
    assert ds[1].event_time == day(30)  # the first application left the 30-day window


def test_external_delinquency_downgrades_after_notice():
    _, ds = run([report(0, delinquent_accounts=1), 20])
    assert actions(ds) == [("warn", "EXTERNAL_DELINQUENCY"), ("downgrade", "EXTERNAL_DELINQUENCY")]
    assert ds[1].event_time == day(14)


def test_over_leverage_uses_annual_income():
    _, ds = run([report(0, total_debt=200_000, monthly_income=10_000)])
    assert actions(ds) == [("warn", "OVER_LEVERAGE")]
    assert ds[0].reasons[0].observed == pytest.approx(200_000 / 120_000, abs=1e-3)


def test_over_leverage_is_not_rounded_up_to_its_limit():
    # 17,995 over 12,000 is 1.49958: below the 1.5 limit, though it rounds to 1.5.
    _, ds = run([report(0, total_debt=17_995, monthly_income=1_000)])
    assert ds == []
    _, ds = run([report(0, total_debt=18_000, monthly_income=1_000)])
    assert actions(ds) == [("warn", "OVER_LEVERAGE")]
    assert ds[0].reasons[0].observed == 1.5


def test_leverage_is_shown_to_three_decimals_never_rounded_up():
    exact = [leverage(12_000 * k / 1000, 1_000) for k in range(1, 5001)]
    assert exact == [k / 1000 for k in range(1, 5001)]  # 12,012 over 12,000 is 1.001
    assert leverage(17_995, 1_000) == 1.499 and leverage(17_999.99, 1_000) == 1.499


def test_over_leverage_of_a_tiny_income_is_a_finite_number():
    _, ds = run([report(0, total_debt=1e12, monthly_income=1e-300)])
    reason = next(r for d in ds for r in d.reasons if r.code == "OVER_LEVERAGE")
    assert reason.observed == LEVERAGE_CAP
    written = [r for d in ds for r in orjson.loads(d.to_json())["reasons"]]
    assert [r["observed"] for r in written if r["code"] == "OVER_LEVERAGE"] == [LEVERAGE_CAP]


def test_over_leverage_needs_an_income_on_file():
    _, ds = run([report(0, total_debt=200_000)])
    assert ds == []


def test_dormant_is_off_by_default_and_works_when_enabled():
    items = [application(0), repayment(1, due=30), repayment(30, due=30, paid_at=30), 500]
    assert run(items)[1] == []
    policy = policy_with(DORMANT={"enabled": True, "tiers": [
        {"threshold": 365, "action": "close", "notice_days": 30}]})
    _, ds = run(items, policy=policy)
    assert actions(ds) == [("warn", "DORMANT"), ("close", "DORMANT")]
    assert ds[0].event_time == day(365) and ds[1].event_time == day(395)


# --- grading, reasons, ids, idempotence -----------------------------------------------------

def test_further_downgrade_to_lower_limit_is_a_transition():
    _, ds = run([report(0, open_lenders=9), repayment(1, due=22), 60])
    assert actions(ds) == [("warn", "MULTI_LENDER"), ("downgrade", "MULTI_LENDER"),
                           ("downgrade", "OVERDUE")]
    assert [d.limit_factor for d in ds[1:]] == [0.6, 0.5]
    assert ds[2].status_before == ds[2].status_after == "downgraded"
    assert ds[2].event_time == day(52)


def test_at_most_four_reasons_ranked_by_action():
    items = [report(0, credit_score=540, open_lenders=6, total_debt=300_000, monthly_income=10_000,
                    hard_inquiries_30d=7), repayment(1, due=0)]
    _, ds = run(items)
    assert all(1 <= len(d.reasons) <= 4 for d in ds)
    first = ds[0]
    assert first.action == "warn" and len(first.reasons) == 4


def test_duplicate_event_changes_nothing():
    e = repayment(0, due=10)
    s1, d1 = run([e, 50])
    s2, d2 = run([e, e, 50])
    assert dump(s1) == dump(s2) and [d.as_dict() for d in d1] == [d.as_dict() for d in d2]


def test_decision_ids_are_deterministic_and_unique():
    items = [repayment(0, due=10, event_id="x1"), 200]
    _, a = run(items)
    _, b = run(items)
    assert [d.decision_id for d in a] == [d.decision_id for d in b]
    assert len({d.decision_id for d in a}) == len(a)
    other = compile_policy({**yaml_default(), "version": "other"})
    _, c = run(items, policy=other)
    assert {d.decision_id for d in c}.isdisjoint(d.decision_id for d in a)


def test_state_round_trips_mid_stream():
    head = [repayment(0, due=10, event_id="h1"), report(3, credit_score=600, event_id="h2"), 20]
    tail = [repayment(50, due=10, paid_at=50, event_id="t1"), 120]
    s, _ = run(head)
    assert s is not None
    _, direct = run(tail, state=copy.deepcopy(s))
    _, via_json = run(tail, state=load(dump(s)))
    assert [d.as_dict() for d in direct] == [d.as_dict() for d in via_json]
    assert direct  # the restore happened


def test_a_state_stored_before_announced_counts_its_notices_as_announced():
    s, ds = run([report(0, delinquent_accounts=1), report(5, credit_score=510)])
    assert s is not None and len(ds) == 1
    assert s.announced == {"EXTERNAL_DELINQUENCY/0": day(0)}
    assert load(dump(s)).announced == s.announced
    older = orjson.loads(dump(s))
    del older["W"]  # as a changelog written before the field holds it
    restored = load(orjson.dumps(older))
    assert restored.announced == s.pending
    _, ds = run([20], state=restored)  # no warning of what was pending
    assert actions(ds) == [("downgrade", "EXTERNAL_DELINQUENCY")]


def test_a_flickering_condition_is_not_announced_again():
    # A score at the downgrade line (520) flickers daily while MULTI_LENDER holds: one
    # warning, which named both, then the downgrade; not a warning a flicker.
    items: list[Event | float] = [report(0, open_lenders=8, credit_score=515)]
    items += [report(k, credit_score=525 if k % 2 else 515) for k in range(1, 9)]
    _, ds = run([*items, 20])
    assert [d.action for d in ds] == ["warn", "downgrade"]
    assert [r.code for r in ds[0].reasons] == ["SCORE_BELOW_MIN", "MULTI_LENDER"]


def test_a_condition_that_clears_and_comes_back_is_announced_again():
    # A close announced for day 30 lapses (day 20: two accounts overdue elsewhere, not
    # three); it comes back on day 25 with a new notice: a new warning, for day 55.
    _, ds = run([report(0, delinquent_accounts=3), 15, report(20, delinquent_accounts=2),
                 report(25, delinquent_accounts=4), 60])
    assert [(d.action, d.event_time) for d in ds] == [
        ("warn", day(0)), ("downgrade", day(14)), ("warn", day(25)), ("close", day(55))]
    assert ds[2].effective_at == day(55) and ds[2].status_after == "downgraded"


def test_a_tier_starting_at_the_time_of_the_last_warning_is_announced():
    # Two reports at the same time, or the second applied late at the user's clock: the
    # APPLICATION_BURST cut (7 days' notice) gets its own warning before it acts.
    for second in (0, -3):
        _, ds = run([report(0, open_lenders=8), report(second, hard_inquiries_30d=10), 20])
        assert [(d.action, [r.code for r in d.reasons]) for d in ds] == [
            ("warn", ["MULTI_LENDER"]), ("warn", ["MULTI_LENDER", "APPLICATION_BURST"]),
            ("downgrade", ["APPLICATION_BURST", "MULTI_LENDER"]),
            ("downgrade", ["MULTI_LENDER", "APPLICATION_BURST"])], second
        assert ds[1].event_time == day(0) and ds[1].effective_at == ds[2].event_time == day(7)


def test_late_event_is_applied_at_the_users_clock():
    s, _ = run([report(50, open_lenders=1)])
    s, ds = run([application(40)], state=s)  # 10 days behind the user's clock
    assert s is not None and s.clock == day(50) and ds == []
    assert s.applications == [day(40)]
    s, ds = run([application(10)], state=s)  # outside the burst window at the clock: forgotten
    assert s is not None and s.applications == [day(40)]


def test_tick_without_state_is_a_no_op():
    assert step(POLICY, None, Tick(day(1))) == (None, [])


def test_deadline_is_strictly_in_the_future():
    s, _ = run([repayment(0, due=10), report(1, credit_score=510), application(2)])
    assert s is not None and s.deadline is not None and s.deadline > s.clock
    assert s.deadline == min(day(11), day(1) + 14 * DAY)


def test_a_dumped_state_holds_no_more_memory_than_its_length() -> None:
    """The table keeps every user's dumped state: each must own about its length
    (orjson's own bytes keep its whole output buffer, about 8 KB)."""
    import tracemalloc

    state, _ = run([report(1, credit_score=700), repayment(2, due=30)])
    assert state is not None
    size = len(dump(state))
    tracemalloc.start()
    try:
        kept = [dump(state) for _ in range(200)]
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == 200 and traced / 200 < 2 * size + 200


# --- operator overrides: restore, hold, release ---------------------------------------------

HELD_MESSAGE = "automatic action held until {} by ops-1: appeal under review"


def timeline(ds: list[Decision]) -> list[tuple[str, str, float]]:
    """(action, first reason code, event time in days after T0) of each decision."""
    return [(d.action, d.reasons[0].code, round((d.event_time - day(0)) / DAY, 6)) for d in ds]


def test_an_operator_restores_a_closed_user_whose_arrears_are_paid():
    # Closed at day 100, paid at day 112: the cooling-off would restore on day 142; the
    # operator restores on day 115, and nothing follows.
    items = [repayment(0, due=10), 110, repayment(112, due=10, paid_at=112),
             override(115, "restore")]
    s, ds = run([*items, 200])
    assert timeline(ds) == [("warn", "OVERDUE", 11), ("downgrade", "OVERDUE", 40),
                            ("close", "OVERDUE", 100), ("restore", "OVERRIDE", 115)]
    close, restore = ds[2], ds[3]
    assert (restore.status_before, restore.status_after, restore.limit_factor) == (
        "closed", "active", 1.0)
    assert restore.trigger_event_id == items[-1].event_id and restore.supersedes is None
    assert restore.effective_at is None and restore.operator == "ops-1"
    [reason] = restore.reasons
    assert reason.message == "restored by ops-1: appeal under review"
    assert (reason.observed, reason.threshold) == (0, 0) and type(reason.observed) is int
    written = orjson.loads(restore.to_json())
    assert list(written)[-1] == "operator" and written["operator"] == "ops-1"
    assert b'"observed":0,"threshold":0' in restore.to_json()
    assert "operator" not in close.as_dict()  # automatic decisions are written as before
    assert s is not None and (s.status, s.limit_factor, s.adverse_id, s.adverse_codes,
                              s.clear_since, s.hold_until) == ("active", 1.0, None, (), None, None)
    assert b'"H"' not in dump(s)


def test_a_restore_without_a_hold_leaves_the_rules_to_act_again_at_once():
    # Still 101 days past due when restored: the close tier, without notice, acts again.
    _, ds = run([repayment(0, due=10), 110, override(111, "restore")])
    assert timeline(ds)[3:] == [("restore", "OVERRIDE", 111), ("close", "OVERDUE", 111)]
    assert ds[4].trigger_event_id == ds[3].trigger_event_id


def test_a_restore_with_until_restores_then_holds_until_then():
    items = [repayment(0, due=10), 110, override(111, "restore", until=131)]
    s, ds = run([*items, 130])
    assert timeline(ds)[3:] == [("restore", "OVERRIDE", 111), ("hold", "APPEAL_HOLD", 111)]
    restore, hold = ds[3:]
    assert (hold.status_before, hold.status_after, hold.limit_factor) == ("active", "active", None)
    assert hold.effective_at == day(131) and hold.supersedes is None
    assert hold.trigger_event_id == restore.trigger_event_id == items[-1].event_id
    assert hold.reasons[0].message == HELD_MESSAGE.format("2026-05-12T00:00:00Z")
    assert (hold.reasons[0].observed, hold.reasons[0].threshold) == (0, 0)
    assert hold.decision_id not in (restore.decision_id, ds[2].decision_id)
    assert s is not None and s.status == "active" and s.hold_until == day(131)
    assert s.deadline == day(131)  # the hold's end is a deadline
    assert list(orjson.loads(dump(s)))[-1] == "H"
    # Still unpaid when the hold runs out: closed again then, by a deadline.
    _, ds = run([*items, 200])
    assert timeline(ds)[5:] == [("close", "OVERDUE", 131)]
    assert ds[5].trigger_event_id is None


def test_a_hold_withdraws_the_notice_running_and_a_fresh_one_starts_when_it_ends():
    items = [report(0, credit_score=510), override(5, "hold", until=20)]
    s, ds = run(items)
    assert timeline(ds) == [("warn", "SCORE_BELOW_MIN", 0), ("hold", "APPEAL_HOLD", 5)]
    assert ds[0].effective_at == day(14)  # the downgrade the warning announced
    assert ds[1].status_before == ds[1].status_after == "warned"
    assert s is not None and s.pending == {} and s.announced == {} and s.status == "warned"
    assert s.deadline == day(20)
    _, ds = run([*items, 19.9])
    assert timeline(ds)[2:] == []  # no downgrade on day 14 while held
    _, ds = run([*items, 40])
    assert timeline(ds)[2:] == [("warn", "SCORE_BELOW_MIN", 20),
                                ("downgrade", "SCORE_BELOW_MIN", 34)]
    warn = ds[2]
    assert warn.effective_at == day(34) and warn.trigger_event_id is None
    assert warn.status_before == warn.status_after == "warned"


def test_no_notice_starts_while_a_hold_is_in_force():
    items = [report(0, credit_score=700), override(1, "hold", until=10),
             report(3, credit_score=510)]
    s, ds = run(items)
    assert timeline(ds) == [("hold", "APPEAL_HOLD", 1)]
    assert s is not None and s.status == "active" and s.pending == {}
    _, ds = run([*items, 30])
    assert timeline(ds)[1:] == [("warn", "SCORE_BELOW_MIN", 10),
                                ("downgrade", "SCORE_BELOW_MIN", 24)]


def test_a_hold_that_runs_out_makes_no_decision_and_leaves_no_trace_in_the_state():
    items = [report(0, credit_score=700), override(1, "hold", until=10)]
    s, _ = run(items)
    assert s is not None and s.hold_until == day(10) and s.deadline == day(10)
    s, ds = run([*items, 12])
    assert timeline(ds) == [("hold", "APPEAL_HOLD", 1)]
    assert s is not None and s.hold_until is None
    assert s.deadline == day(180)  # what is left: the score report leaves its window
    assert b'"H"' not in dump(s) and load(dump(s)).hold_until is None


def test_a_downgraded_user_who_clears_is_restored_after_the_cooling_off_while_held():
    items = [report(0, open_lenders=9), 20, override(21, "hold", until=100),
             report(25, open_lenders=2)]
    s, ds = run([*items, 60])
    assert timeline(ds) == [("warn", "MULTI_LENDER", 0), ("downgrade", "MULTI_LENDER", 14),
                            ("hold", "APPEAL_HOLD", 21), ("restore", "CURED", 55)]
    hold = ds[2]
    assert (hold.status_before, hold.status_after, hold.limit_factor) == (
        "downgraded", "downgraded", None)
    assert s is not None and s.status == "active" and s.hold_until == day(100)
    s, ds = run([*items, 120])
    assert len(ds) == 4 and s is not None and s.hold_until is None


def test_a_held_warned_user_is_restored_only_when_no_tier_is_crossed():
    # A score of 540 still crosses the warn tier (560), which waits while held: no CURED.
    items = [report(0, credit_score=510), override(5, "hold", until=40),
             report(10, credit_score=540)]
    _, ds = run([*items, 60])
    assert timeline(ds) == [("warn", "SCORE_BELOW_MIN", 0), ("hold", "APPEAL_HOLD", 5)]
    _, ds = run([*items, report(20, credit_score=700)])
    assert timeline(ds)[2:] == [("restore", "CURED", 20)]


def test_a_correction_while_held_restores_and_supersedes_the_close_not_the_hold():
    items = [repayment(0, due=10), 110, override(111, "hold", until=200),
             repayment(130, due=10, paid_at=9.5)]
    s, ds = run(items)
    assert timeline(ds) == [("warn", "OVERDUE", 11), ("downgrade", "OVERDUE", 40),
                            ("close", "OVERDUE", 100), ("hold", "APPEAL_HOLD", 111),
                            ("restore", "DATA_CORRECTION", 130)]
    assert ds[4].supersedes == ds[2].decision_id
    assert s is not None and s.status == "active" and s.hold_until == day(200)


def test_a_release_before_the_end_lets_the_rules_act_at_once():
    items = [report(0, credit_score=510), override(5, "hold", until=40), override(10, "release")]
    s, ds = run(items)
    assert timeline(ds) == [("warn", "SCORE_BELOW_MIN", 0), ("hold", "APPEAL_HOLD", 5),
                            ("release", "OVERRIDE", 10), ("warn", "SCORE_BELOW_MIN", 10)]
    release, warn = ds[2], ds[3]
    assert (release.status_before, release.status_after) == ("warned", "warned")
    assert (release.limit_factor, release.effective_at, release.operator) == (None, None, "ops-1")
    assert release.reasons[0].message == "hold released by ops-1: appeal under review"
    assert warn.trigger_event_id == release.trigger_event_id == items[-1].event_id
    assert warn.effective_at == day(24)
    assert s is not None and s.hold_until is None and s.deadline == day(24)
    _, ds = run([*items, 40])
    assert timeline(ds)[4:] == [("downgrade", "SCORE_BELOW_MIN", 24)]


def test_a_second_hold_replaces_the_first():
    _, ds = run([report(0, credit_score=510), override(5, "hold", until=40),
                 override(10, "hold", until=20), 40])
    assert timeline(ds) == [("warn", "SCORE_BELOW_MIN", 0), ("hold", "APPEAL_HOLD", 5),
                            ("hold", "APPEAL_HOLD", 10), ("warn", "SCORE_BELOW_MIN", 20),
                            ("downgrade", "SCORE_BELOW_MIN", 34)]
    assert ds[2].effective_at == day(20)


def test_a_release_of_a_user_not_held_and_a_restore_of_an_active_user_decide_nothing():
    base: list[Event | float] = [report(0, credit_score=510)]
    release = override(5, "release")
    s, ds = run([*base, release, 30])
    _, plain = run([*base, 30])
    assert timeline(ds) == timeline(plain) == [("warn", "SCORE_BELOW_MIN", 0),
                                               ("downgrade", "SCORE_BELOW_MIN", 14)]
    assert s is not None and release.event_id in s.seen  # applied all the same
    restore = override(5, "restore")
    s, ds = run([report(0, credit_score=700), restore, 30])
    assert ds == [] and s is not None and restore.event_id in s.seen


def test_a_redelivered_override_changes_nothing():
    first, hold = report(0, credit_score=510), override(5, "hold", until=20)
    once, d1 = run([first, hold, 40])
    twice, d2 = run([first, hold, hold, 40])
    assert once is not None and twice is not None and dump(once) == dump(twice)
    assert [d.to_json() for d in d1] == [d.to_json() for d in d2]
    assert [d.action for d in d2].count("hold") == 1


def test_an_override_for_a_user_with_no_state_is_rejected_and_makes_none():
    ghost = override(0, "hold", until=30, user="ghost")
    assert rejection(None, ghost) == Rejection("unknown_user", "no such user: ghost", "override")
    s, ds = run([ghost, override(1, "release", user="ghost")])  # run checks the engine's
    assert s is None and ds == []
    # Nothing of it is kept: once the user exists, the same override is applied (at the
    # user's clock: it is behind it).
    s, ds = run([ghost, report(2, user="ghost", credit_score=700), ghost])
    assert timeline(ds) == [("hold", "APPEAL_HOLD", 2)]
    assert s is not None and s.hold_until == day(30)
    known = report(0, credit_score=700)
    assert rejection(None, known) is None and rejection(s, ghost) is None


def test_a_late_override_is_applied_at_the_users_clock():
    s, ds = run([report(50, open_lenders=1), override(40, "hold", until=60)])
    assert timeline(ds) == [("hold", "APPEAL_HOLD", 50)]
    assert ds[0].effective_at == day(60)
    assert s is not None and s.clock == day(50) and s.hold_until == day(60)


def test_a_late_hold_ending_before_the_users_clock_runs_out_at_once():
    # Applied at the clock (day 50), a hold until day 45 is decided, and then over.
    s, ds = run([report(50, credit_score=510), override(40, "hold", until=45)])
    assert timeline(ds) == [("warn", "SCORE_BELOW_MIN", 50), ("hold", "APPEAL_HOLD", 50),
                            ("warn", "SCORE_BELOW_MIN", 50)]
    assert ds[1].effective_at == day(45)
    assert s is not None and s.hold_until is None and s.deadline == day(64)


def test_override_decisions_match_the_decision_schema():
    jsonschema = pytest.importorskip("jsonschema")
    from tests.helpers import ROOT

    schema = orjson.loads((ROOT / "schemas/decision.schema.json").read_bytes())
    validator = jsonschema.Draft202012Validator(schema)
    state = None
    out: list[Decision] = []
    for ev in [repayment(0, due=10), Tick(day(110)), override(111, "restore", until=131),
               override(112, "release"), override(113, "hold", until=150),
               override(114, "restore")]:
        state, ds = step(POLICY, state, ev)
        out += ds
    assert {d.action for d in out} == {"warn", "downgrade", "close", "restore", "hold",
                                       "release"}
    for d in out:
        errors = list(validator.iter_errors(orjson.loads(d.to_json())))
        assert not errors, (d, errors[0].message)
    hold, close = (orjson.loads(d.to_json()) for d in (out[4], out[2]))
    assert hold["action"] == "hold" and close["action"] == "close"
    assert not validator.is_valid(hold | {"operator": ""})
    assert not validator.is_valid({k: v for k, v in hold.items() if k != "operator"})
    assert not validator.is_valid(hold | {"effective_at": None})
    assert not validator.is_valid(close | {"operator": "ops-1"})  # automatic: no operator


# --- the Python core alone: its memo never skips what an override changes -----------------

_days = st.integers(0, 120).map(float) | st.integers(0, 120 * 24).map(lambda h: h / 24)
_core_items = st.one_of(
    st.builds(lambda at, due, paid: repayment(at, due=due, paid_at=paid), _days,
              st.sampled_from([0, 10, 30]), st.none() | _days),
    st.builds(lambda at, fields: report(at, **fields), _days, st.fixed_dictionaries({}, optional={
        "credit_score": st.sampled_from([440, 510, 540, 700]),
        "open_lenders": st.sampled_from([1, 6, 9]),
        "delinquent_accounts": st.sampled_from([0, 1, 3])})),
    st.builds(lambda at, action, length, user: override(
        at, action, until=at + length if action == "hold" or (action == "restore" and length > 2)
        else None, user=user),
        _days, st.sampled_from(["restore", "hold", "release"]), st.integers(1, 40),
        st.sampled_from(["u1", "u1", "u1", "ghost"])),
    _days.map(Tick),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_core_items, min_size=1, max_size=30))
def test_the_memo_decides_as_a_state_evaluated_afresh_at_every_step(items: list) -> None:
    """The core keeps a memo of its last evaluation to skip the next when nothing it
    depends on changed; a state loaded from its stored form has none, so its first
    evaluation is a full one. Stepped either way, a user's decisions and stored states
    are the same, overrides among the events."""
    kept: UserState | None = None
    fresh: UserState | None = None
    for n, item in enumerate(items):
        ev = Tick(day(item.at)) if isinstance(item, Tick) else item
        kept, want = step(POLICY, kept, ev)
        fresh, got = step(POLICY, None if fresh is None else load(dump(fresh)), ev)
        assert [d.to_json() for d in got] == [d.to_json() for d in want], n
        assert (None if fresh is None else dump(fresh)) == (None if kept is None else dump(kept))
