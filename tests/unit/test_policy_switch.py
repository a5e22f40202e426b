"""Policy switches (`streams.events.PolicySwitch`): a new policy version takes effect at
one event time, in event-time order with the events, in both engines alike.

Every scenario runs through a partition of each engine (the Python one, tests/oracle,
and the compiled one through `CompiledPartition.offer_policy`) and through replay with
the policy history (`schedule`) in each; the decisions (JSON bytes), the handles
released, the counts and the stored states at the end must be the same, byte for byte.
The expectations are read off the Python engine's run first.
"""

from __future__ import annotations

import dataclasses
import math
import random
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.codec import Rejection, decode
from streams.compiled import CompiledPartition
from streams.events import Event, PolicySwitch, format_time
from streams.policy import Policy, load_policy
from streams.replay import compiled
from tests.factories import day, encode, repayment, report
from tests.helpers import dead_letter_key, generated_lines, stricter_policy, tally_counts
from tests.oracle.decisions import decision_id
from tests.oracle.engine import Partition
from tests.oracle.policies import POLICIES
from tests.oracle.replay import replay, replay_each
from tests.oracle.state import dump

DEFAULT = load_policy()  # version "2026.11-default"
NEXT = dataclasses.replace(DEFAULT, version="2026.12-default")  # the same rules, renamed


def _strict() -> Policy:
    with tempfile.TemporaryDirectory() as tmp:
        return load_policy(str(stricter_policy(Path(tmp))))


STRICT = _strict()  # closes at 45 days past due, not 90; version "strict"
# The test policies under names of their own (they all carry the default's version).
DORMANT, LEAN, TIGHT = (dataclasses.replace(p, version=name)
                        for p, name in zip(POLICIES[1:], ("dormant", "lean", "tight"),
                                           strict=True))

EVENTS, SWITCHES = "events", "policies"  # a partition's inputs, as topic-partitions


@dataclass(frozen=True)
class On:
    """An item offered on another input than its kind's (EVENTS, SWITCHES)."""

    source: str
    item: Any


@dataclass
class Ended:
    """A partition's run: per item offered, then per input going idle at the end, the
    handles released and the decisions made (JSON); then what it ended with."""

    steps: list[tuple[list[int], list[bytes]]]
    refused: list[tuple[int, str, str | None]]  # overrides rejected when applied
    states: list[tuple[str, bytes]]
    tally: dict[str, Any]
    watermark: float
    pending_deadlines: int
    buffered: int

    @property
    def decisions(self) -> list[bytes]:
        return [d for _, ds in self.steps for d in ds]


def _record(item: Event | bytes) -> bytes:
    return item if isinstance(item, bytes) else encode(item)


def _placed(item: Any) -> tuple[str, Any]:
    """The input an item is offered on, and the item."""
    if isinstance(item, On):
        return item.source, item.item
    return (SWITCHES if isinstance(item, PolicySwitch) else EVENTS), item


def _sources(items: list[Any]) -> list[str]:
    """The partition's inputs, those the items come on: in the order they first do.
    Each holds the watermark back from the start, until it goes idle at the end."""
    return list(dict.fromkeys(_placed(i)[0] for i in items))


def _oracle(policy: Policy, items: list[Any], lateness: float = 600.0, *,
            switching: bool = True) -> Ended:
    """The Python engine's partition: events (offered as the decoder reads their
    records) and switches in this order, each input going idle at the end. Without
    `switching`, each switch is only observed: its time moves its input's watermark
    as the switch's would, and no policy changes."""
    part: Partition[int] = Partition(policy, {}, lateness)
    sources = _sources(items)
    for source in sources:
        part.add_input(source)
    steps: list[tuple[list[int], list[bytes]]] = []
    for n, item in enumerate(items):
        source, item = _placed(item)
        if isinstance(item, PolicySwitch) and not switching:
            part.observe(source, item.at)
            released = []
        elif isinstance(item, PolicySwitch):
            released = part.offer_policy(source, item, n)
        else:
            event = decode(_record(item))
            part.tally.read += 1
            if isinstance(event, Rejection):
                part.tally.count_rejection(event)
                released = [n]  # (done with at once, as the engine's `take` has it)
            else:
                released = part.offer(source, event, n)
        steps.append((released, [d.to_json() for d in part.drain()]))
    for source in sources:
        released = part.set_idle(source, True)
        steps.append((released, [d.to_json() for d in part.drain()]))
    refused = [(h, r.reason, r.detail) for h, r in part.take_rejections()]
    return Ended(steps, refused, sorted((uid, dump(s)) for uid, s in part.states.items()),
                 tally_counts(part.tally), part.buffer.watermark, part.pending_deadlines,
                 len(part.buffer))


