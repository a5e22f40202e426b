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
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import _engine
from streams.codec import Rejection, decode
from streams.events import Tick, format_date, format_time
from streams.policy import load_policy
from tests.factories import T0
from tests.helpers import generated_lines, tally_counts
from tests.oracle import core
from tests.oracle.engine import Partition
from tests.oracle.policies import POLICIES
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


def _event(kind: str, when: tuple[float, bool], body: dict[str, Any]) -> bytes:
    return orjson.dumps({"event_id": f"e{next(_ids)}", "event_type": kind, "user_id": "u1",
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
_broken = st.sampled_from([b"", b"{", b"[]", b'{"event_type": "repayment"}',
                           b'{"event_type": "nope"}', b"\xff\xfe"])
_tick = _seconds.map(lambda s: T0 + s)
_item = _repayment | _application | _report | _tick | _broken


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
            assert rejected is None
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
    for i, name in enumerate((b'"repayment"', b'"application"', b'"credit_report"')):
        if name in raw:
            return i
    return 0


def _interleaved(lines: list[bytes], seed: int) -> Iterator[tuple[int, int, bytes]]:
    """(source, number, line): each type's lines in their order, the types interleaved
    at random, as a consumer of three topics sees them."""
    queues: list[list[tuple[int, bytes]]] = [[], [], []]
    for n, raw in enumerate(lines):
        queues[_source(raw)].append((n, raw))
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
    feed = (_interleaved(lines, seed) if sources == 3
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
])
def test_generated_logs_equal_the_python_engine(seed: int, users: int, days: int,
                                                lateness: float, sources: int) -> None:
    lines = generated_lines(seed=seed, users=users, days=days, malformed_share=0.02,
                 duplicate_share=0.02)
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
