"""Segment-scoped policies: events name the user's region, a policy switch may apply
to one region, and each user is decided by their region's policy when it has one,
by the partition's unscoped policy otherwise; in both engines alike.

As in tests/unit/test_policy_switch.py (whose harness, regions included, this uses): every
scenario runs through a partition of each engine (the Python one, tests/oracle, and the compiled
one through `CompiledPartition.offer_policy(..., region=)`) and through replay with
the policy history (`schedule`, whose items name their region) in each; the
decisions (JSON bytes), the handles released, the counts and the stored states at
the end must be the same, byte for byte. The expectations are read off the Python
engine's run first.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.codec import Rejection, decode
from streams.events import PolicySwitch
from streams.policy import Policy
from tests.factories import day, encode, override, repayment, report
from tests.helpers import generated_lines
from tests.oracle.state import UserState, dump, load
from tests.unit.test_policy_switch import (
    DEFAULT,
    EVENTS,
    NEXT,
    STRICT,
    Ended,
    On,
    _engine,
    _engine_agrees,
    _log,
    _oracle,
    _replay_engine,
    _replay_oracle,
    _run,
    _schedule,
    _seen,
    _switched_feed,
    _topic,
    _when,
)

DEFAULT_V, NEXT_V = DEFAULT.version, NEXT.version  # "2026.11-default", "2026.12-default"


def _regions(part: Ended) -> dict[str, str | None]:
    """Each user's region in their stored state ("G"; None when it has none)."""
    return {uid: orjson.loads(raw).get("G") for uid, raw in part.states}


def _at_switch(part: Ended, n: int) -> list[tuple[str, str, str, str, str | None]]:
    """The decisions made at item n (a switch released as it came: lateness 0)."""
    return _seen(part.steps[n][1])


# --- the scenarios ---------------------------------------------------------------------------

def test_a_regions_policy_decides_its_users_and_no_others(tmp_path: Path) -> None:
    """An installment due on day 10, unpaid, for u1 of "north" and u2 of "south";
    "strict" (close at 45 days past due, not 90) for north from day 20: u1 is
    downgraded on day 40 and closed on day 55 under it, u2 only downgraded, under the
    default, as u3 (no region) is."""
    items = [repayment(0, due=10, user="u1", region="north", event_id="r1"),
             repayment(0, due=10, user="u2", region="south", event_id="r2"),
             repayment(0, due=10, user="u3", event_id="r3"),
             PolicySwitch(day(20), "p-north", STRICT, "north"),
             report(60, user="u4", credit_score=700, event_id="c1")]
    want = _run(DEFAULT, items, tmp_path)
    part, replayed = want
    assert sorted(_seen(part.decisions)) == [
        ("u1", "close", "OVERDUE", "strict", _when(55)),
        ("u1", "downgrade", "OVERDUE", "strict", _when(40)),
        ("u1", "warn", "OVERDUE", DEFAULT_V, _when(11)),
        ("u2", "downgrade", "OVERDUE", DEFAULT_V, _when(40)),
        ("u2", "warn", "OVERDUE", DEFAULT_V, _when(11)),
        ("u3", "downgrade", "OVERDUE", DEFAULT_V, _when(40)),
        ("u3", "warn", "OVERDUE", DEFAULT_V, _when(11))]
    assert _regions(part) == {"u1": "north", "u2": "south", "u3": None, "u4": None}
    assert replayed.decisions == part.decisions
    # Unscoped, the same switch closes every one of them.
    unscoped = _oracle(DEFAULT, [*items[:3], PolicySwitch(day(20), "p-all", STRICT),
                                 items[4]])
    assert sorted(u for u, a, *_ in _seen(unscoped.decisions) if a == "close") == [
        "u1", "u2", "u3"]
    _engine_agrees(DEFAULT, items, tmp_path, want)