def _engine(policy: Policy, items: list[Any], lateness: float = 600.0) -> Ended:
    """`_oracle` in the compiled engine's partition (`CompiledPartition`)."""
    part: CompiledPartition[int] = CompiledPartition(policy, lateness)
    sources = _sources(items)
    for source in sources:
        part.add_input(source)
    steps: list[tuple[list[int], list[bytes]]] = []
    for n, item in enumerate(items):
        source, item = _placed(item)
        if isinstance(item, PolicySwitch):
            released = part.offer_policy(source, item.at, item.policy_id, item.policy, n,
                                         region=item.region)
        else:
            released, rejected, routed = part.take(source, _record(item), None, n, 1, 0)
            assert routed is None
            if rejected is not None:
                released.append(n)
        steps.append((released, [d for _, d in part.drain_keyed()]))
    for source in sources:
        released = part.set_idle(source, True)
        steps.append((released, [d for _, d in part.drain_keyed()]))
    refused = [(h, r.reason, r.detail) for h, r in part.take_refused()]
    return Ended(steps, refused, part.engine.states(), tally_counts(part.tally),
                 part.buffer.watermark, part.pending_deadlines, len(part.buffer))


@dataclass
class Replayed:
    decisions: list[bytes]
    dead: list[bytes]
    tally: dict[str, Any]


_logs = iter(range(1 << 30))


def _log(tmp: Path, items: list[Any]) -> str:
    """The items' events (not the switches) as a log file, in their order."""
    path = tmp / f"log-{next(_logs)}.jsonl"
    records = [_placed(i)[1] for i in items]
    path.write_bytes(b"".join(_record(r) + b"\n" for r in records
                              if not isinstance(r, PolicySwitch)))
    return str(path)


def _schedule(items: list[Any]) -> list[PolicySwitch]:
    """The items' switches: a replay's policy history."""
    return [s for s in (_placed(i)[1] for i in items) if isinstance(s, PolicySwitch)]


def _replay_oracle(policy: Policy, paths: list[str], schedule: list[PolicySwitch],
                   lateness: float = 600.0) -> Replayed:
    decisions: list[bytes] = []
    dead: list[bytes] = []
    tally = replay(policy, paths, lateness=lateness,
                   on_decision=lambda d: decisions.append(d.to_json()),
                   on_reject=lambda r: dead.append(dead_letter_key(r.to_json())),
                   schedule=schedule)
    return Replayed(decisions, dead, tally_counts(tally))


def _replay_engine(policy: Policy, paths: list[str], schedule: list[PolicySwitch],
                   lateness: float = 600.0, jobs: int = 1) -> Replayed:
    decisions: list[bytes] = []
    dead: list[bytes] = []
    [tally] = compiled([policy], paths, lateness=lateness, on_decisions=[decisions.extend],
                       on_reject=dead.extend, jobs=jobs,
                       schedule=[(s.at, s.policy_id, s.policy, s.region) for s in schedule])
    return Replayed(decisions, [dead_letter_key(d) for d in dead], tally_counts(tally))


def _run(policy: Policy, items: list[Any], tmp: Path, lateness: float = 600.0
         ) -> tuple[Ended, Replayed]:
    """The Python engine's partition and replay (the items' events as one log, their
    switches as the schedule)."""
    return (_oracle(policy, items, lateness),
            _replay_oracle(policy, [_log(tmp, items)], _schedule(items), lateness))


def _engine_agrees(policy: Policy, items: list[Any], tmp: Path, want: tuple[Ended, Replayed],
                   lateness: float = 600.0) -> None:
    """The compiled engine's partition and replay give what the Python engine's did."""
    part, replayed = want
    assert _engine(policy, items, lateness) == part
    got = _replay_engine(policy, [_log(tmp, items)], _schedule(items), lateness)
    assert got == replayed


