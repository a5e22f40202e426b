"""The synthetic log generator: determinism, schema v1 by hand, order, noise, segments."""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from streams import generate
from streams.generate import SEGMENTS, GenerateSummary, generate_log

USERS, DAYS, START = 3000, 180, "2026-01-01"
END = datetime(2026, 1, 1, tzinfo=UTC).timestamp() + DAYS * 86_400
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
DATE = re.compile(r"\d{4}-\d\d-\d\d")
BUREAU_RANGES = {"credit_score": (300, 950), "open_lenders": (0, None),
                 "hard_inquiries_30d": (0, None), "delinquent_accounts": (0, None)}


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _time(x: Any) -> float | None:
    if not isinstance(x, str) or not RFC3339.fullmatch(x):
        return None
    return datetime.fromisoformat(x).timestamp()


def _at(x: str) -> float:
    """occurred_at / paid_at of an event that passed `problem`."""
    return datetime.fromisoformat(x).timestamp()


def _day_end(x: str) -> float:
    return datetime.fromisoformat(x).replace(tzinfo=UTC).timestamp() + 86_400


def problem(line: bytes) -> str | None:
    """Why `line` is not a valid v1 input event (docs/design.md, "Input events"), or None."""
    try:
        e = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "not utf-8"
    except ValueError:
        return "not json"
    if not isinstance(e, dict):
        return "not an object"
    own = {"repayment": ("loan_id", "installment", "product", "due_date", "amount_due",
                         "amount_paid", "paid_at"),
           "application": ("application_id", "product", "kind", "requested_amount"),
           "credit_report": ("bureau",)}
    if e.get("event_type") not in own:
        return "event_type"
    for name in ("event_id", "user_id", "occurred_at", *own[e["event_type"]]):
        if name not in e:
            return "missing field"
    checks: dict[str, bool] = {
        "event_id": isinstance(e["event_id"], str) and 1 <= len(e["event_id"]) <= 128,
        "user_id": isinstance(e["user_id"], str) and 1 <= len(e["user_id"]) <= 64,
        "occurred_at": _time(e["occurred_at"]) is not None,
        "schema_version": e.get("schema_version", 1) == 1 and type(e.get("schema_version", 1))
        is int,
    }
    if e["event_type"] == "repayment":
        checks |= {
            "loan_id": isinstance(e["loan_id"], str),
            "installment": type(e["installment"]) is int and e["installment"] >= 1,
            "product": e["product"] in ("cash_loan", "pay_later"),
            "due_date": isinstance(e["due_date"], str) and bool(DATE.fullmatch(e["due_date"])),
            "amount_due": _number(e["amount_due"]) and e["amount_due"] >= 0,
            "amount_paid": _number(e["amount_paid"]) and e["amount_paid"] >= 0,
            "paid_at": e["paid_at"] is None or _time(e["paid_at"]) is not None,
        }
    elif e["event_type"] == "application":
        checks |= {
            "application_id": isinstance(e["application_id"], str),
            "product": e["product"] in ("cash_loan", "pay_later"),
            "kind": e["kind"] in ("drawdown", "limit_increase"),
            "requested_amount": _number(e["requested_amount"]) and e["requested_amount"] > 0,
            "channel": isinstance(e.get("channel", ""), str),
        }
    else:
        checks["bureau"] = isinstance(e["bureau"], str)
        for name, (low, high) in BUREAU_RANGES.items():
            if name in e:
                v = e[name]
                checks[name] = type(v) is int and v >= low and (high is None or v <= high)
        for name in ("total_debt", "monthly_income"):
            if name in e:
                checks[name] = _number(e[name]) and e[name] >= 0
    return next((f"bad {name}" for name, ok in checks.items() if not ok), None)


@dataclass
class Log:
    summary: GenerateSummary
    lines: list[bytes]
    times: list[float | None] = field(default_factory=list)  # occurred_at of valid lines
    events: list[dict[str, Any]] = field(default_factory=list)  # first copies, in log order
    reasons: list[str] = field(default_factory=list)  # of the malformed lines


@pytest.fixture(scope="module")
def log() -> Log:
    out = io.BytesIO()
    summary = generate_log(out, seed=7, users=USERS, days=DAYS, start=START,
                           malformed_share=0.01, duplicate_share=0.03)
    data = out.getvalue()
    assert data.endswith(b"\n")
    result = Log(summary, data.splitlines(keepends=True))
    seen: set[bytes] = set()
    for line in result.lines:
        reason = problem(line)
        if reason is not None:
            result.reasons.append(reason)
            result.times.append(None)
            continue
        event = json.loads(line)
        result.times.append(_time(event["occurred_at"]))
        if line not in seen:
            seen.add(line)
            result.events.append(event)
    return result


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    def run(seed: int) -> bytes:
        out = io.BytesIO()
        generate_log(out, seed=seed, users=300, days=60)
        return out.getvalue()

    first = run(1)
    assert first == run(1)
    assert first != run(2)
    assert len(first.splitlines()) > 1000