def test_a_new_user_is_decided_by_their_first_events_region(tmp_path: Path) -> None:
    """First records of day 50 showing 50 days past due, with "strict" for north in
    force: u1's names north (closed, by the record), u2's south and u3's none
    (downgraded, under the default)."""
    items = [On(EVENTS, PolicySwitch(day(10), "p-north", STRICT, "north")),
             repayment(50, due=0, user="u1", region="north", event_id="r1"),
             repayment(50, due=0, user="u2", region="south", event_id="r2"),
             repayment(50, due=0, user="u3", event_id="r3"),
             report(60, user="u4", credit_score=700, event_id="c1")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    decisions = [orjson.loads(d) for d in part.decisions]
    assert [(d["user_id"], d["action"], d["policy_version"], d["trigger_event_id"])
            for d in decisions] == [("u1", "close", "strict", "r1"),
                                    ("u2", "downgrade", DEFAULT_V, "r2"),
                                    ("u3", "downgrade", DEFAULT_V, "r3")]
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


@pytest.mark.parametrize("lateness", [0.0, 600.0, 40 * 86_400.0])
def test_a_user_whose_region_changes_moves_to_its_policy_at_their_next_event(
        tmp_path: Path, lateness: float) -> None:
    """"strict" for north from the start. u1, of south, and u2, of north, each owe an
    installment due on day 10; on day 50 each sends a report naming the other region.
    u1's warning and downgrade are the default's, its close on day 55 strict's; u2's
    warning and downgrade are strict's, and it is not closed. The deadlines before the
    report fire under the region the user had (the state's), whenever they fire: by a
    tick, or by the report when it is released with them (lateness 40 days: u1's
    downgrade of day 40 is fired by its report), so lateness changes nothing."""
    items = [On(EVENTS, PolicySwitch(day(-1), "p-north", STRICT, "north")),
             repayment(0, due=10, user="u1", region="south", event_id="r1"),
             repayment(0, due=10, user="u2", region="north", event_id="r2"),
             report(50, user="u1", credit_score=700, region="north", event_id="c1"),
             report(50, user="u2", credit_score=700, region="south", event_id="c2"),
             report(70, user="u3", credit_score=700, event_id="c3")]
    want = _run(DEFAULT, items, tmp_path, lateness)
    part, replayed = want
    assert sorted(_seen(part.decisions)) == [
        ("u1", "close", "OVERDUE", "strict", _when(55)),
        ("u1", "downgrade", "OVERDUE", DEFAULT_V, _when(40)),
        ("u1", "warn", "OVERDUE", DEFAULT_V, _when(11)),
        ("u2", "downgrade", "OVERDUE", "strict", _when(40)),
        ("u2", "warn", "OVERDUE", "strict", _when(11))]
    assert _regions(part) == {"u1": "north", "u2": "south", "u3": None}
    if lateness == 40 * 86_400.0:  # no tick passed day 40 before the report's release,
        # which fires u1's downgrade (in the same step): under south's policy, the default
        [(_, fired)] = [s for s in part.steps if 3 in s[0]]
        assert ("u1", "downgrade", "OVERDUE", DEFAULT_V, _when(40)) in _seen(fired)
    assert sorted(replayed.decisions) == sorted(part.decisions)
    _engine_agrees(DEFAULT, items, tmp_path, want, lateness)


def test_a_scoped_switch_reviews_only_its_regions_users(tmp_path: Path) -> None:
    """u1 (north), u2 (south) and u3 (no region), 50 days past due on day 50,
    downgraded under the default. "strict" for north from day 50 judges north's users
    at once: u1 is closed, by no event; u2 and u3 are not judged under it, nor
    closed. (Lateness 0, one input: the switch is released as it comes.)"""
    items = [repayment(0, due=0, user="u1", region="north", event_id="r1"),
             repayment(0, due=0, user="u2", region="south", event_id="r2"),
             repayment(0, due=0, user="u3", event_id="r3"),
             report(49, user="u4", credit_score=700, region="north", event_id="c1"),
             On(EVENTS, PolicySwitch(day(50), "p-north", STRICT, "north")),
             report(52, user="u4", credit_score=700, event_id="c2")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    assert _at_switch(part, 4) == [("u1", "close", "OVERDUE", "strict", _when(50))]
    closes = [orjson.loads(d) for d in part.decisions if b'"close"' in d]
    assert [(d["user_id"], d["trigger_event_id"]) for d in closes] == [("u1", None)]
    assert {(u, a, v) for u, a, _, v, _ in _seen(part.decisions) if u != "u1"} == {
        (u, a, DEFAULT_V) for u in ("u2", "u3") for a in ("warn", "downgrade")}
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


def test_an_unscoped_switch_leaves_a_scoped_regions_users_under_theirs(tmp_path: Path
                                                                       ) -> None:
    """"next" (the default's rules, renamed) for north from day 20; then "strict" for
    every other user from day 30, when u1 (north), u2 (south) and u3 (no region) are 50
    days past due: the unscoped switch closes u2 and u3 at once, not u1, whom north's
    policy keeps; u1's downgrade had been next's (at its switch, a review)."""
    items = [repayment(0, due=-20, user="u1", region="north", event_id="r1"),
             repayment(0, due=-20, user="u2", region="south", event_id="r2"),
             repayment(0, due=-20, user="u3", event_id="r3"),
             On(EVENTS, PolicySwitch(day(20), "p-north", NEXT, "north")),
             On(EVENTS, PolicySwitch(day(30), "p-all", STRICT)),
             report(120, user="u4", credit_score=700, event_id="c1")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    assert _at_switch(part, 4) == [("u2", "close", "OVERDUE", "strict", _when(30)),
                                   ("u3", "close", "OVERDUE", "strict", _when(30))]
    u1 = [(a, v) for u, a, _, v, _ in _seen(part.decisions) if u == "u1"]
    assert ("close", "strict") not in u1 and all(v != "strict" for _, v in u1)
    assert ("close", NEXT_V) in u1  # at 90 days past due, under north's policy
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


@pytest.mark.parametrize("one_by_one", [False, True])
def test_a_redelivered_scoped_switch_has_no_effect(tmp_path: Path, one_by_one: bool) -> None:
    """A scoped switch again, and one of the same time, id and region with another
    policy: ignored, whether released with the first or after it (as in
    test_policy_switch.py's redelivery)."""
    lateness = 0.0 if one_by_one else 600.0

    def placed(switch: PolicySwitch) -> Any:
        return On(EVENTS, switch) if one_by_one else switch

    first = placed(PolicySwitch(day(20), "p-north", STRICT, "north"))
    again = [first, placed(PolicySwitch(day(20), "p-north", NEXT, "north"))]
    events = [repayment(0, due=10, user="u1", region="north", event_id="r1"),
              repayment(19, user="u2", due=10, region="south", event_id="r2"),
              report(21, user="u3", credit_score=700, event_id="c1"),
              report(200, user="u3", credit_score=710, event_id="c2")]
    once = [events[0], events[1], first, events[2], events[3]]
    twice = [events[0], events[1], first, *again, events[2], events[3]]
    want_once = _oracle(DEFAULT, once, lateness)
    want = _run(DEFAULT, twice, tmp_path, lateness)
    part, replayed = want
    assert part.decisions == want_once.decisions
    assert NEXT_V not in b"".join(part.decisions).decode()
    assert ("u1", "close", "OVERDUE", "strict", _when(55)) in _seen(part.decisions)
    assert (part.states, part.tally, part.watermark, part.pending_deadlines) == (
        want_once.states, want_once.tally, want_once.watermark, want_once.pending_deadlines)
    assert sorted(h for released, _ in part.steps for h in released) == list(range(len(twice)))
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, twice, tmp_path, want, lateness)


def test_each_scope_has_its_own_switch_in_force(tmp_path: Path) -> None:
    """Lateness 0, one input. The unscoped switch of day 30 is in force when north's
    of day 20 arrives: older, but north has none in force, so it is applied (late);
    then one for north of day 15 is older than north's in force: ignored; one for
    south of day 15 is applied. u1 (north, due day 10) is judged under "next" (the
    switch of day 20, released late) from then on; u2 (south) under "strict" from
    day 30, then under south's own "strict" copy, renamed "south-strict"."""
    south_strict = dataclasses.replace(STRICT, version="south-strict")
    items = [repayment(0, due=10, user="u1", region="north", event_id="r1"),
             repayment(0, due=10, user="u2", region="south", event_id="r2"),
             On(EVENTS, PolicySwitch(day(30), "p-z", STRICT)),
             report(35, user="u3", credit_score=700, event_id="c1"),
             On(EVENTS, PolicySwitch(day(20), "p-a", NEXT, "north")),
             On(EVENTS, PolicySwitch(day(15), "p-b", STRICT, "north")),
             On(EVENTS, PolicySwitch(day(15), "p-b", south_strict, "south")),
             report(200, user="u3", credit_score=710, event_id="c2")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    seen = _seen(part.decisions)
    assert [(a, v, t) for u, a, _, v, t in seen if u == "u1"] == [
        ("warn", DEFAULT_V, _when(11)), ("downgrade", NEXT_V, _when(40)),
        ("close", NEXT_V, _when(100))]
    assert [(a, v, t) for u, a, _, v, t in seen if u == "u2"] == [
        ("warn", DEFAULT_V, _when(11)), ("downgrade", "south-strict", _when(40)),
        ("close", "south-strict", _when(55))]
    assert [len(ds) for _, ds in part.steps[4:7]] == [0, 0, 0]  # nothing was due then
    # Replayed, the schedule is sorted: north's day-15 "strict", then its day-20 "next".
    assert ("u1", "downgrade", "OVERDUE", NEXT_V, _when(40)) in _seen(replayed.decisions)
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


@pytest.mark.parametrize("scoped_arrives_first", [False, True])
@pytest.mark.parametrize(("scoped_id", "unscoped_id", "u1_closed"), [
    ("p-1", "p-2", False), ("p-2", "p-1", True)])
def test_scoped_and_unscoped_switches_at_the_same_time_go_by_policy_id(
        tmp_path: Path, scoped_id: str, unscoped_id: str, u1_closed: bool,
        scoped_arrives_first: bool) -> None:
    """On day 50 u1 (north) and u2 (south) are 50 days past due, downgraded. Switches
    at that time: "next" for north, "strict" for the others. By policy id, whichever
    arrived first: when north's comes first, the unscoped one reviews only u2 (closed);
    when the unscoped one comes first, it reviews u1 too (north has no policy of its
    own yet) and closes both; north's "next" then leaves u1 closed."""
    scoped = PolicySwitch(day(50), scoped_id, NEXT, "north")
    unscoped = PolicySwitch(day(50), unscoped_id, STRICT)
    switches = [scoped, unscoped] if scoped_arrives_first else [unscoped, scoped]
    items = [repayment(0, due=0, user="u1", region="north", event_id="r1"),
             repayment(0, due=0, user="u2", region="south", event_id="r2"),
             *switches, report(60, user="u3", credit_score=700, event_id="c1")]
    want = _run(DEFAULT, items, tmp_path)
    part, replayed = want
    closes = [(u, v, t) for u, a, _, v, t in _seen(part.decisions) if a == "close"]
    assert closes == ([("u1", "strict", _when(50))] if u1_closed else []) + [
        ("u2", "strict", _when(50))]
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want)


def test_a_replays_schedule_takes_an_unscoped_switch_before_a_scoped_one_of_its_time_and_id(
        tmp_path: Path) -> None:
    """A history with one id for two scopes at one time, the scoped record given first:
    sorted (time, id, region; unscoped first), it is applied as a partition applies the
    two arriving unscoped first: both u1 and u2 closed by the unscoped "strict"."""
    scoped = PolicySwitch(day(50), "p-1", NEXT, "north")
    unscoped = PolicySwitch(day(50), "p-1", STRICT)
    events = [repayment(0, due=0, user="u1", region="north", event_id="r1"),
              repayment(0, due=0, user="u2", region="south", event_id="r2"),
              report(60, user="u3", credit_score=700, event_id="c1")]
    log = _log(tmp_path, events)
    replayed = _replay_oracle(DEFAULT, [log], [scoped, unscoped])
    in_order = _oracle(DEFAULT, [*events[:2], unscoped, scoped, events[2]])
    assert sorted(replayed.decisions) == sorted(in_order.decisions)
    assert sorted((u, v) for u, a, _, v, _ in _seen(replayed.decisions) if a == "close") == [
        ("u1", "strict"), ("u2", "strict")]
    assert _replay_engine(DEFAULT, [log], [scoped, unscoped]) == replayed


def test_an_event_without_a_region_leaves_the_users_region_as_it_is(tmp_path: Path) -> None:
    """u1's first record names north, where "strict" is in force; its later records name
    none (one absent, one null), and one sent again names south (a redelivery, not
    applied): u1 stays of north, closed on day 55 under strict. u2
    names no region until an operator's override (a release, of a user not held) names
    north on day 30: from then on strict decides u2 too."""
    null_region = orjson.loads(encode(repayment(30, due=10, user="u1", event_id="r1b")))
    null_region["region"] = None
    items = [On(EVENTS, PolicySwitch(day(-1), "p-north", STRICT, "north")),
             repayment(0, due=10, user="u1", region="north", event_id="r1"),
             repayment(0, due=10, user="u2", event_id="r2"),
             report(20, user="u1", credit_score=700, event_id="c1"),
             report(20, user="u1", credit_score=700, region="south", event_id="c1"),
             orjson.dumps(null_region),
             override(30, "release", user="u2", region="north", event_id="o1"),
             report(70, user="u3", credit_score=700, event_id="c3")]
    assert decode(items[5]) == repayment(30, due=10, user="u1", event_id="r1b")
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    assert _regions(part) == {"u1": "north", "u2": "north", "u3": None}
    seen = _seen(part.decisions)
    assert [(u, a, v, t) for u, a, _, v, t in seen if a == "close"] == [
        ("u1", "close", "strict", _when(55)), ("u2", "close", "strict", _when(55))]
    assert [(a, v) for u, a, _, v, _ in seen if u == "u2"] == [
        ("warn", DEFAULT_V), ("downgrade", "strict"), ("close", "strict")]
    assert part.tally["applied"] == {"repayment": 3, "credit_report": 2, "override": 1}
    assert part.tally["duplicates"] == {"credit_report": 1}
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


# --- the stored state --------------------------------------------------------------------------

def test_a_state_stores_its_region_last_and_only_when_it_has_one() -> None:
    state = UserState("u1", first_seen=day(0), clock=day(1))
    plain = dump(state)
    assert b'"G"' not in plain and load(plain).region is None
    state.region = "north"
    assert dump(state).endswith(b',"G":"north"}') and load(dump(state)).region == "north"
    state.hold_until = day(9)
    keys = list(orjson.loads(dump(state)))
    assert keys[-2:] == ["H", "G"]
    assert load(dump(state)) == state


# --- generated logs with regions, scoped switches at random ---------------------------------

REGIONS = ("north", "south", "east")


def _with_regions(lines: list[bytes], seed: int) -> list[bytes]:
    """The valid records given their user's region (one user in five has none; one in
    ten moves to another region half way through their events), named in two events
    of three (a record sent again as the first); the others as they were."""
    rng = random.Random(seed)
    users: dict[str, dict[str, None]] = {}  # user -> their event ids, in order
    events = [decode(raw) for raw in lines]
    for event in events:
        if not isinstance(event, Rejection):
            users.setdefault(event.user_id, {})[event.event_id] = None
    region: dict[str, str] = {}  # event id -> region
    for ids in users.values():
        if rng.random() < 0.2:
            continue
        first, second = rng.choice(REGIONS), rng.choice(REGIONS)
        moves = rng.random() < 0.1
        for i, event_id in enumerate(ids):
            if rng.random() < 2 / 3:
                region[event_id] = second if moves and i >= len(ids) // 2 else first
    return [raw.rstrip()[:-1] + b',"region":' + orjson.dumps(region[e.event_id]) + b"}"
            if not isinstance(e, Rejection) and e.event_id in region else raw
            for raw, e in zip(lines, events, strict=True)]


def _scoped_feed(lines: list[bytes], seed: int) -> tuple[Policy, list[Any]]:
    """test_policy_switch's `_switched_feed` of the records given regions, its switches
    scoped: the first to north, the second unscoped, the others at random (a
    redelivery as the switch it repeats)."""
    policy, items = _switched_feed(_with_regions(lines, seed), seed)
    rng = random.Random(seed)
    scopes: dict[tuple[float, str], str | None] = {}
    out = []
    for item in items:
        if isinstance(item, PolicySwitch):
            key = (item.at, item.policy_id)
            if key not in scopes:
                scopes[key] = (("north", None)[len(scopes)] if len(scopes) < 2
                               else rng.choice((None, *REGIONS)))
            item = dataclasses.replace(item, region=scopes[key])
        out.append(item)
    return policy, out


def _unscoped(items: list[Any]) -> list[Any]:
    return [dataclasses.replace(i, region=None) if isinstance(i, PolicySwitch) else i
            for i in items]


@pytest.mark.parametrize(("seed", "users", "days", "lateness"), [
    (1, 300, 150, 600.0),
    (2, 300, 200, 0.0),
    (3, 200, 365, 86_400.0),
])
def test_generated_logs_with_regions_and_scoped_switches_equal_the_python_engine(
        seed: int, users: int, days: int, lateness: float) -> None:
    lines = generated_lines(seed=seed, users=users, days=days, malformed_share=0.02,
                            duplicate_share=0.02, override_share=0.03)
    policy, items = _scoped_feed(lines, seed)
    assert {i.region for i in items if isinstance(i, PolicySwitch)} >= {"north", None}
    want = _oracle(policy, items, lateness)
    # Scoped, the switches decide otherwise than unscoped.
    assert want.decisions != _oracle(policy, _unscoped(items), lateness).decisions
    assert len({v for *_, v, _ in _seen(want.decisions)}) >= 2
    assert set(_regions(want).values()) == {None, *REGIONS}
    assert want.tally["read"] == len(lines) and want.refused
    assert _engine(policy, items, lateness) == want


def test_replay_with_a_scoped_policy_history_equals_the_python_engine(tmp_path: Path) -> None:
    """A generated log with regions in two files (repayments apart), a schedule of
    scoped and unscoped switches given in no order."""
    seed = 5
    lines = _with_regions(generated_lines(seed=seed, users=400, days=200,
                                          malformed_share=0.02, duplicate_share=0.02,
                                          override_share=0.03), seed)
    paths = [tmp_path / "repayments.jsonl", tmp_path / "others.jsonl"]
    paths[0].write_bytes(b"".join(r + b"\n" for r in lines if _topic(r) == "repayment"))
    paths[1].write_bytes(b"".join(r + b"\n" for r in lines if _topic(r) != "repayment"))
    names = [str(p) for p in paths]
    policy, items = _scoped_feed(lines, seed)
    schedule = _schedule(items)
    random.Random(seed).shuffle(schedule)
    want = _replay_oracle(policy, names, schedule)
    assert want.decisions != _replay_oracle(policy, names, _unscoped(schedule)).decisions
    assert want.dead and want.tally["read"] == len(lines)
    for jobs in (1, 3):
        assert _replay_engine(policy, names, schedule, jobs=jobs) == want