def _seen(decisions: list[bytes]) -> list[tuple[str, str, str, str, str | None]]:
    """(user, action, first reason, policy version, event time) of each decision."""
    out = []
    for raw in decisions:
        d = orjson.loads(raw)
        out.append((d["user_id"], d["action"], d["reasons"][0]["code"], d["policy_version"],
                    d["event_time"]))
    return out


def _when(n: float) -> str:
    """A day after T0 as decisions write their event times."""
    return format_time(day(n))


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# --- the scenarios ---------------------------------------------------------------------

def test_a_stricter_policy_from_its_time_on_closes_a_user_the_default_does_not(
        tmp_path: Path) -> None:
    """An installment due on day 10, paid on day 70 (60 days past due): the default
    warns and downgrades, never closes; "strict" from day 20 on closes on day 55 (45
    days past due). The warning before day 20 is the default's; the same events after
    it are decided, and their decision ids made, under "strict"."""
    events = [repayment(0, due=10, event_id="r1"),
              repayment(70, due=10, paid_at=70, event_id="r2"),
              report(150, user="u2", credit_score=700, event_id="c1")]
    alone = _oracle(DEFAULT, events)
    assert [(a, v, t) for _, a, _, v, t in _seen(alone.decisions)] == [
        ("warn", "2026.11-default", _when(11)), ("downgrade", "2026.11-default", _when(40)),
        ("restore", "2026.11-default", _when(100))]
    items = [events[0], PolicySwitch(day(20), "p-strict", STRICT), *events[1:]]
    want = _run(DEFAULT, items, tmp_path)
    part, replayed = want
    assert [(a, c, v, t) for _, a, c, v, t in _seen(part.decisions)] == [
        ("warn", "OVERDUE", "2026.11-default", _when(11)),
        ("downgrade", "OVERDUE", "strict", _when(40)),
        ("close", "OVERDUE", "strict", _when(55)),
        ("restore", "CURED", "strict", _when(100))]
    close = orjson.loads(part.decisions[2])
    assert close["decision_id"] == decision_id("strict", "u1", 2, "close", day(55))
    assert replayed.decisions == part.decisions  # live and replay agree
    assert replayed.tally == part.tally
    # Nothing but the events is counted: three read, three applied, none late.
    assert part.tally["read"] == 3 and sum(part.tally["applied"].values()) == 3
    assert part.tally["late"] == {}
    _engine_agrees(DEFAULT, items, tmp_path, want)


def test_a_notice_under_a_tier_the_new_policy_lacks_lapses(tmp_path: Path) -> None:
    """The score falls 160 points on day 1: the default warns, its SCORE_DROP downgrade
    on notice until day 15. From day 5 "lean" is in force, which has no SCORE_DROP rule:
    the switch judges the user at once: the notice lapses and the warning with it
    (restored, CURED, under "lean", on day 5), where the default downgrades."""
    assert "SCORE_DROP/1" in DEFAULT.notice_of and "SCORE_DROP/1" not in LEAN.notice_of
    events = [report(0, credit_score=800, event_id="c1"),
              report(1, credit_score=640, event_id="c2"),
              report(30, user="u2", credit_score=700, event_id="c3")]
    alone = _oracle(DEFAULT, events)
    assert [(a, c, v, t) for _, a, c, v, t in _seen(alone.decisions)] == [
        ("warn", "SCORE_DROP", "2026.11-default", _when(1)),
        ("downgrade", "SCORE_DROP", "2026.11-default", _when(15))]
    items = [*events[:2], PolicySwitch(day(5), "p-lean", LEAN), events[2]]
    want = _run(DEFAULT, items, tmp_path)
    part, replayed = want
    assert [(a, c, v, t) for _, a, c, v, t in _seen(part.decisions)] == [
        ("warn", "SCORE_DROP", "2026.11-default", _when(1)),
        ("restore", "CURED", "lean", _when(5))]
    u1 = orjson.loads(dict(part.states)["u1"])
    assert u1["s"] == "active" and u1["p"] == {} and u1["W"] == {}
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want)


