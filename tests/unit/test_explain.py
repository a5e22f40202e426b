"""`closure-monitor explain` on logs, and the engine's explanation of a state."""

from __future__ import annotations

import html.parser
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.compiled import compiled_policy
from streams.explain import BadUserId, check_user_id, explain_log, explanation, render_html
from streams.generate import generate_log
from streams.policy import load_policy
from streams.replay import DEFAULT_LATENESS
from tests.factories import encode, repayment, report
from tests.helpers import cli, final_states, usage_error
from tests.oracle import state as oracle_state
from tests.oracle.rules import OBSERVERS

POLICY = load_policy()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "log.jsonl"
    with path.open("wb") as out:
        generate_log(out, seed=11, users=400, days=150)
    return path


@pytest.fixture(scope="module")
def replayed(log: Path) -> list[dict[str, Any]]:
    result = cli("replay", str(log), "--jobs", "1")
    assert result.returncode == 0, result.stderr
    return [orjson.loads(x) for x in result.stdout.splitlines()]


def write_log(path: Path, events: list[Any]) -> Path:
    path.write_bytes(b"".join(encode(e) + b"\n" for e in events))
    return path


def test_explain_gives_the_users_decisions_and_status_as_replay_leaves_them(
        log: Path, replayed: list[dict[str, Any]]):
    by_user: dict[str, list[dict[str, Any]]] = {}
    for d in replayed:
        by_user.setdefault(d["user_id"], []).append(d)
    # A user of each final status, and one with no decision.
    final = {u: ds[-1]["status_after"] for u, ds in by_user.items()}
    picks = {status: next(u for u, s in final.items() if s == status)
             for status in set(final.values())}
    assert {"warned", "downgraded", "closed", "active"} <= set(picks)
    states = final_states(log)
    quiet = next(k.decode() for k in states if k.decode() not in by_user
                 and k.startswith(b"u"))
    for status, user in [*picks.items(), ("active", quiet)]:
        view = explain_log(user, [str(log)], POLICY, lateness=DEFAULT_LATENESS, jobs=2)
        assert view is not None
        assert view["user_id"] == user
        assert view["status"] == status
        assert view["decisions"] == by_user.get(user, [])
        if status in ("warned", "downgraded", "closed"):
            assert view["set_by"]["decision_id"] in {d["decision_id"] for d in by_user[user]}
            assert view["lift"], view


def test_observed_values_are_what_the_rules_observe(log: Path):
    """Every rule's observed value is the oracle's observation of the same state at its
    clock, and a rule is crossed exactly when a tier's threshold is."""
    cp = compiled_policy(POLICY)
    assert cp is not None
    checked = Counter()
    for key, raw in final_states(log).items():
        if not key.startswith(b"u"):
            continue  # progress records
        view = explanation(POLICY, raw)
        s = oracle_state.load(raw)
        rules = {r.code: r for r in POLICY.rules}
        for r in view["rules"]:
            rule = rules[r["code"]]
            expected = OBSERVERS[r["code"]](POLICY, rule, s, s.clock)
            assert r["observed"] == expected, (key, r)
            below = r["comparison"] == "below"
            crossed = expected is not None and (
                expected < rule.tiers[0].threshold if below
                else expected >= rule.tiers[0].threshold)
            assert r["crossed"] == crossed, (key, r)
            checked[r["crossed"]] += 1
    assert checked[True] > 50 and checked[False] > 500, checked


def test_an_overdue_user_is_told_which_installment_to_pay_and_a_cleared_one_when(
        tmp_path: Path):
    # Due on day 10, unpaid: a warning at 1 day past due, a downgrade at 30.
    events = [repayment(1, due=10, user="u-late"), report(1, user="u-late", credit_score=700),
              repayment(50, due=10, user="u-other", paid_at=5)]
    view = explain_log("u-late", [str(write_log(tmp_path / "a.jsonl", events))], POLICY,
                       lateness=0)
    assert view is not None
    assert view["status"] == "downgraded"
    overdue = next(r for r in view["rules"] if r["code"] == "OVERDUE")
    assert overdue["crossed"] and overdue["observed"] >= 30
    assert "L1#1 (due 2026-01-11" in overdue["clears"]
    assert any("restored 30 days after" in x for x in view["lift"])
    assert [d["action"] for d in view["decisions"]] == ["warn", "downgrade"]

    # Paid on day 45: clear since then, restored 30 days later unless something returns.
    events.insert(2, repayment(45, due=10, user="u-late", paid_at=45))
    view = explain_log("u-late", [str(write_log(tmp_path / "b.jsonl", events))], POLICY,
                       lateness=0)
    assert view is not None
    assert view["status"] == "downgraded"
    assert not any(r["crossed"] for r in view["rules"])
    assert view["clear_since"] == "2026-02-15T00:00:00Z"
    assert view["lift"] == ["No adverse condition since 2026-02-15: the full line is "
                            "restored on 2026-03-17 if none comes back before then "
                            "(30-day cooling-off)."]
    assert view["next_review"] == "2026-03-17T00:00:00Z"


