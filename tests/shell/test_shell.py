"""The worker's shell (streams.shell.Shell) around the engine's partition
(streams.compiled.CompiledPartition), fed records as fetched (bytes), with a fake
table standing in for Faust's (its `data` is what the store holds): what it stores
and when, what it acks and counts, its progress, back-pressure and idle inputs.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson
import pytest

from streams.codec import decode
from streams.compiled import CompiledPartition
from streams.events import Event, format_time
from streams.policy import load_policy

POLICY = load_policy()


class FakeTable:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}


async def test_the_shell_stores_writes_once_their_decisions_are_delivered() -> None:
    """Shell._settle: a state's bytes are kept (in the partition's outbox) while its
    decision is in flight, written to the table once it is delivered, and then
    forgotten."""
    import asyncio
    from types import SimpleNamespace

    from streams.metrics import Metrics
    from streams.settings import Settings
    from streams.shell import Shell
    from tests.factories import encode, repayment

    loop = asyncio.get_running_loop()
    app: Any = SimpleNamespace(consumer=SimpleNamespace(flow_active=True, ack=lambda m: None),
                               consumer_generation_id=1)
    table = FakeTable()
    shell = Shell(app, Settings(partitions=1), POLICY, table, Metrics())
    in_flight: list[asyncio.Future[None]] = []

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None = None
                   ) -> asyncio.Future[None]:
        in_flight.append(loop.create_future())
        return in_flight[-1]

    async def store(p: int, writes: list[tuple[bytes, bytes]]) -> list[Any]:
        table.data.update(writes)
        return []

    shell._send = send  # type: ignore[method-assign]
    shell._store = store  # type: ignore[method-assign]
    shell.storing[0] = deque()
    part: CompiledPartition[Any] = CompiledPartition(POLICY, 0.0)
    part.add_input(0)
    shell.outboxes[0] = deque()
    for event in (repayment(0, due=10, user="u1"),  # released: the watermark is 0 late
                  repayment(200, due=10, user="u2")):  # u1's deadlines fire: decisions
        _, rejection, elsewhere = part.take(0, encode(event), event.user_id.encode(), None,
                                            1, 0)
        assert rejection is None and elsewhere is None
    assert sum(part.tally.decisions.values()) > 0
    await shell._settle(0, part, [], (), 1)
    assert in_flight and table.data == {}  # nothing stored before delivery
    assert [[k for k, _ in group.writes] for group in shell.outboxes[0]] == [[b"u1", b"u2"]]
    for future in in_flight:
        future.set_result(None)
    await shell._settle(0, part, [], (), 1)
    assert {b"u1", b"u2"} <= set(table.data) and not shell.outboxes[0]
    assert table.data[b"u1"] == part.engine.state("u1")  # the engine's state, as stored
    assert part.states.take_dirty() == []  # written once


async def test_changelog_batches_split_at_the_batch_size_and_persist_each_last_offset(
        ) -> None:
    """Production changelog writes (app.changelog_batches): every write once, in order,
    in batches of at most the producer's batch size; when a batch is delivered the
    store's persisted offset is the offset of that batch's last record."""
    import asyncio
    from types import SimpleNamespace

    from aiokafka.producer.message_accumulator import BatchBuilder
    from aiokafka.record.default_records import DefaultRecordBatch
    from faust.types import TP

    from streams.store import changelog_batches

    loop = asyncio.get_running_loop()
    sent: list[tuple[list[int], str, int, asyncio.Future[Any]]] = []
    records: list[tuple[bytes, bytes]] = []
    next_offset = 100  # the changelog partition's end before these writes

    class Producer:
        def create_batch(self) -> BatchBuilder:
            return BatchBuilder(300, 0)  # room for two of the 100-byte values below

        async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int
                             ) -> asyncio.Future[Any]:
            count = batch.record_count()
            records.extend((r.key, r.value) for r in DefaultRecordBatch(batch._build()))
            future = loop.create_future()
            sent.append(([next_offset + i for i in range(count)], topic, partition, future))
            return future

    persisted: list[tuple[TP, int]] = []
    app: Any = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=Producer))
    table: Any = SimpleNamespace(data=SimpleNamespace(
        set_persisted_offset=lambda tp, offset: persisted.append((tp, offset))))
    writes = [(f"u{i}".encode(), bytes([65 + i]) * 100) for i in range(5)]
    await changelog_batches(app, table, "cl", 3, writes)
    assert [len(offsets) for offsets, *_ in sent] == [2, 2, 1]
    assert records == writes
    assert {(topic, p) for _, topic, p, _ in sent} == {("cl", 3)}
    assert persisted == []  # nothing delivered yet
    base = 100
    for offsets, _, _, future in sent:
        future.set_result(SimpleNamespace(offset=base))  # a batch's metadata: base offset
        base += len(offsets)
    await asyncio.sleep(0)  # done callbacks run on the next pass of the loop
    assert persisted == [(TP("cl", 3), 101), (TP("cl", 3), 103), (TP("cl", 3), 104)]


def test_back_pressure_pauses_inputs_ahead_never_the_one_holding_the_watermark() -> None:
    """Shell._flow: an input over --input-buffer pauses while another holds the
    watermark back, resumes at half the limit or once it is the furthest behind; the
    input holding the watermark back never pauses, however much it holds."""
    from types import SimpleNamespace

    from faust.types import TP

    from streams.metrics import Metrics
    from streams.progress import Input, Pending
    from streams.settings import Settings
    from streams.shell import Shell
    from tests.factories import day, encode, report

    paused: set[TP] = set()
    consumer = SimpleNamespace(flow_active=True, pause_later=paused.update,
                               resume_later=paused.difference_update)
    app: Any = SimpleNamespace(consumer=consumer, consumer_generation_id=1)
    metrics = Metrics()
    shell = Shell(app, Settings(partitions=1, input_buffer=4), POLICY, FakeTable(), metrics)
    part: CompiledPartition[Any] = CompiledPartition(POLICY, 1e9)  # releases nothing itself
    slow, fast, other = (TP(name, 0) for name in shell.topics.inputs[:3])
    for tp in (slow, fast, other):
        part.add_input(tp)
        shell.inputs[tp] = Input()

    def hold(tp: TP, n: int, at: float) -> None:
        """`tp` holds n records, the latest at `at` (days)."""
        inp = shell.inputs[tp]
        inp.pending.clear()
        inp.pending.extend(Pending(None) for _ in range(n))  # type: ignore[arg-type]
        part.skip(tp, encode(report(at, user="u1")), b"u1", 1, 0)  # its time counts
        assert part.buffer.latest(tp) == day(at)

    hold(slow, 9, 0)
    hold(fast, 5, 100)
    hold(other, 4, 100)
    shell._flow(0, part)
    assert paused == {fast}  # over the limit and ahead; `slow` holds the watermark
    hold(fast, 3, 100)
    shell._flow(0, part)
    assert paused == {fast}  # 3 > half of 4: still paused
    hold(fast, 2, 100)
    shell._flow(0, part)
    assert paused == set()  # at half: resumed
    hold(fast, 50, 100)
    shell._flow(0, part)
    assert paused == {fast}
    hold(slow, 9, 200)  # `slow` moves past the others, which are now the slowest (100)
    shell._flow(0, part)
    assert paused == {slow}  # `fast` is no longer ahead: resumed; `slow` is, over the limit
    part.set_idle(other, True)  # idle inputs hold nothing back
    part.set_idle(fast, True)
    shell._flow(0, part)
    assert paused == set()  # `slow` is the only active input: it holds the watermark
    samples = {s.labels["event_type"]: s.value for f in metrics.registry.collect()
               for s in f.samples if s.name == "closure_monitor_input_pauses_total"}
    assert samples == {"repayment": 1, "application": 2, "credit_report": 0, "override": 0}


def test_progress_round_trips_as_runs_and_refuses_anything_else() -> None:
    import pytest

    from streams.progress import Progress, decode_progress, encode_progress

    done = Progress(10, {12, 13, 14, 20, 22, 23})
    assert done.runs() == [[12, 15], [20, 21], [22, 24]]
    assert done.until == 24
    assert [o for o in range(30) if done.done(o)] == [*range(10), 12, 13, 14, 20, 22, 23]
    back = decode_progress(encode_progress({"a": done, "b": Progress(7)}))
    assert {t: (p.below, p.ahead) for t, p in back.items()} == {
        "a": (10, {12, 13, 14, 20, 22, 23}), "b": (7, set())}
    assert Progress(7).until == 7 and not Progress(7).done(7)
    for raw in (b"", b"[]", b'{"v":2,"inputs":{}}', b'{"v":1}', b'{"v":1,"inputs":{"a":[1]}}',
                b'{"v":1,"inputs":{"a":[1,[[2]]]}}', b'{"v":1,"inputs":{"a":["x",[]]}}'):
        with pytest.raises(ValueError, match="unreadable progress record"):
            decode_progress(raw)


def test_progress_names_at_most_so_many_done_offsets_ahead() -> None:
    """The lowest PROGRESS_AHEAD_MAX: what it leaves out is applied again by a later
    owner, never skipped unapplied."""
    from streams.progress import PROGRESS_AHEAD_MAX, Progress, decode_progress, encode_progress

    ahead = range(100, 100 + 4 * PROGRESS_AHEAD_MAX, 2)  # scattered: one run each
    done = decode_progress(encode_progress({"a": Progress(10, ahead)}))["a"]
    assert done.ahead == set(list(ahead)[:PROGRESS_AHEAD_MAX])
    assert done.until == 100 + 2 * PROGRESS_AHEAD_MAX - 1


def _message(offset: int) -> object:
    from types import SimpleNamespace

    from faust.types import TP

    return SimpleNamespace(tp=TP("in", 0), offset=offset)


def test_an_input_reports_its_done_prefix_and_what_is_done_ahead_of_it() -> None:
    """Input: `finish` takes the done records at the head (to ack, in offset order);
    `progress` is the first offset not done and the done offsets beyond it."""
    from streams.progress import Input, Pending

    inp = Input()
    inp.next_offset = 100
    pending = [Pending(_message(o)) for o in range(100, 106)]  # type: ignore[arg-type]
    inp.pending.extend(pending)
    inp.next_offset = 106
    for n in (1, 3, 4):  # released out of offset order: 101, 103 and 104 done first
        pending[n].done = True
        inp.done_ahead.add(100 + n)
    assert inp.finish() == []
    progress = inp.progress()
    assert (progress.below, progress.ahead) == (100, {101, 103, 104})
    pending[0].done = True
    inp.done_ahead.add(100)
    assert [m.offset for m in inp.finish()] == [100, 101]
    progress = inp.progress()
    assert (progress.below, progress.ahead) == (102, {103, 104})
    for n in (2, 5):
        pending[n].done = True
        inp.done_ahead.add(100 + n)
    assert [m.offset for m in inp.finish()] == [102, 103, 104, 105]
    progress = inp.progress()
    assert (progress.below, progress.ahead) == (106, set()) and not inp.done_ahead


def test_an_input_taken_over_keeps_what_the_previous_owner_finished() -> None:
    """After a takeover the input reads again from the committed offset: its progress
    still names what the previous owner finished and it has not read again, so a
    third owner skips that too (the progress never goes back)."""
    from streams.progress import Input, Pending, Progress

    inp = Input()
    inp.next_offset = 50  # the committed offset
    inp.skip = Progress(60, {62, 63})
    progress = inp.progress()
    assert (progress.below, progress.ahead) == (60, {62, 63})
    # Read again: 50..59 skipped (done), 60 and 61 not done, 62 skipped, 64 applied.
    for o in range(50, 65):
        inp.pending.append(Pending(_message(o), done=inp.skip.done(o)))  # type: ignore[arg-type]
        if inp.skip.done(o):
            inp.done_ahead.add(o)
    inp.next_offset = 65
    inp.pending[-1].done = True
    inp.done_ahead.add(64)
    assert [m.offset for m in inp.finish()] == list(range(50, 60))
    progress = inp.progress()
    assert (progress.below, progress.ahead) == (60, {62, 63, 64})


async def test_the_shell_counts_a_group_once_its_decisions_and_states_are_delivered(
        ) -> None:
    """Shell._settle: a group's states are written once its decisions are delivered;
    its records are counted (the worker's tally, /metrics) and acked only once those
    writes' changelog records are delivered too; the progress record that names them
    goes out after the states of the next group (or alone)."""
    import asyncio
    from types import SimpleNamespace

    from faust.types import TP

    from streams.progress import Input, Pending, decode_progress, progress_key
    from tests.factories import encode, repayment

    loop = asyncio.get_running_loop()
    table, acked = FakeTable(), list[int]()
    shell = _with_changelog(_bare_shell(table, acked), table)
    metrics, changelog, stored = shell.metrics, shell.changelog, shell.stored
    in_flight: list[asyncio.Future[None]] = []

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None = None
                   ) -> asyncio.Future[None]:
        in_flight.append(loop.create_future())
        return in_flight[-1]

    shell._send = send
    tp = TP(shell.topics.inputs[0], 0)
    part: CompiledPartition[Any] = CompiledPartition(POLICY, 0.0)
    part.add_input(tp)
    shell.parts[0] = part
    shell.outboxes[0] = deque()
    shell.last_message[0] = None
    inp = shell.inputs[tp] = Input()
    released = []
    for offset, event in enumerate([repayment(0, due=10, user="u1"),
                                    repayment(200, due=10, user="u2")]):
        pending = Pending(SimpleNamespace(tp=tp, offset=offset))  # type: ignore[arg-type]
        inp.pending.append(pending)
        inp.next_offset = offset + 1
        let_go, rejection, elsewhere = part.take(tp, encode(event), event.user_id.encode(),
                                                 pending, 1, 0)
        assert rejection is None and elsewhere is None
        released += let_go
    assert len(released) == 2 and sum(part.tally.decisions.values()) > 0

    def counted() -> dict[str, float]:
        return {s.labels["outcome"]: s.value for f in metrics.registry.collect()
                for s in f.samples if s.name == "closure_monitor_events_total"
                and s.labels["event_type"] == "repayment"}

    def progress() -> tuple[int, set[int]]:
        p = decode_progress(table.data[progress_key(0)])[tp.topic]
        return p.below, p.ahead

    await shell._settle(0, part, released, (), 1)
    assert in_flight and stored == [] and acked == []
    assert shell.tally.read == 0 and counted()["applied"] == 0
    for future in in_flight:
        future.set_result(None)
    await shell._settle(0, part, [], (), 1)
    assert stored == [[b"u1", b"u2", progress_key(0)]]  # the progress after the states
    assert progress() == (0, set())  # nothing is done before the changelog has it
    await shell._settle(0, part, [], (), 1)
    assert acked == [] and shell.tally.read == 0 and counted()["applied"] == 0
    changelog[0].set_result(None)
    await shell._settle(0, part, [], (), 1)
    assert acked == [0, 1]
    assert shell.tally.read == 2 and counted()["applied"] == 2
    assert sum(shell.tally.decisions.values()) == len(in_flight)
    # That settle had nothing else to store: the progress went out on its own.
    assert stored[1:] == [[progress_key(0)]] and progress() == (2, set())
    await shell.quiesce()
    assert len(stored) == 2  # written once: it did not move since


def _with_changelog(shell: Any, table: FakeTable) -> Any:
    """The shell's table writes wait for their changelog futures (`shell.changelog`,
    in order) and are listed by key (`shell.stored`)."""
    import asyncio

    loop = asyncio.get_running_loop()
    shell.changelog, shell.stored = [], []

    async def store(p: int, writes: list[tuple[bytes, bytes]]) -> list[Any]:
        shell.stored.append([k for k, _ in writes])
        table.data.update(writes)
        shell.changelog.append(loop.create_future())
        return [shell.changelog[-1]]

    shell._store = store
    return shell


def _changelog_shell(table: FakeTable, acked: list[int]) -> Any:
    """`_bare_shell` `_with_changelog`; partition 0 holds records 0, 1 and 2 of one
    input, each in a group of its own, delivered (`shell.groups`, not yet in the
    outbox: `_store_each` stores them one at a time)."""
    import asyncio
    from types import SimpleNamespace

    from faust.types import TP

    from streams.progress import Group, Input, Pending
    from streams.tally import Tally

    loop = asyncio.get_running_loop()
    shell = _with_changelog(_bare_shell(table, acked), table)
    tp = shell.tp = TP(shell.topics.inputs[0], 0)
    shell.parts[0] = CompiledPartition(POLICY, 0.0)
    shell.last_message[0] = None
    inp = shell.inputs[tp] = Input()
    records = [Pending(SimpleNamespace(tp=tp, offset=o)) for o in (0, 1, 2)]
    inp.pending.extend(records)
    inp.next_offset = 3
    delivered = loop.create_future()
    delivered.set_result(None)
    groups = []
    for n, record in enumerate(records):
        tally = Tally()
        tally.read = tally.applied["repayment"] = 1
        groups.append(Group([delivered], [(f"u{n}".encode(), b"{}")], [record], tally))
    shell.outboxes[0] = deque()
    shell.groups = groups
    return shell


async def _store_each(shell: Any) -> None:
    """Store `_changelog_shell`'s groups one at a time, each by a changelog write of
    its own, all three in flight at once (as a stop's `quiesce` stores them)."""
    for group in shell.groups:
        await shell._complete(0, shell.parts[0].states, group)


async def test_groups_delivered_by_one_settle_are_stored_together() -> None:
    """Groups whose decisions were all delivered by the time of a settle go to the
    table in one write (each user's last state once, the progress after them), and
    their records are acked and counted together once the changelog has it."""
    from streams.progress import Group, decode_progress, progress_key

    table, acked = FakeTable(), list[int]()
    shell = _changelog_shell(table, acked)
    first = shell.groups[0]
    shell.groups[2].writes = [(b"u0", b'{"later": 1}')]  # u0 again, changed since
    shell.outboxes[0].extend(shell.groups)
    await shell._settle(0, shell.parts[0], [], (), 1)
    assert shell.stored == [[b"u0", b"u1", progress_key(0)]]
    assert table.data[b"u0"] == b'{"later": 1}'
    assert acked == [] and shell.tally.read == 0 and not shell.outboxes[0]
    assert len(shell.storing[0]) == 1
    shell.changelog[0].set_result(None)
    await shell._settle(0, shell.parts[0], [], (), 1)
    assert acked == [0, 1, 2] and shell.tally.read == 3
    assert shell.tally.applied["repayment"] == 3
    progress = decode_progress(table.data[progress_key(0)])[shell.tp.topic]
    assert (progress.below, progress.ahead) == (3, set())
    assert Group.merged([first]) is first


async def test_groups_wait_while_their_partitions_changelog_write_is_in_flight() -> None:
    """One changelog write of a partition at a time: groups delivered while one is in
    flight wait in the outbox (no store awaits the producer in the fetch loop), and
    the first settle after it is delivered stores them all in one write."""
    from streams.progress import progress_key

    table, acked = FakeTable(), list[int]()
    shell = _changelog_shell(table, acked)
    part, (first, second, third) = shell.parts[0], shell.groups
    shell.outboxes[0].append(first)
    await shell._settle(0, part, [], (), 1)
    assert shell.stored == [[b"u0", progress_key(0)]]
    shell.outboxes[0].extend([second, third])
    await shell._settle(0, part, [], (), 1)  # the first write still in flight
    assert len(shell.stored) == 1 and len(shell.outboxes[0]) == 2 and acked == []
    shell.changelog[0].set_result(None)
    await shell._settle(0, part, [], (), 1)
    assert acked == [0] and shell.stored[1][:2] == [b"u1", b"u2"]
    assert not shell.outboxes[0] and len(shell.storing[0]) == 1
    shell.changelog[1].set_result(None)
    await shell._settle(0, part, [], (), 1)
    assert acked == [0, 1, 2] and shell.tally.read == 3


async def test_a_stop_stores_the_groups_held_back_behind_a_changelog_write() -> None:
    """Groups waiting for their partition's changelog write in flight are not lost at
    a stop: `quiesce` stores them, and counts every group the changelog has."""
    from streams.progress import progress_key

    table, acked = FakeTable(), list[int]()
    shell = _changelog_shell(table, acked)
    part, (first, second, third) = shell.parts[0], shell.groups
    shell.outboxes[0].append(first)
    await shell._settle(0, part, [], (), 1)
    shell.outboxes[0].extend([second, third])
    await shell._settle(0, part, [], (), 1)  # held back: the first write in flight
    assert len(shell.stored) == 1
    shell.changelog[0].set_result(None)  # (delivered by the stop's flush)
    await shell.quiesce()
    assert [k for keys in shell.stored for k in keys if k != progress_key(0)] == [
        b"u0", b"u1", b"u2"]
    assert acked == [0] and shell.tally.read == 1  # the others' changelog not yet had
    assert not shell.outboxes[0]


async def test_a_failed_changelog_write_stops_its_partition_and_later_groups(
        ) -> None:
    """A changelog send the producer gave up on: the records of its group and of every
    later group stay unacked and uncounted, and the progress written at the stop
    names only the groups before it (the next owner reads the rest again); the
    settle raises, so the worker restarts."""
    import pytest

    from streams.progress import decode_progress, progress_key

    table, acked = FakeTable(), list[int]()
    shell = _changelog_shell(table, acked)
    part = shell.parts[0]
    await _store_each(shell)
    assert [len(keys) for keys in shell.stored] == [2, 1, 1]  # the first with a progress
    assert acked == [] and len(shell.storing[0]) == 3
    shell.changelog[0].set_result(None)
    shell.changelog[1].set_exception(OSError("changelog partition gone"))
    shell.changelog[2].set_result(None)
    with pytest.raises(OSError, match="changelog partition gone"):
        await shell._settle(0, part, [], (), 1)
    assert acked == [0] and shell.tally.read == 1 and 0 in shell.failed
    await shell.quiesce()  # at the stop
    assert acked == [0] and shell.tally.read == 1
    assert shell.stored[3:] == [[progress_key(0)]]
    progress = decode_progress(table.data[progress_key(0)])[shell.tp.topic]
    assert (progress.below, progress.ahead) == (1, set())


async def test_a_changelog_failure_first_seen_at_a_revoke_raises_after_the_progress(
        ) -> None:
    """The revoke's quiesce finds the failed changelog send: it still confirms what
    came before, writes the progress naming it, and then raises (Faust crashes the
    worker, which restarts) instead of keeping a partition that completes nothing."""
    import pytest

    from streams.progress import decode_progress, progress_key

    table, acked = FakeTable(), list[int]()
    shell = _changelog_shell(table, acked)
    await _store_each(shell)
    shell.changelog[0].set_result(None)
    shell.changelog[1].set_exception(OSError("changelog partition gone"))
    shell.changelog[2].set_result(None)
    with pytest.raises(OSError, match="changelog partition gone"):
        await shell.quiesce()
    assert acked == [0] and shell.tally.read == 1 and 0 in shell.failed
    progress = decode_progress(table.data[progress_key(0)])[shell.tp.topic]
    assert (progress.below, progress.ahead) == (1, set())


async def test_a_group_confirmed_with_nothing_after_it_has_its_progress_written(
        ) -> None:
    """An idle partition does not leave its last groups unnamed until the stop: the
    settle that confirms them (a tick's) writes the progress on its own."""
    from streams.progress import decode_progress, progress_key

    table, acked = FakeTable(), list[int]()
    shell = _changelog_shell(table, acked)
    await _store_each(shell)
    for future in shell.changelog:
        future.set_result(None)
    await shell._settle(0, shell.parts[0], [], (), 1)  # a tick
    assert acked == [0, 1, 2] and shell.tally.read == 3
    assert shell.stored[3:] == [[progress_key(0)]]
    progress = decode_progress(table.data[progress_key(0)])[shell.tp.topic]
    assert (progress.below, progress.ahead) == (3, set())
    shell.changelog[-1].set_result(None)
    await shell._settle(0, shell.parts[0], [], (), 1)
    assert len(shell.stored) == 4  # nothing more to name


def _bare_shell(table: FakeTable, acked: list[int]) -> Any:
    """A Shell on a fake app (no Kafka), its table stores and flushes at once."""
    from types import SimpleNamespace

    from streams.metrics import Metrics
    from streams.settings import Settings
    from streams.shell import Shell

    async def flush() -> None:
        return None

    app: Any = SimpleNamespace(
        consumer=SimpleNamespace(flow_active=True, ack=lambda m: acked.append(m.offset)),
        consumer_generation_id=1, producer=SimpleNamespace(flush=flush))
    shell = Shell(app, Settings(partitions=1), POLICY, table, Metrics())

    async def store(p: int, writes: list[tuple[bytes, bytes]]) -> list[Any]:
        table.data.update(writes)
        return []  # delivered at once

    shell._store = store  # type: ignore[method-assign]
    shell.storing[0] = deque()
    return shell


async def test_records_skipped_after_a_takeover_leave_nothing_behind_in_the_progress(
        ) -> None:
    """A skipped record is done when read: a group completed before the skipped
    records' own group acks them with its own, and the progress written then and
    later names each done offset once, never one below its prefix."""
    import asyncio
    from types import SimpleNamespace

    from faust.types import TP

    from streams.progress import Group, Input, Pending, Progress, decode_progress, progress_key
    from streams.tally import Tally

    table, acked = FakeTable(), list[int]()
    shell = _bare_shell(table, acked)
    tp = TP(shell.topics.inputs[0], 0)
    part: CompiledPartition[Any] = CompiledPartition(POLICY, 0.0)
    part.add_input(tp)
    states = part.states
    inp = shell.inputs[tp] = Input()
    inp.skip = Progress(0, {2, 3})  # the previous owner finished 2 and 3 only
    shell.last_message[0] = None
    first = [Pending(SimpleNamespace(tp=tp, offset=o)) for o in (0, 1)]  # type: ignore[arg-type]
    inp.pending.extend(first)
    later: list[Pending] = []
    for o in (2, 3):
        shell._skip(part, inp, SimpleNamespace(tp=tp, partition=0, offset=o, key=None),
                    b"not json", later)
    inp.next_offset = 4
    assert inp.skip is None and shell.skipped == 2
    delivered = asyncio.get_running_loop().create_future()
    delivered.set_result(None)
    await shell._complete(0, states, Group([delivered], [], first, Tally()))
    shell._confirm(0)
    assert acked == [0, 1, 2, 3] and not inp.done_ahead  # the skipped ones went too
    await shell._complete(0, states, Group([], [], later, Tally()))
    shell._confirm(0)
    await shell._complete(0, states, Group([], [], [], Tally()))  # writes the progress
    progress = decode_progress(table.data[progress_key(0)])[tp.topic]
    assert (progress.below, progress.ahead, progress.until) == (4, set(), 4)
    assert acked == [0, 1, 2, 3] and not inp.done_ahead


async def test_after_a_failed_delivery_no_later_group_of_its_partition_is_completed(
        ) -> None:
    """A later group's states hold the failed group's events: completing it would
    make the next owner take those records for duplicates and never send their
    decisions. The settle raises (the worker restarts) and a stop's quiesce
    completes nothing of that partition."""
    import asyncio
    from types import SimpleNamespace

    import pytest
    from faust.types import TP

    from streams.progress import Group, Input, Pending
    from streams.tally import Tally

    loop = asyncio.get_running_loop()
    table, acked = FakeTable(), list[int]()
    shell = _bare_shell(table, acked)
    tp = TP(shell.topics.inputs[0], 0)
    part: CompiledPartition[Any] = CompiledPartition(POLICY, 0.0)
    shell.parts[0] = part
    inp = shell.inputs[tp] = Input()
    records = [Pending(SimpleNamespace(tp=tp, offset=o)) for o in (0, 1)]  # type: ignore[arg-type]
    inp.pending.extend(records)
    failed, delivered = loop.create_future(), loop.create_future()
    failed.set_exception(OSError("broker gone"))
    delivered.set_result(None)
    shell.outboxes[0] = deque([Group([failed], [(b"u1", b"{}")], records[:1], Tally()),
                               Group([delivered], [(b"u1", b"{}")], records[1:], Tally())])
    with pytest.raises(OSError, match="broker gone"):
        await shell._settle(0, part, [], (), 1)
    await shell.quiesce()
    assert table.data == {} and acked == [] and shell.tally.read == 0
    assert len(shell.outboxes[0]) == 2


def _idle_shell(**settings: Any) -> Any:
    """A Shell of one partition whose repayments and applications inputs went idle
    two days of event time before `shell.rc_line` (a report change for u1), having
    caught up with high-water marks 5 and 3 (`shell.highwater`, the consumer's)."""
    from types import SimpleNamespace

    from faust.types import TP

    from streams.metrics import Metrics
    from streams.progress import Input
    from streams.settings import Settings
    from streams.shell import Shell

    rc_line = (b'{"event_id":"c9","event_type":"credit_report","user_id":"u1",'
               b'"occurred_at":"2026-03-21T02:21:24Z","schema_version":1,'
               b'"bureau":"pboc","credit_score":742}')
    event = decode(rc_line)
    assert isinstance(event, Event)
    highwater: dict[TP, int] = {}

    async def position(tp: TP) -> int:
        return shell.inputs[tp].next_offset

    app: Any = SimpleNamespace(
        consumer=SimpleNamespace(flow_active=True, ack=lambda m: None, position=position,
                                 highwater=highwater.get, pause_later=lambda tps: None,
                                 resume_later=lambda tps: None),
        consumer_generation_id=1)
    table = FakeTable()
    shell = Shell(app, Settings(partitions=1, **settings), POLICY, table, Metrics())

    async def send(topic: str, key: bytes | None, value: bytes, partition: int | None = None
                   ) -> Any:
        return SimpleNamespace(done=lambda: False)

    shell._send = send
    shell.rc_line, shell.highwater = rc_line, highwater
    shell.tps = repayments, applications, reports = [TP(n, 0) for n in shell.topics.inputs[:3]]
    quiet = [TP(shell.topics.overrides, 0), TP(shell.topics.policies, 0)]
    part: CompiledPartition[Any] = CompiledPartition(POLICY, 600.0)
    shell.parts[0], shell.outboxes[0], shell.storing[0] = part, deque(), deque()
    for tp in (repayments, applications, reports, *quiet):
        part.add_input(tp)
        shell.inputs[tp] = Input()
    # No override or policy record was ever sent: those inputs are empty and idle.
    for tp in quiet:
        part.set_idle(tp, True)
        shell.inputs[tp].idle_at = highwater[tp] = 0
    shell.before = event.occurred_at - 2 * 86_400.0  # what the quiet inputs delivered last
    last = orjson.dumps({**orjson.loads(rc_line), "event_id": "c8",
                         "occurred_at": format_time(shell.before)})
    for tp, caught_up_at in ((repayments, 5), (applications, 3)):
        part.skip(tp, last, b"u1", 1, 0)  # its time counts (read before this owner)
        assert part.buffer.latest(tp) == shell.before
        part.set_idle(tp, True)  # as a tick does after the idle timeout
        shell.inputs[tp].idle_at = shell.inputs[tp].next_offset = caught_up_at
        highwater[tp] = caught_up_at
    highwater[reports] = 1
    return shell


def _record(tp: Any, offset: int, value: bytes) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset, tp=tp,
                           key=b"u1", value=value, generation_id=1, timestamp=0)


