"""The compiled engine (`streams._engine`) against the Python engine, byte for byte.

The Python engine (`tests/oracle`, with `streams.codec`) is the oracle:
the same records, under the same policy, must give the same decisions (JSON bytes),
the same rejections (reason, detail and event type; a `not_json` detail is the
parser's own message, so only its reason is compared), the same counts and the same
stored states. Two levels: one user's random sequences through `step` (every state
stored and loaded again between steps on the compiled side, at random steps on the
Python side), and generated logs through a whole partition, inputs interleaved.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import _engine
from streams.codec import Rejection, decode
from streams.events import Tick, format_date, format_time
from streams.policy import load_policy
from streams.replay import compiled
from tests.factories import T0
from tests.helpers import dead_letter_key, generated_lines, tally_counts
from tests.oracle import core
from tests.oracle.engine import Partition
from tests.oracle.policies import POLICIES
from tests.oracle.replay import RejectedLine, replay
from tests.oracle.state import dump, load

ENGINES = [_engine.Policy(p.engine_json()) for p in POLICIES]


def _rejection(r: Rejection) -> tuple[str, str | None, str | None]:
    return (r.reason, None if r.reason == "not_json" else r.detail, r.event_type)


def _theirs(r: tuple[str, str, str | None] | None) -> tuple[str, str | None, str | None] | None:
    if r is None:
        return None
    reason, detail, event_type = r
    return (reason, None if reason == "not_json" else detail, event_type)


# --- one user's sequences -----------------------------------------------------------

_ids = iter(range(1, 1 << 60))


def _stamp(seconds: float, offset: bool) -> str:
    text = format_time(T0 + seconds)
    if offset:  # the same instant written at +08:00
        from datetime import UTC, datetime, timedelta, timezone

        at = datetime.fromtimestamp(T0 + seconds, UTC).astimezone(timezone(timedelta(hours=8)))
        text = at.isoformat(timespec="milliseconds" if at.microsecond else "seconds")
    return text


_seconds = (st.integers(0, 60).map(lambda d: d * 86_400.0)
            | st.integers(0, 60 * 86_400).map(float)
            | st.integers(0, 60 * 86_400_000).map(lambda ms: ms / 1000))
_when = st.tuples(_seconds, st.booleans())


def _event(kind: str, when: tuple[float, bool], body: dict[str, Any], user: str = "u1"
           ) -> bytes:
    return orjson.dumps({"event_id": f"e{next(_ids)}", "event_type": kind, "user_id": user,
                         "occurred_at": _stamp(*when), **body})


_repayment = st.builds(
    lambda when, due, loan, n, paid, amount: _event("repayment", when, {
        "loan_id": f"L{loan}", "installment": n, "product": "cash_loan",
        "due_date": format_date(T0 + due * 86_400.0), "amount_due": 100.0,
        "amount_paid": 100.0 if paid is not None else amount,
        "paid_at": None if paid is None else _stamp(max(0.0, when[0] + paid * 86_400), False)}),
    _when, st.sampled_from([-5, 0, 3, 10, 20, 30]), st.integers(0, 3), st.integers(1, 3),
    st.none() | st.integers(-30, 5), st.sampled_from([0.0, 50.0, 100.0, 100]))
_application = st.builds(
    lambda when, kind: _event("application", when, {
        "application_id": f"a{next(_ids)}", "product": "pay_later", "kind": kind,
        "requested_amount": 1000}),
    _when, st.sampled_from(["drawdown", "limit_increase"]))
_report = st.builds(
    lambda when, fields: _event("credit_report", when, {"bureau": "pboc", **fields}), _when,
    st.fixed_dictionaries({}, optional={
        "credit_score": st.integers(300, 950),
        "open_lenders": st.integers(0, 12),
        "hard_inquiries_30d": st.integers(0, 12),
        "delinquent_accounts": st.integers(0, 4),
        "total_debt": st.sampled_from([0.0, 1000.0, 200_000.0, 500_000, 123_456.78]),
        "monthly_income": st.sampled_from([0.0, 1000.0, 10_000.0, 7_777.7])}))
_override = st.builds(
    lambda when, action, until, user: _event("override", when, {
        "action": action, "operator": "ops-1", "reason": "appeal",
        **({} if until is None else {"until": _stamp(when[0] + until, False)})},
        user=user),
    _when, st.sampled_from(["restore", "hold", "release"]),
    st.none() | st.integers(-3, 40 * 86_400).map(float), st.sampled_from(["u1", "u1", "u2"]))
_broken = st.sampled_from([b"", b"{", b"[]", b'{"event_type": "repayment"}',
                           b'{"event_type": "nope"}', b"\xff\xfe"])
_tick = _seconds.map(lambda s: T0 + s)
_item = _repayment | _application | _report | _override | _tick | _broken


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(_item, min_size=1, max_size=60), which=st.integers(0, len(POLICIES) - 1),
       redeliver=st.booleans(), reload=st.sets(st.integers(0, 80)))
def test_steps_equal_the_python_core(items: list[Any], which: int, redeliver: bool,
                                     reload: set[int]) -> None:
    policy, compiled = POLICIES[which], ENGINES[which]
    if redeliver:
        items = items + [i for i in items[::3] if isinstance(i, bytes)]
    ours: Any = None
    stored: bytes | None = None
    for n, item in enumerate(items):
        if isinstance(item, bytes):
            event = decode(item)
            stored, got, rejected = _engine.step(compiled, stored, raw=item)
            if isinstance(event, Rejection):
                assert _theirs(rejected) == _rejection(event)
                assert got == []
                continue
            applied = core.rejection(ours, event)
            assert _theirs(rejected) == (None if applied is None else _rejection(applied))
            ours, want = core.step(policy, ours, event)
        else:
            stored, got, rejected = _engine.step(compiled, stored, tick=item)
            ours, want = core.step(policy, ours, Tick(item))
        assert got == [d.to_json() for d in want], n
        assert stored == (None if ours is None else dump(ours)), n
        if ours is not None and n in reload:
            ours = load(dump(ours))


# --- generated logs through a partition ---------------------------------------------

def _source(raw: bytes) -> int:
    """Which input a line comes on: its event type's topic (unknown ones on the first)."""
    for i, name in enumerate((b'"repayment"', b'"application"', b'"credit_report"',
                              b'"override"')):
        if name in raw:
            return i
    return 0


