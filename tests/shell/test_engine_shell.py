"""The compiled engine's hand-off to the worker's shell (`streams.compiled`).

What the shell did in Python before the engine took it over, checked against that
Python: a record's home partition (Kafka's murmur2), the dead-letter reason of a
record keyed by another user, which records are applied, sent on or rejected, what
a skipped record does to the watermark, and the step and lag histograms.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import _engine
from streams.codec import Rejection, decode
from streams.compiled import CompiledPartition
from streams.kafka import partition_for
from streams.metrics import LAG_BUCKETS, STEP_BUCKETS, Metrics
from streams.policy import load_policy
from tests.helpers import generated_lines
from tests.oracle.engine import Partition

POLICY = load_policy()


@settings(max_examples=300, deadline=None)
@given(key=st.binary(max_size=70), partitions=st.integers(1, 64))
def test_home_partitions_are_kafkas(key: bytes, partitions: int) -> None:
    assert _engine.partition_for(key, partitions) == (murmur2(key) & 0x7FFFFFFF) % partitions
    assert _engine.partition_for(key, partitions) == partition_for(key, partitions)


def _python_take(raw: bytes, key: bytes | None, partitions: int, home: int
                 ) -> tuple[str, Any]:
    """What the shell did with a record before the engine took it over."""
    decoded = decode(raw)
    if isinstance(decoded, Rejection):
        return "rejected", (decoded.reason, decoded.detail, decoded.event_type)
    if key is not None and key != decoded.user_id.encode():
        shown = key[:80].decode("utf-8", "replace")
        return "rejected", ("key_mismatch",
                            f"record key {shown!r} is not the user_id {decoded.user_id!r}",
                            decoded.event_type)
    there = partition_for(decoded.user_id.encode(), partitions)
    if there != home:
        return "elsewhere", (decoded.user_id.encode(), there)
    return "offered", None


_KEYS = [None, b"", b"u1", b"u000001", b"'quoted\"", b"\xff\xfe bad utf-8", "ключ".encode(),
         b"x" * 200, "\u00e9\u0301".encode(), b"tab\there", b"nul\x00"]


def test_records_are_applied_sent_on_or_rejected_as_the_python_shell_did() -> None:
    lines = generated_lines(seed=11, users=60, days=60, malformed_share=0.05, duplicate_share=0.0)
    rng = random.Random(3)
    part: CompiledPartition[int] = CompiledPartition(POLICY, 600.0)
    part.add_input("t")
    kinds = set()
    for n, raw in enumerate(lines):
        decoded = decode(raw)
        own = None if isinstance(decoded, Rejection) else decoded.user_id.encode()
        key = own if rng.random() < 0.7 else rng.choice(_KEYS)
        partitions = rng.choice([1, 2, 4, 8])
        home = rng.randrange(partitions)
        want = _python_take(raw, key, partitions, home)
        _, rejection, elsewhere = part.take("t", raw, key, n, partitions, home)
        if rejection is not None:
            got: tuple[str, Any] = ("rejected", (rejection.reason, rejection.detail,
                                                 rejection.event_type))
            if rejection.reason == "not_json":
                want = (want[0], (want[1][0], rejection.detail, want[1][2]))
        elif elsewhere is not None:
            got = ("elsewhere", elsewhere)
        else:
            got = ("offered", None)
        assert got == want, raw
        kinds.add(got[0] if got[0] != "rejected" else got[1][0])
    assert {"offered", "elsewhere", "key_mismatch", "schema"} <= kinds
    tally = part.tally
    assert tally.rejected["key_mismatch"] > 0 and sum(tally.applied.values()) > 0


def test_a_skipped_record_moves_the_watermark_as_the_python_shell_did() -> None:
    """After a takeover, a record the previous owner finished is not applied, but its
    event time counts if it was applied here (valid, keyed by its user, at home)."""
    base = {"event_id": "e1", "event_type": "application", "user_id": "u1",
            "occurred_at": "2026-01-01T10:00:00Z", "application_id": "a1",
            "product": "cash_loan", "kind": "drawdown", "requested_amount": 100}
    raw = orjson.dumps(base)
    home = partition_for(b"u1", 4)
    for key, at, moves in ((b"u1", home, True), (None, home, True), (b"u2", home, False),
                           (b"u1", (home + 1) % 4, False)):
        part: CompiledPartition[int] = CompiledPartition(POLICY, 0.0)
        part.add_input("t")
        assert part.skip("t", raw, key, 4, at) == []
        assert (part.buffer.watermark > float("-inf")) is moves
        assert len(part.buffer) == 0 and sum(part.tally.applied.values()) == 0
    part = CompiledPartition(POLICY, 0.0)
    part.add_input("t")
    part.skip("t", b"{broken", None, 4, home)
    assert part.buffer.watermark == float("-inf")


def test_decisions_states_and_counts_come_out_as_the_python_partition_gives_them() -> None:
    lines = generated_lines(seed=12, users=80, days=120, malformed_share=0.0, duplicate_share=0.02)
    ours: Partition[int] = Partition(POLICY, {}, 600.0)
    theirs: CompiledPartition[int] = CompiledPartition(POLICY, 600.0)
    ours.add_input("t")
    theirs.add_input("t")
    want, got, released_ours, released_theirs = [], [], [], []
    for n, raw in enumerate(lines):
        event = decode(raw)
        assert not isinstance(event, Rejection)
        released_ours += ours.offer("t", event, n)
        let_go, rejection, elsewhere = theirs.take("t", raw, event.user_id.encode(), n, 1, 0)
        assert rejection is None and elsewhere is None
        released_theirs += let_go
        want += [(d.user_id.encode(), d.to_json()) for d in ours.drain()]
        got += theirs.drain_keyed()
    released_ours += ours.set_idle("t", True)
    released_theirs += theirs.set_idle("t", True)
    want += [(d.user_id.encode(), d.to_json()) for d in ours.drain()]
    got += theirs.drain_keyed()
    assert got == want and len(got) > 20
    assert released_theirs == released_ours
    assert sorted(released_theirs) == list(range(len(lines)))
    counted = theirs.tally
    theirs.tally = type(counted)()
    assert counted.applied == ours.tally.applied and counted.decisions == ours.tally.decisions
    assert counted.duplicates == ours.tally.duplicates
    assert sum(theirs.tally.applied.values()) == 0  # taken: zero from now
    from tests.oracle.state import dump
    writes = dict(theirs.states.take_dirty())
    assert writes == {uid.encode(): dump(s) for uid, s in ours.states.items()}
    assert theirs.states.take_dirty() == []  # once each
    assert theirs.states.users == len(ours.states)


def test_restored_users_decide_as_they_would_have() -> None:
    """States loaded from the table (at assignment) go on as if never stored."""
    lines = generated_lines(seed=13, users=50, days=150, malformed_share=0.0, duplicate_share=0.0)
    half = len(lines) // 2
    whole: CompiledPartition[int] = CompiledPartition(POLICY, 0.0)
    first: CompiledPartition[int] = CompiledPartition(POLICY, 0.0)
    for part in (whole, first):
        part.add_input("t")
    want, got = [], []
    for n, raw in enumerate(lines):
        whole.take("t", raw, None, n, 1, 0)
        if n < half:
            first.take("t", raw, None, n, 1, 0)
    want = whole.drain_keyed()
    got = first.drain_keyed()
    table = dict(first.states.take_dirty())
    second: CompiledPartition[int] = CompiledPartition(POLICY, 0.0)
    second.add_input("t")
    assert second.restore((k.decode(), v) for k, v in table.items()) == len(table)
    assert second.pending_deadlines == first.pending_deadlines
    # The watermark of the first half: the last event time it saw.
    second.skip("t", lines[half - 1], None, 1, 0)
    for n, raw in enumerate(lines[half:], half):
        second.take("t", raw, None, n, 1, 0)
    got += second.drain_keyed()
    whole.set_idle("t", True)
    second.set_idle("t", True)
    want += whole.drain_keyed()
    got += second.drain_keyed()
    assert got == want


def test_step_and_lag_histograms_reach_the_metrics() -> None:
    lines = generated_lines(seed=14, users=20, days=30, malformed_share=0.0, duplicate_share=0.0)
    part: CompiledPartition[int] = CompiledPartition(POLICY, 0.0, step_bounds=STEP_BUCKETS,
                                                     lag_bounds=LAG_BUCKETS)
    part.add_input("t")
    for n, raw in enumerate(lines):
        part.take("t", raw, None, n, 1, 0)
    part.set_idle("t", True)
    timings = part.take_timings()
    assert timings is not None
    step, step_sum, lag, lag_sum = timings
    assert sum(step) == sum(lag) == len(lines) and step_sum > 0
    assert lag[-1] == 0 or lag_sum > 86_400  # a 2026 log is months behind the clock
    metrics = Metrics()
    metrics.add_timings(step, step_sum, lag, lag_sum)
    text = metrics.exposition()[0].decode()
    assert f"closure_monitor_step_seconds_count {float(len(lines))}" in text
    assert part.take_timings() == ([0] * len(step), 0.0, [0] * len(lag), 0.0)