@pytest.mark.parametrize(("at", "downgraded_under"), [
    pytest.param(day(40), "2026.12-default", id="at-the-deadline"),  # not before it
    pytest.param(math.nextafter(day(40), math.inf), "2026.11-default", id="just-after"),
    pytest.param(day(40) + 300, "2026.11-default", id="5-minutes-after"),
    pytest.param(day(40.5), "2026.11-default", id="half-a-day-after"),
])
def test_deadlines_before_the_switch_fire_under_the_old_policy_the_rest_under_the_new(
        tmp_path: Path, at: float, downgraded_under: str) -> None:
    """u1's warning comes due on day 11 and its downgrade on day 40; u2's on days 12
    and 41. Lateness 0, one input: the switch, released as it comes, fires every
    deadline before its time under the policy in force, as a tick does (user by user,
    by first deadline, each up to just before the switch), then the tick after it
    those at its time under the new one; u3's event of day 60 lets u2's downgrade
    fire."""
    items = [repayment(0, due=10, event_id="r1"), repayment(1, user="u2", due=11, event_id="r2"),
             On(EVENTS, PolicySwitch(at, "p-next", NEXT)),
             report(60, user="u3", credit_score=700, event_id="c1")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    warnings = [("u1", "warn", "OVERDUE", "2026.11-default", _when(11)),
                ("u2", "warn", "OVERDUE", "2026.11-default", _when(12))]
    downgrade = ("u1", "downgrade", "OVERDUE", downgraded_under, _when(40))
    at_switch = ([*warnings, downgrade] if downgraded_under == "2026.12-default" else
                 [warnings[0], downgrade, warnings[1]])
    assert [(released, _seen(ds)) for released, ds in part.steps] == [
        ([0], []), ([1], []), ([2], at_switch),
        ([3], [("u2", "downgrade", "OVERDUE", "2026.12-default", _when(41))]),
        ([], [])]
    for raw in part.decisions:  # the ids made with each decision's own policy version
        d = orjson.loads(raw)
        assert d["decision_id"] == decision_id(d["policy_version"], d["user_id"],
                                               1 if d["action"] == "downgrade" else 0,
                                               d["action"], _seconds(d["event_time"]))
    # Replayed, the switch is released with u3's event, after it is read: the same.
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


def test_two_switches_each_in_force_from_its_time(tmp_path: Path) -> None:
    """The default, "strict" from day 20, the default again (renamed) from day 50: the
    warning is the default's, the downgrade of day 40 strict's; strict's close of day
    55 does not come (u1's deadline of day 55, set under strict, finds the renamed
    default, under which 45 days past due is no close); the close of day 100 is the
    renamed default's. The schedule is given to replay newest first: it is sorted."""
    switches = [PolicySwitch(day(50), "p-next", NEXT), PolicySwitch(day(20), "p-strict", STRICT)]
    items = [repayment(0, due=10, event_id="r1"), switches[1], switches[0],
             report(200, user="u2", credit_score=700, event_id="c1")]
    want = _run(DEFAULT, items, tmp_path)
    part, replayed = want
    assert [(a, v, t) for _, a, _, v, t in _seen(part.decisions)] == [
        ("warn", "2026.11-default", _when(11)), ("downgrade", "strict", _when(40)),
        ("close", "2026.12-default", _when(100))]
    assert replayed.decisions == part.decisions
    log = _log(tmp_path, items)
    assert _replay_oracle(DEFAULT, [log], switches) == replayed
    _engine_agrees(DEFAULT, items, tmp_path, want)
    assert _replay_engine(DEFAULT, [log], switches) == replayed


@pytest.mark.parametrize("one_by_one", [False, True])
def test_a_redelivered_switch_has_no_effect(tmp_path: Path, one_by_one: bool) -> None:
    """The same switch again, and a switch of the same time and id with another policy
    (a record sent again, changed): ignored, whether released with the first (on an
    input of their own, lateness 600: all three in the buffer at once, released in
    their order of arrival) or after it (on the events' input, lateness 0: each item
    released as it comes, the later ones late); their handles are released all the
    same and nothing counts them."""
    lateness = 0.0 if one_by_one else 600.0

    def placed(switch: PolicySwitch) -> Any:
        return On(EVENTS, switch) if one_by_one else switch

    first = placed(PolicySwitch(day(20), "p-strict", STRICT))
    again = [first, placed(PolicySwitch(day(20), "p-strict", NEXT))]
    events = [repayment(0, due=10, event_id="r1"), repayment(19, user="u2", due=10,
                                                             event_id="r2"),
              report(21, user="u3", credit_score=700, event_id="c1"),
              report(200, user="u3", credit_score=710, event_id="c2")]
    once = [events[0], events[1], first, events[2], events[3]]
    twice = [events[0], events[1], first, *again, events[2], events[3]]
    want_once = _oracle(DEFAULT, once, lateness)
    want = _run(DEFAULT, twice, tmp_path, lateness)
    part, replayed = want
    assert part.decisions == want_once.decisions
    assert {v for *_, v, _ in _seen(part.decisions)} == {"2026.11-default", "strict"}
    assert "2026.12-default" not in b"".join(part.decisions).decode()
    assert (part.states, part.tally, part.watermark, part.pending_deadlines) == (
        want_once.states, want_once.tally, want_once.watermark, want_once.pending_deadlines)
    assert sorted(h for released, _ in part.steps for h in released) == list(range(len(twice)))
    if one_by_one:
        assert [released for released, _ in part.steps[:len(twice)]] == [
            [n] for n in range(len(twice))]
    else:  # the switches released together, at the end, before c1 and c2
        assert part.steps[-1][0] == [2, 3, 4, 5, 6]
    assert part.tally["late"] == {}
    # In a replay, the schedule's duplicates (sorted next to each other) are ignored alike.
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, twice, tmp_path, want, lateness)