def test_summary_counts_the_lines(log: Log) -> None:
    s = log.summary
    assert s.lines == len(log.lines) == s.events + s.duplicates + s.malformed
    assert s.events == len(log.events)
    by_type: dict[str, int] = defaultdict(int)
    for e in log.events:
        by_type[e["event_type"]] += 1
    assert s.by_type == by_type
    assert s.users == USERS == sum(s.by_segment.values())
    assert 8 * USERS <= s.events <= 13 * USERS  # about 10 events per user per 180 days


def test_every_event_is_valid_and_unique(log: Log) -> None:
    ids = [e["event_id"] for e in log.events]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"u\d{6}", e["user_id"]) for e in log.events)
    assert all(e["schema_version"] == 1 for e in log.events)
    for e in log.events:
        assert _at(e["occurred_at"]) < END
        if e["event_type"] == "repayment":
            assert e["amount_paid"] <= e["amount_due"]
            assert (e["paid_at"] is None) == (e["amount_paid"] < e["amount_due"])
            if e["paid_at"] is not None:  # a ledger never records a payment in its future
                assert _at(e["paid_at"]) <= _at(e["occurred_at"])


def test_log_is_sorted_but_for_jitter_under_120_seconds(log: Log) -> None:
    latest, disorder = 0.0, 0.0
    for line, t in zip(log.lines, log.times, strict=True):
        if t is not None:
            assert t >= latest - 120, line
            disorder, latest = max(disorder, latest - t), max(latest, t)
    assert disorder > 0  # some jitter, as in a real stream


def test_duplicates_repeat_an_earlier_line_byte_for_byte(log: Log) -> None:
    first_at: dict[bytes, int] = {}
    repeats = []
    for i, (line, t) in enumerate(zip(log.lines, log.times, strict=True)):
        if line in first_at and t is not None:
            repeats.append(i - first_at[line])
        first_at.setdefault(line, i)
    assert len(repeats) == log.summary.duplicates > 0
    assert min(repeats) >= 1 and max(repeats) <= 301


def test_malformed_lines_are_counted_and_varied(log: Log) -> None:
    assert len(log.reasons) == log.summary.malformed > 0
    reasons = set(log.reasons)
    assert {"not utf-8", "not json", "not an object", "event_type", "missing field",
            "bad user_id", "bad event_id", "bad occurred_at"} <= reasons
    assert any(r in reasons for r in ("bad installment", "bad credit_score",
                                      "bad requested_amount", "bad amount_due"))


def test_every_segment_is_present(log: Log) -> None:
    assert set(log.summary.by_segment) == set(SEGMENTS)
    assert all(n > 0 for n in log.summary.by_segment.values())
    assert 0.68 <= log.summary.by_segment["good"] / USERS <= 0.72


def test_each_segment_leaves_its_signal_in_the_events(log: Log) -> None:
    files: dict[str, dict[str, float]] = defaultdict(dict)
    peak_lenders, peak_drop, peak_leverage, peak_delinquent = 0.0, 0.0, 0.0, 0.0
    best_score: dict[str, float] = {}
    applied: dict[str, list[float]] = defaultdict(list)
    ledger: dict[tuple[str, int], dict[str, Any]] = {}
    for e in sorted(log.events, key=lambda e: (_at(e["occurred_at"]), e["event_id"])):
        if e["event_type"] == "credit_report":
            if e["user_id"] not in files:  # the first report is the full file
                assert set(e) >= {"credit_score", "open_lenders", "hard_inquiries_30d",
                                  "delinquent_accounts", "total_debt", "monthly_income"}
            f = files[e["user_id"]]
            f.update({k: v for k, v in e.items() if _number(v)})
            best = best_score[e["user_id"]] = max(best_score.get(e["user_id"], 0),
                                                   f["credit_score"])
            peak_drop = max(peak_drop, best - f["credit_score"])
            peak_lenders = max(peak_lenders, f["open_lenders"])
            peak_delinquent = max(peak_delinquent, f["delinquent_accounts"])
            if f["monthly_income"]:
                peak_leverage = max(peak_leverage, f["total_debt"] / (12 * f["monthly_income"]))
        elif e["event_type"] == "application":
            applied[e["user_id"]].append(_at(e["occurred_at"]))
        else:
            ledger[e["loan_id"], e["installment"]] = e  # the latest record wins
    assert peak_lenders >= 6
    assert peak_drop >= 100
    assert peak_leverage >= 1.5
    assert peak_delinquent >= 1
    assert any(len(ts) >= 8 and any(ts[i + 7] - ts[i] <= 4 * 86_400 for i in range(len(ts) - 7))
               for ts in applied.values())
    late = [(_at(r["paid_at"]) - _day_end(r["due_date"])) / 86_400
            for r in ledger.values() if r["paid_at"] is not None]
    assert any(0 < d <= 20 for d in late)  # occasional late payers
    assert any(d >= 30 for d in late)  # chronic delinquents who paid their arrears off
    assert any(r["paid_at"] is None and _day_end(r["due_date"]) + 90 * 86_400 <= END
               for r in ledger.values())  # and those who never did: 90+ days past due