def _interleaved(lines: list[bytes], seed: int, sources: int
                 ) -> Iterator[tuple[int, int, bytes]]:
    """(source, number, line): each type's lines in their order, the types interleaved
    at random, as a consumer of a topic per type sees them."""
    queues: list[list[tuple[int, bytes]]] = [[] for _ in range(sources)]
    for n, raw in enumerate(lines):
        source = _source(raw)
        queues[source if source < sources else 0].append((n, raw))
    for q in queues:
        q.reverse()
    rng = random.Random(seed)
    while any(queues):
        live = [i for i, q in enumerate(queues) if q]
        i = rng.choice(live)
        for _ in range(rng.randint(1, 50)):
            if not queues[i]:
                break
            n, raw = queues[i].pop()
            yield i, n, raw


def _both(policy: Any, lines: list[bytes], lateness: float, sources: int, seed: int) -> None:
    theirs = _engine.Partition(_engine.Policy(policy.engine_json()), lateness)
    ours: Partition[int] = Partition(policy, {}, lateness)
    for i in range(sources):
        theirs.add_input(i)
        ours.add_input(i)
    feed = (_interleaved(lines, seed, sources) if sources > 1
            else ((0, n, raw) for n, raw in enumerate(lines)))
    want: list[bytes] = []
    got: list[bytes] = []
    released_ours: list[int] = []
    released_theirs: list[int] = []
    last: dict[int, int] = {}
    for source, n, raw in feed:
        last[source] = n
        event = decode(raw)
        ours.tally.read += 1
        rejected = theirs.offer(source, raw, n)
        if isinstance(event, Rejection):
            ours.tally.count_rejection(event)
            assert _theirs(rejected) == _rejection(event), raw
        else:
            assert rejected is None, raw
            released_ours += ours.offer(source, event, n)
        want += [d.to_json() for d in ours.drain()]
        got += theirs.take_decisions()
        ours.take_rejections()  # counted in the tally, compared below
        released_theirs += theirs.take_handles()
        assert len(got) == len(want), raw
    for source in range(sources):
        released_ours += ours.remove_input(source)
        theirs.remove_input(source)
        released_theirs += theirs.take_handles()
    want += [d.to_json() for d in ours.drain()]
    got += theirs.take_decisions()
    assert got == want
    assert released_theirs == released_ours
    assert theirs.tally() == tally_counts(ours.tally)
    assert theirs.pending_deadlines == ours.pending_deadlines
    assert theirs.watermark == ours.buffer.watermark
    assert theirs.states() == sorted((uid, dump(s)) for uid, s in ours.states.items())


