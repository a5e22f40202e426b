"""What `closure-monitor dev` prints, without the broker: the column header, a decision
a line in those columns, and the worker's summary read back from its log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from streams.cli_live import describe, header, worker_summary
from streams.generate import generate_log
from streams.policy import load_policy
from streams.replay import compiled, summary_lines
from streams.tally import Tally

COLUMNS = ("USER", "ACTION", "BEFORE", "->", "AFTER", "REASONS", "MESSAGE")


def decisions_of_a_log(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "log.jsonl"
    with open(path, "wb") as out:
        generate_log(out, seed=3, users=300, days=150)
    decisions: list[dict[str, Any]] = []
    compiled([load_policy(None)], [str(path)],
             on_decisions=[lambda batch: decisions.extend(map(orjson.loads, batch))])
    return decisions


def check_aligned(line: str, head: str) -> None:
    """Every column of the line starts under its name in the header."""
    for name in COLUMNS:
        start = head.index(name)
        assert line[start - 1] == " " and line[start] != " ", (head, line)
    assert line[head.index("->"):].startswith("-> ")


def test_the_header_names_the_columns_in_order() -> None:
    head = header()
    assert head.split() == ["EVENT", "TIME", *COLUMNS]
    assert head.startswith("EVENT TIME ")


def test_every_decision_line_is_in_the_columns(tmp_path: Path) -> None:
    decisions = decisions_of_a_log(tmp_path)
    assert len(decisions) > 100
    assert {d["action"] for d in decisions} == {"warn", "downgrade", "close", "restore"}
    assert any(len(d["reasons"]) > 1 for d in decisions)
    head = header()
    for d in decisions:
        line = describe(d)
        check_aligned(line, head)
        fields = line.split()
        assert " ".join(fields[:2]) == d["event_time"][:16].replace("T", " ")
        assert fields[2:5] == [d["user_id"], d["action"], d["status_before"]]
        assert fields[6] == d["status_after"]
        assert d["reasons"][0]["message"] in line
        assert d["reasons"][0]["code"] in line[head.index("REASONS"):head.index("MESSAGE")]


def test_reasons_that_do_not_fit_their_column_are_counted() -> None:
    reason = {"message": "m", "observed": 1, "threshold": 1}
    decision = {
        "decision_id": "d-1", "user_id": "u000001", "action": "downgrade",
        "status_before": "warned", "status_after": "downgraded", "limit_factor": 0.5,
        "reasons": [{**reason, "code": "EXTERNAL_DELINQUENCY", "message": "first"},
                    {**reason, "code": "SCORE_BELOW_MIN"}, {**reason, "code": "SCORE_DROP"},
                    {**reason, "code": "MULTI_LENDER"}],
        "policy_version": "v", "trigger_event_id": "e-1",
        "event_time": "2026-03-01T10:00:00Z", "effective_at": None, "supersedes": "d-0",
    }
    head = header()
    line = describe(decision)
    check_aligned(line, head)
    assert line[head.index("REASONS"):head.index("MESSAGE")].strip() == "EXTERNAL_DELINQUENCY +3"
    assert line.endswith("first; supersedes d-0")
    decision["reasons"] = decision["reasons"][1:3]
    assert "SCORE_BELOW_MIN,SCORE_DROP " in describe(decision)
    warn = {**decision, "action": "warn", "effective_at": "2026-03-15T10:00:00Z",
            "supersedes": None}
    assert describe(warn).endswith("; takes effect 2026-03-15 unless cured")


def test_the_worker_summary_is_read_back_from_its_log() -> None:
    tally = Tally()
    tally.read = 12
    tally.applied["repayment"] = 10
    tally.duplicates["repayment"] = 1
    tally.rejected["schema"] = 1
    tally.decisions[("warn", "OVERDUE")] = 2
    summary = [*summary_lines(tally),
               "rerouted 0 records to their user's partition; skipped 0 that a previous "
               "owner of their partition had finished; 0 still buffered at shutdown",
               "  credit.repayments[0] 1 unacked from offset 3 (applied: False)"]
    log = "\n".join(["[2026-03-01 10:00:00] [1] [WARNING] events read as a log line",
                     *summary, "Unclosed AIOKafkaProducer", ""])
    assert worker_summary(log) == summary
    assert summary[0].startswith("events read 12: applied 10, duplicates 1, rejected 1")
    assert "decisions 2: warn 2" in summary
    assert worker_summary("the worker failed at startup\n") == []


def test_the_summary_says_what_late_means_when_some_events_were(
        capsys: Any) -> None:
    from collections import Counter

    from streams.cli_live import _DevRun, _report

    for late, said in ((0, False), (7, True)):
        tally = Tally(read=10, applied=Counter(repayment=10), late=Counter(repayment=late))
        run = _DevRun(sent=10, shown=0, finished=True, summary=summary_lines(tally),
                      decisions=0)
        _report(run)
        err = capsys.readouterr().err
        assert f"late {late}" in err
        assert ("--strict-order" in err) is said