def test_an_older_switch_released_after_a_newer_one_is_ignored(tmp_path: Path) -> None:
    """Lateness 0, one input: each item is released as it comes. "next" from day 30 is
    in force when "strict" from day 20 arrives (late): ignored, and so is "strict" from
    day 30 under an id that sorts before "next"'s; "strict" from day 30 under an id that
    sorts after it is newer: applied, though late, when released. u1's downgrade of day
    40 is "next"'s; its close on day 55 (45 days past due, strict's tier: the switch
    judged u1 under strict and set that deadline) is strict's.
    Replayed, the schedule is sorted: all four are applied in turn."""
    items = [repayment(0, due=10, event_id="r1"),
             On(EVENTS, PolicySwitch(day(30), "p2", NEXT)),
             report(35, user="u2", credit_score=700, event_id="c1"),
             On(EVENTS, PolicySwitch(day(20), "p3", STRICT)),  # older
             On(EVENTS, PolicySwitch(day(30), "p1", STRICT)),  # as old, a lesser id
             report(45, user="u2", credit_score=710, event_id="c2"),
             On(EVENTS, PolicySwitch(day(30), "p3", STRICT)),  # as old, a greater id: newer
             report(200, user="u2", credit_score=720, event_id="c3")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    assert _seen(part.decisions) == [
        ("u1", "warn", "OVERDUE", "2026.11-default", _when(11)),
        ("u1", "downgrade", "OVERDUE", "2026.12-default", _when(40)),
        ("u1", "close", "OVERDUE", "strict", _when(55))]
    # The warning was fired by the switch of day 30 (before it took effect), at its step.
    assert [len(ds) for _, ds in part.steps] == [0, 1, 0, 0, 0, 1, 0, 1, 0]
    assert [released for released, _ in part.steps[:8]] == [[n] for n in range(8)]
    assert part.tally["late"] == {}
    assert [(a, v) for _, a, _, v, _ in _seen(replayed.decisions)] == [
        ("warn", "2026.11-default"), ("downgrade", "strict"), ("close", "strict")]
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


def test_a_late_switch_is_applied_when_released(tmp_path: Path) -> None:
    """A switch of day 30 arriving when the watermark is at day 45 (lateness 0, one
    input): the day-40 downgrade was the default's; the close on day 55 (45 days past
    due) is strict's, as the switch judged the user under it when released."""
    items = [repayment(0, due=10, event_id="r1"), report(45, user="u2", credit_score=700,
                                                         event_id="c1"),
             On(EVENTS, PolicySwitch(day(30), "p-strict", STRICT)),
             report(200, user="u2", credit_score=710, event_id="c2")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    assert [(a, v, t) for _, a, _, v, t in _seen(part.decisions)] == [
        ("warn", "2026.11-default", _when(11)), ("downgrade", "2026.11-default", _when(40)),
        ("close", "strict", _when(55))]
    assert part.steps[2] == ([2], []) and part.tally["late"] == {}
    # Replayed, the switch is in force from day 30 (before the day-40 downgrade).
    assert [(a, v) for _, a, _, v, _ in _seen(replayed.decisions)] == [
        ("warn", "2026.11-default"), ("downgrade", "strict"), ("close", "strict")]
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


@pytest.mark.parametrize("switch_first", [False, True])
@pytest.mark.parametrize(("event_id", "under"), [("a-1", "2026.11-default"),
                                                  ("z-1", "strict")])
def test_a_switch_at_an_events_time_goes_by_event_id_and_policy_id(
        tmp_path: Path, event_id: str, under: str, switch_first: bool) -> None:
    """u9's first record, of day 50, shows 50 days past due: the default downgrades,
    "strict" closes. A switch to strict at that very time (id "p-strict") comes after
    the event when the event's id sorts first ("a-1"), before it when it sorts last
    ("z-1"), whichever arrived first. After the event, the switch judges u9 at once
    under strict: closed, by no event."""
    event = repayment(50, user="u9", due=0, event_id=event_id)
    switch = PolicySwitch(day(50), "p-strict", STRICT)
    items = [switch, event] if switch_first else [event, switch]
    items.append(report(60, user="u2", credit_score=700, event_id="c1"))
    want = _run(DEFAULT, items, tmp_path)
    part, replayed = want
    decisions = [orjson.loads(d) for d in part.decisions]
    seen = [(d["action"], d["policy_version"], d["trigger_event_id"]) for d in decisions]
    if under == "strict":
        assert seen == [("close", "strict", event_id)]
    else:
        assert seen == [("downgrade", under, event_id), ("close", "strict", None)]
    assert {d["event_time"] for d in decisions} == {_when(50)}
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want)


def test_a_switch_past_the_end_of_the_logs_still_takes_effect(tmp_path: Path) -> None:
    """At the end of the logs everything is released, the switch too: it fires the
    deadlines before its time (day 40) under the default, and the watermark goes to the
    latest time seen, the switch's: the deadline at day 40 itself fires under "next"."""
    items = [repayment(0, due=10, event_id="r1"),
             report(5, user="u2", credit_score=700, event_id="c1"),
             PolicySwitch(day(40), "p-next", NEXT)]
    want = _run(DEFAULT, items, tmp_path)
    part, replayed = want
    assert [(a, v, t) for _, a, _, v, t in _seen(part.decisions)] == [
        ("warn", "2026.11-default", _when(11)), ("downgrade", "2026.12-default", _when(40))]
    assert part.watermark == day(40)
    assert replayed.decisions == part.decisions
    _engine_agrees(DEFAULT, items, tmp_path, want)


def test_a_smaller_dedupe_memory_forgets_one_id_per_new_event(tmp_path: Path) -> None:
    """From day 10 "tight" remembers two ids per user, the default 128. The switch
    leaves the eight ids u1's state holds; each new event then drops the oldest one
    only: c3, sent again after c12, is still a redelivery; c0, dropped by c12, is not.
    (Lateness 0, one input: each item is released as it comes.)"""
    events = [report(n, credit_score=700 + n, event_id=f"c{n}") for n in range(8)]
    items = [*events, On(EVENTS, PolicySwitch(day(10), "p-tight", TIGHT)),
             report(12, credit_score=650, event_id="c12"), events[3], events[0],
             report(30, user="u2", credit_score=700, event_id="d1")]
    want = _run(DEFAULT, items, tmp_path, 0.0)
    part, replayed = want
    u1 = orjson.loads(dict(part.states)["u1"])
    assert u1["e"] == ["c2", "c3", "c4", "c5", "c6", "c7", "c12", "c0"]
    assert part.tally["duplicates"] == {"credit_report": 1}
    assert part.tally["applied"] == {"credit_report": 11}
    assert part.tally["late"] == {"credit_report": 2}  # (c3 and c0, sent again)
    assert replayed.tally == part.tally
    _engine_agrees(DEFAULT, items, tmp_path, want, 0.0)


# --- generated logs, switches at random ---------------------------------------------

POOL = (DEFAULT, NEXT, STRICT, DORMANT, LEAN, TIGHT)
TOPICS = ("repayment", "application", "credit_report", "override")


def _topic(raw: bytes) -> str:
    """The input a record comes on: its event type's topic (unknown ones the first's)."""
    return next((t for t in TOPICS if f'"{t}"'.encode() in raw), TOPICS[0])


def _switched_feed(lines: list[bytes], seed: int) -> tuple[Policy, list[Any]]:
    """A starting policy, and the records on their types' inputs, interleaved at random
    as a consumer of a topic per type sees them, with policy switches among them: five,
    to random policies, each offered about when the records reach its time (from three
    days before it, some late, to a day after), one of them at the time of a record and
    one sent twice."""
    rng = random.Random(seed)
    queues: dict[str, list[bytes]] = {t: [] for t in TOPICS}
    for raw in lines:
        queues[_topic(raw)].append(raw)
    for q in queues.values():
        q.reverse()
    feed: list[tuple[float, Any]] = []
    t = -math.inf
    while any(queues.values()):
        topic = rng.choice([k for k, q in queues.items() if q])
        for _ in range(rng.randint(1, 40)):
            if not queues[topic]:
                break
            raw = queues[topic].pop()
            event = decode(raw)
            if not isinstance(event, Rejection):
                t = max(t, event.occurred_at)
            feed.append((t, On(topic, raw)))
    times = [e.occurred_at for raw in lines if not isinstance(e := decode(raw), Rejection)]
    first, last = min(times), max(times)
    switches = [PolicySwitch(rng.uniform(first, last), f"p-{rng.randrange(1000):03d}",
                             rng.choice(POOL)) for _ in range(4)]
    switches.append(PolicySwitch(rng.choice(times), f"p-{rng.randrange(1000):03d}",
                                 rng.choice(POOL)))
    switches.append(rng.choice(switches))  # a redelivery
    for switch in switches:
        when = switch.at + rng.uniform(-3, 1) * 86_400
        at = next((n for n, (t, _) in enumerate(feed) if t >= when), len(feed))
        feed.insert(at, (when, switch))
    return rng.choice(POOL), [item for _, item in feed]


@pytest.mark.parametrize(("seed", "users", "days", "lateness"), [
    (1, 300, 150, 600.0),
    (2, 300, 200, 0.0),
    (3, 200, 365, 86_400.0),
    (4, 500, 120, 600.0),
])
def test_generated_logs_with_switches_equal_the_python_engine(seed: int, users: int, days: int,
                                                              lateness: float) -> None:
    lines = generated_lines(seed=seed, users=users, days=days, malformed_share=0.02,
                            duplicate_share=0.02, override_share=0.03)
    policy, items = _switched_feed(lines, seed)
    want = _oracle(policy, items, lateness)
    without = _oracle(policy, [i for i in items if not isinstance(i, PolicySwitch)], lateness)
    assert want.decisions != without.decisions  # the switches changed something
    assert len({v for *_, v, _ in _seen(want.decisions)}) >= 2
    assert want.tally["read"] == len(lines) and want.refused
    assert _engine(policy, items, lateness) == want


@pytest.mark.parametrize("seed", [5, 6])
def test_replay_with_a_policy_history_equals_the_python_engine(tmp_path: Path, seed: int
                                                               ) -> None:
    """A generated log in two files (repayments apart), a schedule of switches given
    in no order; the engine's replay with one thread or several (it runs one: a
    schedule forces it) gives what the Python engine's does."""
    lines = generated_lines(seed=seed, users=400, days=200, malformed_share=0.02,
                            duplicate_share=0.02, override_share=0.03)
    paths = [tmp_path / "repayments.jsonl", tmp_path / "others.jsonl"]
    paths[0].write_bytes(b"".join(r + b"\n" for r in lines if _topic(r) == "repayment"))
    paths[1].write_bytes(b"".join(r + b"\n" for r in lines if _topic(r) != "repayment"))
    names = [str(p) for p in paths]
    policy, items = _switched_feed(lines, seed)
    schedule = _schedule(items)
    random.Random(seed).shuffle(schedule)
    want = _replay_oracle(policy, names, schedule)
    assert want.decisions != _replay_oracle(policy, names, []).decisions
    assert len({v for *_, v, _ in _seen(want.decisions)}) >= 2
    assert want.dead and want.tally["read"] == len(lines)
    for jobs in (1, 3):
        assert _replay_engine(policy, names, schedule, jobs=jobs) == want


def test_a_policy_history_is_replayed_under_one_policy_only(tmp_path: Path) -> None:
    """A backtest (several policies) with a schedule is refused, in both engines; an
    empty schedule is no history, and is not."""
    path = _log(tmp_path, [report(0, credit_score=500, event_id="c1")])
    switch = PolicySwitch(day(1), "p-strict", STRICT)
    with pytest.raises(ValueError, match="schedule"):
        replay_each([DEFAULT, STRICT], [path], on_decisions=[print, print], schedule=[switch])
    want: list[list[bytes]] = [[], []]
    replay_each([DEFAULT, STRICT], [path], schedule=[],
                on_decisions=[lambda d: want[0].append(d.to_json()),
                              lambda d: want[1].append(d.to_json())])
    assert all(want)
    out: list[bytes] = []
    with pytest.raises(ValueError):
        compiled([DEFAULT, STRICT], [path], on_decisions=[out.extend, out.extend],
                 schedule=[(switch.at, switch.policy_id, switch.policy)])
    assert out == []
    got: list[list[bytes]] = [[], []]
    compiled([DEFAULT, STRICT], [path], on_decisions=[got[0].extend, got[1].extend],
             schedule=[])
    assert got == want


def _unversioned(raw: bytes) -> dict[str, Any]:
    """A decision but for what its policy's version makes: the version, its id and
    the id it supersedes."""
    d = orjson.loads(raw)
    for key in ("policy_version", "decision_id", "supersedes"):
        del d[key]
    return d


@pytest.mark.parametrize("lateness", [0.0, 600.0, 86_400.0])
@pytest.mark.parametrize("base", [0, 3])
@pytest.mark.parametrize("seed", [1, 2])
def test_switches_between_the_same_rules_change_nothing_but_the_version(
        seed: int, base: int, lateness: float) -> None:
    """In the Python engine: switches among copies of one policy under new versions
    take each decision at the same step as a run where they only move the watermark
    (in its step, the deadlines before a switch fire at the switch, not in the tick
    after), with the same content but for the version, and leave the same counts (the
    states differ: a switch judges every user at its time, so their clocks move there
    and what has aged out of their windows is dropped then); the versions come in the
    order of the switches. Firing before a
    switch, and judging every user at it, decide nothing a tick would not, and the
    core's per-policy memo, rebuilt, finds what it found before."""
    versions = [dataclasses.replace(POLICIES[base], version=f"v{n}") for n in range(7)]
    lines = generated_lines(seed=seed, users=200, days=200, malformed_share=0.02,
                            duplicate_share=0.03, override_share=0.03)
    _, feed = _switched_feed(lines, seed)
    order = sorted({(i.at, i.policy_id) for i in feed if isinstance(i, PolicySwitch)})
    items = [PolicySwitch(i.at, i.policy_id, versions[1 + order.index((i.at, i.policy_id))])
             if isinstance(i, PolicySwitch) else i for i in feed]
    got = _oracle(versions[0], items, lateness)
    want = _oracle(versions[0], items, lateness, switching=False)

    def key(d: dict[str, Any]) -> bytes:
        return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)

    assert [sorted(map(key, map(_unversioned, ds))) for _, ds in got.steps] == [
        sorted(map(key, map(_unversioned, ds))) for _, ds in want.steps]
    seen = [int(orjson.loads(d)["policy_version"][1:]) for d in got.decisions]
    assert seen == sorted(seen) and seen[-1] >= 3

    assert (got.tally, got.watermark, got.pending_deadlines, got.buffered) == (
        want.tally, want.watermark, want.pending_deadlines, want.buffered)