@pytest.mark.parametrize(("seed", "users", "days", "lateness", "sources"), [
    (1, 300, 120, 600.0, 1),
    (2, 300, 200, 600.0, 3),
    (3, 200, 365, 0.0, 3),
    (4, 500, 90, 86_400.0, 3),
    (5, 1000, 200, 600.0, 4),  # with overrides, on a fourth input
    (6, 1000, 200, 0.0, 1),
])
def test_generated_logs_equal_the_python_engine(seed: int, users: int, days: int,
                                                lateness: float, sources: int) -> None:
    lines = generated_lines(seed=seed, users=users, days=days, malformed_share=0.02,
                            duplicate_share=0.02, override_share=0.03 if seed >= 5 else 0.0)
    assert len(lines) > 1000
    for policy in (load_policy(), *POLICIES[1:]):
        _both(policy, lines, lateness, sources, seed)


def test_stored_states_load_unchanged() -> None:
    """States stored by the Python engine load and dump again to the same bytes."""
    lines = generated_lines(seed=7, users=200, days=200, malformed_share=0.0, duplicate_share=0.0)
    part: Partition[int] = Partition(load_policy(), {}, 600.0)
    part.add_input(0)
    for n, raw in enumerate(lines):
        event = decode(raw)
        if not isinstance(event, Rejection):
            part.offer(0, event, n)
    part.remove_input(0)
    stored = [dump(s) for s in part.states.values()]
    assert len(stored) == 200
    assert [_engine.reload_state(b) for b in stored] == stored
    # A state stored before announcements were kept ("W"): its pending notices count.
    old = orjson.loads(stored[0])
    old.pop("W")
    assert orjson.loads(_engine.reload_state(orjson.dumps(old)))["W"] == old["p"]


# --- overrides of users with no state: rejected when applied --------------------------

def _line(kind: str, user: str, at: str, event_id: str, **body: Any) -> bytes:
    return orjson.dumps({"event_id": event_id, "event_type": kind, "user_id": user,
                         "occurred_at": at, **body})


def _hold(user: str, at: str, event_id: str) -> bytes:
    return _line("override", user, at, event_id, action="hold", operator="ops-1",
                 reason="appeal", until="2026-03-01T00:00:00Z")


_SCORE = {"bureau": "pboc", "credit_score": 700}


def test_the_python_partition_rejects_an_override_of_a_user_it_has_no_state_of() -> None:
    """In event-time order, as released: an override that arrives before its user's
    first event but is later in event time is applied; one earlier is rejected, counted
    as a rejection (and read once, by the caller), its handle released as any."""
    part: Partition[int] = Partition(load_policy(), {}, 600.0)
    part.add_input(0)
    records = [
        _hold("ghost", "2026-01-02T00:00:00Z", "o1"),
        _hold("u1", "2026-01-02T00:05:00Z", "o2"),  # before u1's report in arrival order
        _line("credit_report", "u1", "2026-01-02T00:04:00Z", "c1", **_SCORE),
        _hold("u2", "2026-01-02T00:06:00Z", "o3"),  # before u2's report in event time
        _line("credit_report", "u2", "2026-01-02T00:07:00Z", "c2", **_SCORE),
        _hold("u1", "2026-01-02T00:05:00Z", "o2"),  # a redelivery
        _hold("ghost", "2026-01-02T00:08:00Z", "o1"),  # the same one again: rejected again
    ]
    released: list[int] = []
    for n, raw in enumerate(records):
        event = decode(raw)
        assert not isinstance(event, Rejection)
        part.tally.read += 1
        released += part.offer(0, event, n)
    released += part.remove_input(0)
    assert sorted(released) == list(range(len(records)))
    rejected = part.take_rejections()
    assert [(n, r.reason, r.detail, r.event_type) for n, r in rejected] == [
        (0, "unknown_user", "no such user: ghost", "override"),
        (3, "unknown_user", "no such user: u2", "override"),
        (6, "unknown_user", "no such user: ghost", "override")]
    assert part.take_rejections() == []
    t = part.tally
    assert (t.read, t.accounted) == (7, 7)
    assert t.rejected == {"unknown_user": 3} and t.rejected_types == {"override": 3}
    assert t.applied == {"credit_report": 2, "override": 1}
    assert t.duplicates == {"override": 1}
    assert sorted(part.states) == ["u1", "u2"] and part.states["u1"].hold_until is not None
    assert part.states["u2"].hold_until is None
    assert [d.action for d in part.drain()] == ["hold"]


