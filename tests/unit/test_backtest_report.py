"""What `backtest --report` plots, without a browser: the series the backtest keeps
as decisions arrive (per day, per warning), the users whose decisions differ by
reason, and the report folder's files and errors. The page as drawn is tested in
tests/browser/test_report_page.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.backtest import Report, Run, backtest, changed_reasons
from streams.generate import generate_log
from streams.policy import load_policy
from streams.tally import Tally
from tests.helpers import ROOT, cli, stricter_policy


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


def test_the_report_folder_holds_the_page_and_what_json_prints(log: Path, tmp_path: Path):
    strict = stricter_policy(tmp_path)
    folder = tmp_path / "new" / "report"
    done = cli("backtest", str(log), "--policy", str(strict), "--report", str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"backtest: policy strict against baseline")  # the table
    printed = cli("backtest", str(log), "--policy", str(strict), "--json")
    assert json.loads((folder / "report.json").read_bytes()) == json.loads(printed.stdout)
    page = (folder / "index.html").read_text()
    assert page.count("plotly.js v") == 1  # the bundle's banner: inlined once
    for div in ("by-day", "differing", "warning-to-action"):
        assert page.count(f'id="{div}"') == 1, div
    # Nothing loaded from elsewhere.
    assert "<script src" not in page and "<link" not in page
    # --json with --report: the JSON on stdout, the same as the file.
    both = cli("backtest", str(log), "--policy", str(strict), "--json", "--report",
               str(folder))
    assert json.loads(both.stdout) == json.loads((folder / "report.json").read_bytes())


def _one_line(result: subprocess.CompletedProcess[bytes], *parts: str) -> None:
    assert result.returncode == 2, result.stderr
    message = result.stderr.decode()
    assert message.count("\n") == 1 and message.startswith("closure-monitor: "), message
    for part in parts:
        assert part in message, message


def test_a_report_folder_that_cannot_be_written_is_one_line_before_the_run(log: Path,
                                                                           tmp_path: Path):
    strict = stricter_policy(tmp_path)
    plain = tmp_path / "a-file"
    plain.write_text("kept\n")
    for folder in (plain, plain / "report"):
        _one_line(cli("backtest", str(log), "--policy", str(strict), "--report", str(folder)),
                  f"closure-monitor: {folder}: cannot write: Not a directory")
    assert plain.read_text() == "kept\n"
    # A report that would overwrite the log being read.
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "report.json").write_bytes(log.read_bytes())
    _one_line(cli("backtest", str(folder / "report.json"), "--policy", str(strict),
                  "--report", str(folder)), "is the log being read")


def test_only_the_report_imports_plotly(log: Path, tmp_path: Path):
    """`--help`, replay and a backtest without --report never load plotly; one with
    --report does."""
    check = """
import sys
from streams.cli import main
log, policy, folder = sys.argv[1:]
for argv in (["backtest", "--help"], ["replay", log, "-o", "/dev/null"],
             ["backtest", log, "--policy", policy], None,
             ["backtest", log, "--policy", policy, "--report", folder]):
    if argv is None:
        print("plotly" in sys.modules, file=sys.stderr)
        continue
    try:
        main(argv)
    except SystemExit:
        pass
print("plotly" in sys.modules, file=sys.stderr)
"""
    policy = str(ROOT / "deploy/policies/default.yaml")
    done = subprocess.run([sys.executable, "-c", check, str(log), policy,
                           str(tmp_path / "report")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-2:] == ["False", "True"], done.stderr

