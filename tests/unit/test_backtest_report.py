"""The series the backtest keeps as decisions arrive (per day, per warning) and the
users whose decisions differ by reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.backtest import Report, Run, backtest, changed_reasons
from streams.generate import generate_log
from streams.policy import load_policy
from streams.tally import Tally
from tests.helpers import stricter_policy


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "log.jsonl"
    with path.open("wb") as out:
        generate_log(out, seed=11, users=600, days=150)
    return path


@pytest.fixture(scope="module")
def report(log: Path, tmp_path_factory: pytest.TempPathFactory) -> Report:
    strict = stricter_policy(tmp_path_factory.mktemp("policy"))
    return backtest(load_policy(str(strict)), load_policy(None), [str(log)], lateness=600,
                    jobs=2)


def decision(user: str, action: str, before: str, after: str, at: str,
             code: str = "OVERDUE") -> bytes:
    """A decision as the engine writes it, with the fields the backtest reads."""
    return orjson.dumps({"user_id": user, "action": action, "status_before": before,
                         "status_after": after, "event_time": at,
                         "reasons": [{"code": code}]})


def run_of(*decisions: bytes) -> Run:
    run = Run(load_policy(None), Tally())
    run.record_all(list(decisions))
    return run


def test_days_from_warning_to_action_count_every_warning_of_the_spell_it_ended():
    run = run_of(
        # Warned twice, then downgraded: 14 days from the first warning, 4 from the second.
        decision("a", "warn", "active", "warned", "2026-03-01T10:00:00Z"),
        decision("b", "warn", "active", "warned", "2026-03-02T00:00:00Z"),
        decision("a", "warn", "warned", "warned", "2026-03-11T09:00:00Z", "SCORE_DROP"),
        decision("a", "downgrade", "warned", "downgraded", "2026-03-15T10:00:00Z"),
        # Downgraded users' later actions end no warning.
        decision("a", "close", "downgraded", "closed", "2026-04-30T10:00:00Z"),
        # A warning that lapsed counts for nothing, nor does the next spell's start.
        decision("b", "restore", "warned", "active", "2026-03-20T00:00:00Z", "CURED"),
        decision("b", "warn", "active", "warned", "2026-04-01T12:00:00Z"),
        # Closed 29 days and 23 hours after: 29 whole days.
        decision("b", "close", "warned", "closed", "2026-05-01T11:00:00Z"),
        decision("c", "warn", "active", "warned", "2026-05-01T11:00:00Z"),
    )
    assert run.warning_to_action == Counter({14: 1, 4: 1, 29: 1})
    assert run.warned == {"c": ["2026-05-01T11:00:00Z"]}  # only the users still warned
    assert run.by_day == Counter({
        ("2026-03-01", "warn"): 1, ("2026-03-02", "warn"): 1, ("2026-03-11", "warn"): 1,
        ("2026-03-15", "downgrade"): 1, ("2026-04-30", "close"): 1,
        ("2026-03-20", "restore"): 1, ("2026-04-01", "warn"): 1, ("2026-05-01", "close"): 1,
        ("2026-05-01", "warn"): 1})
    assert run.final == {"a": "closed", "b": "closed", "c": "warned"}


def test_the_reasons_involved_are_those_of_the_decisions_that_differ():
    base = ["warn:OVERDUE", "downgrade:OVERDUE", "restore:CURED"]
    assert changed_reasons(base, [*base[:2], "close:OVERDUE", "restore:CURED"]) == {"OVERDUE"}
    assert changed_reasons(base, ["warn:MULTI_LENDER"]) == {"OVERDUE", "CURED", "MULTI_LENDER"}
    # The same decisions in another order: those from where the sequences part.
    assert changed_reasons(["warn:SCORE_DROP", "warn:OVERDUE", "restore:CURED"],
                           ["warn:OVERDUE", "warn:SCORE_DROP", "restore:CURED"]) == {
        "SCORE_DROP", "OVERDUE", "CURED"}


def test_per_day_counts_sum_to_the_decision_totals(report: Report):
    data = report.as_dict()
    for side in ("baseline", "policy"):
        by_action: Counter[str] = Counter()
        for row in data["decisions_by_day"]:
            by_action[row["action"]] += row[side]
        totals: Counter[str] = Counter()
        for row in data["decisions"]:
            totals[row["action"]] += row[side]
        assert by_action == totals and sum(totals.values()) > 100, side
    days = [row["day"] for row in data["decisions_by_day"]]
    assert days == sorted(days) and len(set(days)) > 100


def test_the_differing_users_series_agree_with_the_totals(report: Report):
    data = report.as_dict()
    assert data["users_differing"] > 0
    assert sum(m["users"] for m in data["status_moves"]) == data["users_differing"]
    reasons = {r["reason"]: r["users"] for r in data["users_differing_by_reason"]}
    # The stricter policy closes at 45 days overdue: every differing user involves OVERDUE.
    assert reasons["OVERDUE"] == data["users_differing"]
    assert all(0 < n <= data["users_differing"] for n in reasons.values())
    warnings = data["warning_to_action_days"]
    assert [w["days"] for w in warnings] == sorted({w["days"] for w in warnings})
    assert sum(w["policy"] for w in warnings) > 0