def test_a_notice_running_says_when_it_acts(tmp_path: Path):
    # Score 500: warn at once (below 560), downgrade after 14 days' notice (below 520).
    events = [report(1, user="u1", credit_score=500)]
    view = explain_log("u1", [str(write_log(tmp_path / "a.jsonl", events))], POLICY,
                       lateness=0)
    assert view is not None
    assert view["status"] == "warned"
    (notice,) = view["notices"]
    assert notice == {"rule": "SCORE_BELOW_MIN", "tier": 1, "action": "downgrade",
                      "limit_factor": 0.6, "since": "2026-01-02T00:00:00Z",
                      "acts_at": "2026-01-16T00:00:00Z", "announced": True}
    assert "If SCORE_BELOW_MIN still holds at 2026-01-16T00:00:00Z, the line is downgraded." \
        in view["lift"]


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_page_escapes_what_events_carry(tmp_path: Path):
    user = "<script>alert(1)</script>"
    view = explain_log(user, [str(write_log(tmp_path / "a.jsonl",
                                            [report(1, user=user, credit_score=500)]))],
                       POLICY, lateness=0)
    assert view is not None
    page = render_html(view)
    parsed = _Text()
    parsed.feed(page)
    assert "script" not in parsed.tags
    assert user in "".join(parsed.text)


def test_the_cli_explains_in_text_json_and_html(log: Path, replayed: list[dict[str, Any]],
                                                tmp_path: Path):
    user = next(d["user_id"] for d in replayed if d["action"] == "close")
    text = cli("explain", user, str(log))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert lines[0].startswith(f"{user}: ")
    assert "what lifts it" in lines or "decisions (" in text.stdout.decode()
    as_json = cli("explain", user, str(log), "--format", "json")
    view = orjson.loads(as_json.stdout)
    assert view["user_id"] == user and view["decisions"]
    out = tmp_path / "page.html"
    page = cli("explain", user, str(log), "--format", "html", "--output", str(out))
    assert page.returncode == 0, page.stderr
    assert out.read_text().startswith("<!doctype html>")
    assert f"<h1>{user} <span class='status {view['status']}'" in out.read_text()


def test_an_unknown_user_is_exit_1_and_bad_ids_are_usage_errors(log: Path):
    unknown = cli("explain", "u-nobody", str(log))
    assert unknown.returncode == 1
    assert unknown.stderr.decode() == "closure-monitor: u-nobody: no such user in the log\n"
    assert unknown.stdout == b""
    usage_error(cli("explain", "x" * 65, str(log)), "explain", "1 to 64 characters", "65")
    usage_error(cli("explain", "a\u200bb", str(log)), "explain", "U+200B")
    usage_error(cli("explain", "u1"), "explain", "--worker")
    usage_error(cli("explain", "u1", str(log), "--worker", "http://127.0.0.1:9"),
                "explain", "not both")


@pytest.mark.parametrize("user_id", ["", "x" * 65, "a\nb", "a\x00b", "\u202eevil"])
def test_odd_user_ids_are_refused(user_id: str):
    with pytest.raises(BadUserId):
        check_user_id(user_id)


def test_ordinary_user_ids_are_accepted():
    for user_id in ["u1", "x" * 64, "用户-42", "a b", "<b>"]:
        assert check_user_id(user_id) == user_id


def test_a_history_keeps_the_latest_decisions_once_each():
    from streams.explain import history_decisions, merge_history

    def d(n: int) -> bytes:
        return orjson.dumps({"decision_id": f"d-{n}", "action": "warn"})

    kept = merge_history(None, [d(1), d(2)], limit=3)
    assert [x["decision_id"] for x in history_decisions(kept)] == ["d-1", "d-2"]
    # A redelivery decides d-2 again: it is not kept twice.
    kept = merge_history(kept, [d(2), d(3), d(4)], limit=3)
    assert [x["decision_id"] for x in history_decisions(kept)] == ["d-2", "d-3", "d-4"]
    assert history_decisions(None) == []


def test_a_user_is_explained_under_the_policy_a_history_put_in_force(tmp_path: Path):
    """Explain takes the policy history replay takes: a user of a region with a policy
    of its own is explained under it, with the decisions it made; one of another
    region under the unscoped policy in force."""
    import yaml

    from streams import rollout
    from tests.helpers import stricter_policy

    strict = yaml.safe_load(stricter_policy(tmp_path).read_text())
    # Another user's report on day 80 moves time on: the two users' deadlines fire.
    events = [repayment(1, due=10, user="u-n"), repayment(1, due=10, user="u-s"),
              report(80, user="u-x", credit_score=700)]
    lines = [orjson.loads(encode(e)) for e in events]
    lines[0]["region"], lines[1]["region"] = "north", "south"
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    history = tmp_path / "policies.jsonl"
    history.write_bytes(rollout.record(strict, "p-north", "2026-01-05T00:00:00Z", "risk-7",
                                       region="north") + b"\n")
    north = orjson.loads(cli("explain", "u-n", str(log), "--policy-history", str(history),
                             "--format", "json").stdout)
    south = orjson.loads(cli("explain", "u-s", str(log), "--policy-history", str(history),
                             "--format", "json").stdout)
    assert north["policy_version"] == "strict" and south["policy_version"] == POLICY.version
    # Due on day 10, unpaid: 45 days past due on day 55, where strict closes the north's
    # user; the default downgrades the south's at 30 and closes only at 90 (day 100).
    assert north["status"] == "closed" and south["status"] == "downgraded"
    assert north["decisions"][-1]["policy_version"] == "strict"


def test_an_unreadable_or_empty_token_file_is_one_line_naming_the_flag(tmp_path: Path):
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    for path, what in [(empty, "no token in the file"),
                       (tmp_path / "missing.token", "cannot read: No such file")]:
        done = cli("explain", "u1", "--worker", "http://127.0.0.1:9", "--token-file",
                   str(path))
        assert done.returncode == 2
        assert done.stderr.decode() == f"closure-monitor: --token-file {path}: {what}" + (
            " or directory\n" if what.startswith("cannot") else "\n")
