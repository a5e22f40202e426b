"""The decision core: one test per rule and per transition, plain asserts on `step`."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import orjson
import pytest

from streams import _engine
from streams.codec import Rejection, decode
from streams.compiled import compiled_policy
from streams.events import DAY, Event, Tick
from streams.policy import compile_policy, load_policy
from tests.factories import application, day, encode, repayment, report
from tests.oracle.core import step
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
    byte for byte: each test's expectations are the engine's too."""
    engine = compiled_policy(policy)
    stored = None if state is None else dump(state)
    out: list[Decision] = []
    for item in items:
        if isinstance(item, int | float):
            ev: Event | Tick = Tick(day(item))
            stored, lines, rejected = _engine.step(engine, stored, tick=ev.at)
        else:
            raw = encode(item)
            decoded = decode(raw)
            assert not isinstance(decoded, Rejection)
            ev = decoded
            stored, lines, rejected = _engine.step(engine, stored, raw=raw)
        state, ds = step(policy, state, ev)
        assert rejected is None
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