def _two_logs(tmp: Path) -> list[str]:
    first = [b"{not json", _hold("ghost", "2026-01-02T00:00:00Z", "o1"),
             _line("credit_report", "u1", "2026-01-02T01:00:00Z", "c1", **_SCORE),
             _hold("u1", "2026-01-02T02:00:00Z", "o2"),
             _hold("ghost-2", "2026-01-03T00:00:00Z", "o3"),
             _line("credit_report", "u1", "2026-01-04T00:00:00Z", "c2", credit_score=500,
                   bureau="pboc")]
    second = [_hold("ghost-3", "2026-01-01T00:00:00Z", "o4"), b"[]",
              _line("override", "u1", "2026-01-02T03:00:00Z", "o5", action="release",
                    operator="ops-2", reason="appeal upheld"),
              _line("override", "u1", "2026-01-02T03:00:00Z", "o6", action="hold",
                    operator="ops-2", reason="appeal", until="2026-01-02T02:00:00Z")]
    paths = []
    for name, lines in (("a.jsonl", first), ("b.jsonl", second)):
        path = tmp / name
        path.write_bytes(b"\n".join(lines) + b"\n")
        paths.append(str(path))
    return paths


def test_the_python_replay_dead_letters_overrides_of_unknown_users_last(tmp_path: Path
                                                                         ) -> None:
    paths = _two_logs(tmp_path)
    dead: list[RejectedLine] = []
    decisions: list[bytes] = []
    tally = replay(load_policy(), paths, on_decision=lambda d: decisions.append(d.to_json()),
                   on_reject=dead.append)
    # Rejected when decoded, as read; then those rejected when applied, by file and line.
    assert [(Path(r.source).name, r.line, r.rejection.reason) for r in dead] == [
        ("a.jsonl", 1, "not_json"), ("b.jsonl", 2, "not_object"), ("b.jsonl", 4, "schema"),
        ("a.jsonl", 2, "unknown_user"), ("a.jsonl", 5, "unknown_user"),
        ("b.jsonl", 1, "unknown_user")]
    last = orjson.loads(dead[-1].to_json())
    assert last == {"source": paths[1], "line": 1, "reason": "unknown_user",
                    "detail": "no such user: ghost-3", "raw": _hold(
                        "ghost-3", "2026-01-01T00:00:00Z", "o4").decode()}
    assert tally.rejected == {"not_json": 1, "not_object": 1, "schema": 1, "unknown_user": 3}
    assert tally.rejected_types == {"unknown": 2, "override": 4}
    assert tally.applied == {"credit_report": 2, "override": 2}
    assert tally.read == tally.accounted == 10
    assert [orjson.loads(d)["action"] for d in decisions] == ["hold", "release", "warn"]


def _oracle_replay(paths: list[str]) -> tuple[list[bytes], list[bytes], Any]:
    decisions: list[bytes] = []
    dead: list[bytes] = []
    tally = replay(load_policy(), paths, on_decision=lambda d: decisions.append(d.to_json()),
                   on_reject=lambda r: dead.append(r.to_json()))
    return decisions, dead, tally


def test_overrides_through_replay_equal_the_python_engine(tmp_path: Path) -> None:
    """Decisions, dead letters (those rejected when applied last) and counts, with
    overrides of known and unknown users in two files, and in a generated log."""
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"\n".join(generated_lines(seed=8, users=1500, days=200,
                                               override_share=0.03)) + b"\n")
    for paths in (_two_logs(tmp_path), [str(log)]):
        want, want_dead, tally = _oracle_replay(paths)
        assert tally.rejected["unknown_user"] > 0
        got: list[bytes] = []
        got_dead: list[bytes] = []
        [theirs] = compiled([load_policy()], paths, on_decisions=[got.extend],
                            on_reject=got_dead.extend)
        assert got == want
        assert [dead_letter_key(d) for d in got_dead] == [dead_letter_key(d) for d in want_dead]
        assert tally_counts(theirs) == tally_counts(tally)