def test_data_sync_corrections_arrive_late_with_the_true_payment_time(log: Log) -> None:
    corrections = [
        e for e in log.events
        if e["event_type"] == "repayment" and e["paid_at"] is not None
        and _at(e["paid_at"]) <= _day_end(e["due_date"])
        and _at(e["occurred_at"]) > _day_end(e["due_date"])
    ]
    assert len(corrections) >= log.summary.by_segment["data_sync_correction"] // 2
    for e in corrections:
        delay = _at(e["occurred_at"]) - _day_end(e["due_date"])
        assert 86_400 <= delay <= 40 * 86_400


def test_writes_day_by_day() -> None:
    class Sink(io.BytesIO):
        writes = 0

        def write(self, data: Any) -> int:
            self.writes += 1
            return super().write(data)

    sink = Sink()
    generate_log(sink, users=100, days=30)
    assert sink.writes >= 30


def test_start_date_moves_the_log() -> None:
    out = io.BytesIO()
    generate_log(out, users=50, days=20, start="2026-03-01", malformed_share=0,
                 duplicate_share=0)
    times = [_at(json.loads(line)["occurred_at"]) for line in out.getvalue().splitlines()]
    first = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    assert times and all(first <= t < first + 20 * 86_400 for t in times)


def test_progress_reports_lines_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate, "PROGRESS_EVERY", 1000)
    out, calls = io.BytesIO(), list[int]()
    summary = generate_log(out, users=300, days=90, progress=calls.append)
    assert len(calls) >= summary.lines // 1000 - 1
    assert calls == sorted(calls) and calls[-1] <= summary.lines
    assert all(b - a < 2000 for a, b in zip([0, *calls], calls, strict=False))


def test_overrides_are_off_by_default_and_added_apart_from_the_other_lines() -> None:
    from streams.codec import decode
    from streams.events import Override

    args: dict[str, Any] = dict(seed=5, users=2000, days=180, malformed_share=0.01,
                                duplicate_share=0.03)
    plain, mixed = io.BytesIO(), io.BytesIO()
    without = generate_log(plain, **args)
    summary = generate_log(mixed, **args, override_share=0.02)
    assert set(without.by_type) == {"repayment", "application", "credit_report"}
    assert b'"override"' not in plain.getvalue()
    lines = mixed.getvalue().splitlines(keepends=True)
    decoded = [decode(line) for line in lines]
    ours = [line for line, e in zip(lines, decoded, strict=True) if isinstance(e, Override)]
    # The other lines are the log without overrides, byte for byte and in order.
    assert [line for line, e in zip(lines, decoded, strict=True)
            if not isinstance(e, Override)] == plain.getvalue().splitlines(keepends=True)
    unique = list(dict.fromkeys(ours))
    events = [e for e in map(decode, unique) if isinstance(e, Override)]
    assert summary.by_type == {**without.by_type, "override": len(unique)}
    assert summary.events == without.events + len(unique)
    assert summary.duplicates == without.duplicates + len(ours) - len(unique) > without.duplicates
    assert summary.lines == len(lines)
    assert len({e.event_id for e in events}) == len(events)
    assert {e.action for e in events} == {"hold", "release", "restore"}
    assert all(e.until is not None and e.until > e.occurred_at
               for e in events if e.action == "hold")
    users = {e.user_id for e in events}
    assert {u for u in users if u.startswith("x")}  # users that do not exist
    assert all(re.fullmatch(r"[ux]\d{6}", u) for u in users)
    assert 20 <= len(users) <= 150
    again = io.BytesIO()
    generate_log(again, **args, override_share=0.02)
    assert again.getvalue() == mixed.getvalue()