@pytest.mark.parametrize("first", ["nothing", "a record dead-lettered"])
async def test_an_idle_input_with_records_at_the_broker_again_holds_the_watermark(
        first: str) -> None:
    """An input is idle only while it has nothing left to fetch: once the broker's
    high-water mark of an idle input moves past where it caught up, it holds the
    watermark again, before another input's records can release events past its
    own (a lull in production, then a burst whose records of one topic came first,
    fired deadlines that replay never fires); so does one whose first record is not
    applied here (a dead letter). An idle input with nothing new stays idle."""
    shell = _idle_shell()
    repayments, applications, reports = shell.tps
    part = shell.parts[0]
    shell.highwater[repayments] = 9  # repayments came
    batch = [_record(reports, 0, shell.rc_line)]
    if first != "nothing":
        batch.insert(0, _record(repayments, 5, b"not json"))
    await shell.on_batch(batch)
    assert part.buffer.watermark == shell.before - 600.0  # held by the repayments input
    assert shell.inputs[repayments].idle_at is None
    assert shell.inputs[applications].idle_at == 3  # nothing new: still idle
    assert part.buffer.slowest() == shell.before and len(part.buffer) == 1


async def test_a_tick_wakes_an_idle_input_with_records_to_fetch_and_idles_it_again(
        ) -> None:
    """At a tick: an idle input the broker has records for holds the watermark again
    until it has caught up for the idle timeout, and then is idle again (it never
    stays woken); a paused input (back-pressure) is never idle, as its high-water
    mark is not fetched."""
    shell = _idle_shell(idle_timeout=0.0)
    repayments, applications, reports = shell.tps
    part = shell.parts[0]
    # The reports input delivered a record two days after the quiet inputs' last: the
    # slowest input that is not idle is a quiet one while it holds the watermark
    # back, the reports input once both are idle.
    part.skip(reports, shell.rc_line, b"u1", 1, 0)
    reported = part.buffer.latest(reports)
    assert reported == shell.before + 2 * 86_400.0 and part.buffer.slowest() == reported
    shell.highwater[repayments] = 6
    await shell.on_tick(0, 1)
    assert shell.inputs[repayments].idle_at is None  # records to fetch: not idle
    assert part.buffer.slowest() == shell.before  # repayments holds the watermark back
    shell.inputs[repayments].next_offset = 6  # read (an unparsable record, say)
    await shell.on_tick(0, 1)
    assert shell.inputs[repayments].idle_at == 6  # caught up again: idle again
    assert part.buffer.slowest() == reported  # repayments holds nothing back
    shell.paused.add(applications)
    await shell.on_tick(0, 1)
    assert shell.inputs[applications].idle_at is None
    assert shell.inputs[repayments].idle_at == 6
    assert part.buffer.slowest() == shell.before  # applications holds it back now
