"""The Faust shell: consume the three input topics, decide with the same
`engine.Partition` as `replay`, keep per-user state in a Faust table, emit
decisions and dead letters.

The app subscribes the three co-partitioned input topics plus a small tick
topic; their records reach `Shell.on_batch` a fetched batch at a time
(`streams.fetch`: Faust's streams cost several times what deciding does). For
each partition number the shell keeps an `engine.Partition`: the reorder buffer
behind the multi-input watermark, the deadline index and the tally. An input
record is decoded, buffered, and applied once the watermark passes it. Each
partition then settles once per batch: its decisions go to the producer; when
they are delivered the states they changed are written to the table (once per
user); when the changelog has those writes, the records are counted and
acknowledged, in offset order per topic-partition, so a commit never skips a
record whose state could be lost. The partition's progress (`Progress`), which
names the records so finished, follows in the changelog, so that a later owner
skips them instead of counting them again. A timer sends one
tick per assigned partition to the tick topic; a tick record makes its
partition's inputs that have been caught up for the idle timeout stop holding
the watermark back, and fires due deadlines. Ticks travel through a topic so
that they reach the partition's owner, in order with its input records.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

import faust
import orjson
from faust.streams import _current_event  # the context Faust routes table writes by
from faust.types import TP, Message

from streams.codec import Rejection, decode
from streams.compiled import CompiledPartition
from streams.engine import Partition, Tally
from streams.events import EVENT_TYPES
from streams.fetch import MonitorApp
from streams.kafka import Topics, partition_for
from streams.metrics import LAG_BUCKETS, STEP_BUCKETS, Metrics
from streams.policy import Policy
from streams.state import UserState, load
from streams.states import DEFAULT_STATE_CACHE, TableStates

log = logging.getLogger("closure_monitor")

DEFAULT_PARTITIONS = 8
# Event-time order live, as Kafka Streams has it by default (max.task.idle.ms = 0): an
# event waits for no lateness, only for the other inputs of its partition to reach its
# time, and an input caught up with the broker stops holding it back at once. A
# real-time producer's event is then decided in milliseconds, not after ten minutes of
# lateness. The trade: events that reach the worker later than other inputs' later
# events are applied late (at their user's clock, counted as late), so live may
# differ from replay for them. `--strict-order` (STRICT_LATENESS, STRICT_IDLE_TIMEOUT)
# waits as replay does, so that live equals replay for any disorder within 600 s.
DEFAULT_LATENESS = 0.0
DEFAULT_IDLE_TIMEOUT = 0.0
STRICT_LATENESS = 600.0
STRICT_IDLE_TIMEOUT = 2.0
# Idle inputs stop holding the watermark, and deadlines fire, at a tick: a tick every
# 0.1 s instead of 0.5 s cut the p99 latency at 500 events/s offered from about
# 2,520 to 2,250 ms (bench/live.py; the watermark alone gives 2,156). Each tick is
# one small record per assigned partition.
DEFAULT_TICK_INTERVAL = 0.1
# Back-pressure, as Kafka Streams' buffered.records.per.partition: an input that holds
# this many records not yet acked stops being fetched while another input of its
# partition holds the watermark back (reading a backlog, the topics run apart in event
# time: a 1,000,000-event backlog peaked at 1.6 GiB with over 200,000 records held).
DEFAULT_INPUT_BUFFER = 5_000
# Records handed over per fetch. With no limit (Faust's default) each fetch handed over
# all the client had prefetched for every partition (about 80,000 records with 24
# input partitions), and the client prefetched as much again meanwhile.
MAX_POLL_RECORDS = 1_000
# A tick is read once, by the partition's owner, right after it is sent: an hour of
# them is plenty to keep (about 290,000 small records with 8 partitions).
TICKS_TOPIC_CONFIG = {"retention.ms": str(3_600_000)}
# The longest a fetch waits for records: Kafka's fetch.max.wait.ms default (Faust
# hard-codes 1.5 s). Kafka answers a fetch as soon as records arrive, so this only
# paces the fetches of an idle consumer.
DEFAULT_FETCH_MAX_WAIT = 0.5

# Tansu workaround (development and tests only; never for Apache Kafka). Tansu's
# ListOffsets answers a wrong end offset after a multi-record batch, and Faust's
# changelog recovery stops at that offset, so a failover restores a table short.
# A producer batch smaller than any record makes every record its own batch.
TANSU_PRODUCER_SETTINGS: dict[str, Any] = {"producer_max_batch_size": 1}
# The same for a plain aiokafka producer (dev's synthetic producer, the tests).
TANSU_AIOKAFKA_PRODUCER: dict[str, Any] = {
    k.removeprefix("producer_"): v for k, v in TANSU_PRODUCER_SETTINGS.items()}
# Tansu workaround (development and tests only). A Tansu fetch that finds no new
# records answers records arriving during its wait late, after a good part of the
# max wait (measured: records produced every 50 ms reached a consumer after 412 ms
# at the median with a 1.5 s max wait, 29 ms with 0.1 s). Kafka answers at once.
TANSU_FETCH_MAX_WAIT = 0.05
# Quicker group joins for a one-machine broker: a join waits half the session timeout.
FAST_GROUP_SETTINGS: dict[str, Any] = {"broker_session_timeout": 10,
                                       "broker_rebalance_timeout": 10,
                                       "broker_heartbeat_interval": 1}


@dataclass
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    policy: Policy | None = None
    store: str = "memory"  # memory | rocksdb
    data_dir: str = "closure-monitor-data"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = 1  # of every topic the worker creates (changelog too)
    app_id: str = "closure-monitor"
    topic_prefix: str = ""
    lateness: float = DEFAULT_LATENESS
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    tick_interval: float = DEFAULT_TICK_INTERVAL
    state_cache: int = DEFAULT_STATE_CACHE  # decoded states kept, divided over the partitions
    input_buffer: int = DEFAULT_INPUT_BUFFER  # records held per input before it pauses
    fetch_max_wait: float = DEFAULT_FETCH_MAX_WAIT
    tansu: bool = False  # the embedded development broker's workaround
    fast_group: bool = False  # short session timeouts (one-machine broker)
    loglevel: str = "warning"
    extra: dict[str, Any] = field(default_factory=dict)  # further Faust settings

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def ticks_topic(self) -> str:
        return f"{self.app_id}-ticks"  # app-scoped, like Faust's changelog topics


class _Pending:
    """An input record held until it is applied; then its offset may be acked."""

    __slots__ = ("done", "message")

    def __init__(self, message: Message, done: bool = False) -> None:
        self.message = message
        self.done = done


# The table key of partition p's progress record (`Progress`): 0xFF never starts a
# UTF-8 string, so no user id is ever this key.
PROGRESS_KEY = b"\xffprogress:"


# A partition as the shell drives it: the compiled engine's (the worker's), or the
# Python engine's over a `TableStates` (the shell's unit tests).
Part = CompiledPartition["_Pending"] | Partition["_Pending"]


def progress_key(p: int) -> bytes:
    return PROGRESS_KEY + str(p).encode()


# Done offsets beyond the done prefix that a progress record names at most: those
# wait behind an earlier record of their input still held (for the watermark), and
# a topic written far out of event-time order could hold thousands. Past this many
# only the lowest are named: a later owner applies the rest again (as duplicates
# where their state was stored), which keeps decisions right and costs exact counts.
PROGRESS_AHEAD_MAX = 1_000


class Progress:
    """Which records of one input topic-partition are done: every offset below
    `below`, and the offsets in `ahead` (done before an earlier record was).

    A partition's progress goes into the state table after the state writes of
    each group whose decisions were delivered, in the same changelog partition,
    when it moved; it names the records whose states' changelog records were
    delivered before it was written (and a stop writes it once more): whoever
    restores the table has the states of every record the progress names. A
    worker that takes the partition over reads again from the committed offset
    (which may be past `below`: a record is acked when done, and the progress
    naming it goes out with the next group); the records the progress names were
    applied and counted by the previous owner, and are skipped (acked, their event
    times still move the watermark) instead of being applied and counted again.
    """

    __slots__ = ("ahead", "below", "until")

    def __init__(self, below: int, ahead: Iterable[int] = ()) -> None:
        self.below = below
        self.ahead = {o for o in ahead if o >= below}
        if len(self.ahead) > PROGRESS_AHEAD_MAX:
            self.ahead = set(heapq.nsmallest(PROGRESS_AHEAD_MAX, self.ahead))
        self.until = max(self.ahead, default=below - 1) + 1  # no offset from here is done

    def done(self, offset: int) -> bool:
        return offset < self.below or offset in self.ahead

    def runs(self) -> list[list[int]]:
        """`ahead` as [first, last + 1] runs of consecutive offsets."""
        out: list[list[int]] = []
        for offset in sorted(self.ahead):
            if out and out[-1][1] == offset:
                out[-1][1] = offset + 1
            else:
                out.append([offset, offset + 1])
        return out


def encode_progress(inputs: dict[str, Progress]) -> bytes:
    return orjson.dumps({"v": 1, "inputs": {
        topic: [progress.below, progress.runs()] for topic, progress in inputs.items()}})


def decode_progress(raw: bytes) -> dict[str, Progress]:
    """`encode_progress`'s output back; ValueError for anything else."""
    try:
        data = orjson.loads(raw)
        if data["v"] != 1:
            raise ValueError(f"version {data['v']!r}")
        return {topic: Progress(int(below), (o for first, end in runs
                                             for o in range(int(first), int(end))))
                for topic, (below, runs) in data["inputs"].items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"unreadable progress record: {exc!r}") from None


class _Input:
    """One input topic-partition as the watermark sees it."""

    __slots__ = ("caught_up_since", "done_ahead", "idle_at", "next_offset", "pending", "skip")

    def __init__(self) -> None:
        self.next_offset = 0  # one past the last offset received (or the start offset)
        self.caught_up_since: float | None = None
        # While idle (not holding the watermark): the high-water mark it had caught up
        # with. Records beyond it at the broker end the idleness (`Shell._wake`).
        self.idle_at: int | None = None
        self.pending: deque[_Pending] = deque()
        # Offsets done but held behind an earlier record that is not (see `progress`).
        self.done_ahead: set[int] = set()
        self.skip: Progress | None = None  # what a previous owner finished (Progress)

    def finish(self) -> list[Message]:
        """Take the done records at the head, in offset order: those to ack."""
        q = self.pending
        out = []
        while q and q[0].done:
            out.append(q.popleft().message)
        if self.done_ahead and out:
            self.done_ahead.difference_update(m.offset for m in out)
        return out

    def progress(self) -> Progress:
        """What is done, once `finish` has taken the head; with what a previous owner
        finished (`skip`), which may not all have been read again yet."""
        q = self.pending
        below = q[0].message.offset if q else self.next_offset
        skip = self.skip
        if skip is None:
            return Progress(below, self.done_ahead)
        # (Progress keeps only the offsets ahead of its prefix.)
        return Progress(max(below, skip.below), chain(self.done_ahead, skip.ahead))


class _Group:
    """What one settle produced: decisions in flight, state writes, records to ack
    and their counts. Once the decisions are delivered the writes go to the table
    (`Shell._complete`) and `futures` becomes their changelog sends; once those are
    delivered too, the records are final (`Shell._confirm`)."""

    __slots__ = ("futures", "released", "tally", "writes")

    def __init__(self, futures: list[Any], writes: list[tuple[bytes, bytes]],
                 released: list[_Pending], tally: Tally) -> None:
        self.futures = futures
        self.writes = writes
        self.released = released
        self.tally = tally

    def ready(self) -> bool:
        return all(f.done() for f in self.futures)

    def error(self) -> BaseException | None:
        """The first failed delivery, once every future is done (`ready`)."""
        for f in self.futures:
            if f.cancelled():
                return asyncio.CancelledError("delivery cancelled")
            if f.exception() is not None:
                return f.exception()
        return None


class Shell:
    """Everything the agent does, per partition number."""

    def __init__(self, app: faust.App, settings: Settings, policy: Policy,
                 table: Any, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.policy = policy
        self.table = table
        self.metrics = metrics
        # Counted when final (`_confirm`): a record whose decisions were delivered and
        # state's changelog records too. A partition's engine counts into a tally of
        # its own meanwhile.
        self.tally = Tally()
        metrics.follow(self.tally)
        self.rerouted = 0
        self.skipped = 0  # records a previous owner of their partition had finished
        self.completing: set[asyncio.Future[None]] = set()  # `_complete`s running
        self._quiescing = asyncio.Lock()
        # Partitions with a failed delivery or store: none of their groups is
        # completed any more (the worker is restarting).
        self.failed: set[int] = set()
        self.topics = settings.topics
        self.parts: dict[int, Part] = {}
        self.inputs: dict[TP, _Input] = {}
        self.last_message: dict[int, Message] = {}  # by partition: routes table writes
        self.outboxes: dict[int, deque[_Group]] = {}  # by partition, as self.parts
        # Groups stored, their changelog sends in flight (`_confirm`), by partition.
        self.storing: dict[int, deque[_Group]] = {}
        self.progress_sent: dict[int, bytes] = {}  # the last progress record written
        self.paused: set[TP] = set()  # inputs paused for back-pressure (`_flow`)

    # -- partitions --------------------------------------------------------------

    async def part(self, p: int, generation: int) -> Part | None:
        """Partition p's engine, made on its first record; None when a rebalance
        began meanwhile (the partition may no longer be this worker's)."""
        part = self.parts.get(p)
        if part is None:
            tps = [TP(name, p) for name in self.topics.inputs]
            starts = [await self._start_offset(tp) for tp in tps]
            if not self._current(generation):
                return None
            metrics = self.metrics
            part = CompiledPartition(self.policy, self.settings.lateness,
                                     step_bounds=STEP_BUCKETS, lag_bounds=LAG_BUCKETS)
            progress = self._progress_restored(p)
            for tp, start in zip(tps, starts, strict=True):
                part.add_input(tp)
                inp = self.inputs[tp] = _Input()
                inp.next_offset = start
                skip = progress.get(tp.topic)
                if skip is not None and start < skip.until:
                    inp.skip = skip
            self._restore(p, part)
            self.parts[p] = part
            self.outboxes[p] = deque()
            self.storing[p] = deque()
            metrics.watch(p, part, follow=False)
        return part

    def _current(self, generation: int) -> bool:
        """No rebalance since `generation`: the partitions held are still this worker's."""
        consumer: Any = self.app.consumer
        return bool(consumer.flow_active and self.app.consumer_generation_id == generation)

    async def _start_offset(self, tp: TP) -> int:
        """Where consumption of an input starts: the group's committed offset, or the
        log start. An input with nothing beyond it is caught up before any record."""
        consumer: Any = self.app.consumer
        committed = consumer._committed_offset.get(tp)  # Faust's record of the seek
        if committed is not None:
            return int(committed)
        earliest = await consumer.earliest_offsets(tp)
        return int(earliest.get(tp) or 0)

    def _restore(self, p: int, part: Part) -> None:
        """Index the deadlines of the users this partition holds (after recovery)."""
        n = self.settings.partitions
        if isinstance(part, CompiledPartition):
            def stored() -> Iterator[tuple[str, bytes]]:
                for key, raw in self.table.data.items():
                    if isinstance(key, bytes) and key.startswith(PROGRESS_KEY):
                        continue
                    uid = key if isinstance(key, str) else key.decode()
                    if raw is not None and partition_for(uid.encode(), n) == p:
                        yield uid, raw

            users = part.restore(stored())
            if users:
                log.info("partition %d: %d users restored, %d deadlines pending", p,
                         users, part.pending_deadlines)
            return
        states = _table_states(part)

        def held() -> Iterator[tuple[str, UserState]]:
            for key, raw in self.table.data.items():
                if isinstance(key, bytes) and key.startswith(PROGRESS_KEY):
                    continue
                uid = key if isinstance(key, str) else key.decode()
                if raw is not None and partition_for(uid.encode(), n) == p:
                    state = load(raw)
                    states.restored(uid, state)
                    yield uid, state

        part.schedule_all(held())
        if states.users:
            log.info("partition %d: %d users restored, %d deadlines pending", p,
                     states.users, part.pending_deadlines)

    def _progress_restored(self, p: int) -> dict[str, Progress]:
        """Partition p's progress record in the table (after recovery), by topic."""
        key = progress_key(p)
        store = self.table.data
        if key not in store:
            return {}
        try:
            return decode_progress(store[key])
        except ValueError as exc:
            log.warning("partition %d: %s; its records are read again from the "
                        "committed offsets and may be counted again", p, exc)
            return {}

    def revoke(self, tps: set[TP]) -> None:
        """Forget partitions handed to another worker; their unacked records go with
        them, uncounted: the next owner reads them again and counts them."""
        for p in {tp.partition for tp in tps}:
            part = self.parts.pop(p, None)
            self.outboxes.pop(p, None)
            self.storing.pop(p, None)
            self.progress_sent.pop(p, None)
            for name in self.topics.inputs:
                self.inputs.pop(TP(name, p), None)
                self.paused.discard(TP(name, p))  # Faust forgets its pause too
            if part is not None:
                self.metrics.unwatch(p)

    # -- records -----------------------------------------------------------------

    async def on_batch(self, messages: list[Message]) -> None:
        """A fetched batch of input and tick records, in offset order per partition.

        Every input record is decoded and offered to its partition's engine (or
        dead-lettered, or forwarded to its user's partition); then each partition
        that released events settles once: its decisions go out, the states they
        changed are written once each, and the records are acked when delivered.
        Ticks are handled after the inputs of the batch.
        """
        generation = self.app.consumer_generation_id
        consumer: Any = self.app.consumer
        ticks = self.settings.ticks_topic
        touched: dict[int, tuple[Part, list[_Pending]]] = {}
        sent: dict[int, list[Any]] = {}
        tick_parts: dict[int, None] = {}
        arrived: dict[TP, _Input] = {}  # inputs that delivered records in this batch
        for msg in messages:
            if msg.generation_id != generation or not consumer.flow_active:
                # A rebalance began: it revokes every partition (Faust's eager
                # protocol), and reading resumes from the committed offsets.
                return
            p = msg.partition
            self.last_message[p] = msg
            if msg.topic == ticks:
                consumer.ack(msg)
                tick_parts[p] = None
                continue
            part = self.parts.get(p)
            if part is None:
                part = await self.part(p, generation)
                if part is None:
                    return
            tp = msg.tp
            inp = arrived[tp] = self.inputs[tp]
            if msg.offset < inp.next_offset:
                # Delivered again within this ownership (Faust's read offset lets the
                # last record read through after a seek to the committed offset): it
                # is held here already, or done.
                continue
            inp.next_offset = msg.offset + 1
            inp.caught_up_since = None
            if inp.idle_at is not None:  # a record: not idle, even one not applied here
                _awake(part, tp, inp)
            if p not in touched:
                self._wake(p, part)
                touched[p] = (part, [])
            released = touched[p][1]
            raw = msg.value if msg.value is not None else b""
            skip = inp.skip
            if skip is not None:  # after a takeover: skip what the previous owner finished
                if skip.done(msg.offset):
                    self._skip(part, inp, msg, raw, released)
                    continue
                if msg.offset >= skip.until:
                    inp.skip = None
            pending = _Pending(msg)
            inp.pending.append(pending)
            if isinstance(part, CompiledPartition):
                # Decoded, checked (key, home partition) and buffered in the engine.
                let_go, rejection, elsewhere = part.take(tp, raw, msg.key, pending,
                                                         self.settings.partitions, p)
                released += let_go
                if rejection is not None:
                    diverted = await self._dead_letter(None, msg, rejection)
                elif elsewhere is not None:
                    self.rerouted += 1
                    user, home = elsewhere
                    diverted = await self._send(msg.topic, user, raw, home)
                else:
                    continue
                sent.setdefault(p, []).append(diverted)
                released.append(pending)
                continue
            decoded = decode(raw)
            # A record that is not applied here is sent on (dead letter or its user's
            # partition) and done once that is delivered.
            if isinstance(decoded, Rejection):
                diverted = await self._dead_letter(part.tally, msg, decoded)
            elif msg.key is not None and msg.key != decoded.user_id.encode():
                shown = msg.key[:80].decode("utf-8", "replace")
                diverted = await self._dead_letter(part.tally, msg, Rejection(
                    "key_mismatch",
                    f"record key {shown!r} is not the user_id {decoded.user_id!r}",
                    decoded.event_type))
            elif (home := partition_for(decoded.user_id.encode(),
                                        self.settings.partitions)) != p:
                # Produced with another partitioner (or no key): send it where its
                # user's state lives; it is counted there.
                self.rerouted += 1
                diverted = await self._send(msg.topic, decoded.user_id.encode(), raw, home)
            else:
                released += part.offer(tp, decoded, pending)
                continue
            sent.setdefault(p, []).append(diverted)
            released.append(pending)
        # An input whose records end at the high-water mark of its last fetch has
        # nothing left to fetch from now: its idle timeout starts here, not at the
        # next tick (which would add up to a tick interval to every idle release).
        now = time.monotonic()
        for tp, inp in arrived.items():
            hw = consumer.highwater(tp)
            if hw is not None and inp.next_offset >= hw:
                inp.caught_up_since = now
                if self.settings.idle_timeout <= 0 and tp not in self.paused:
                    # No idle timeout: caught up, it holds nothing back from now.
                    p = tp.partition
                    if p in touched and inp.idle_at is None:
                        touched[p][1].extend(touched[p][0].set_idle(tp, True))
                        inp.idle_at = hw
        for p, (part, released) in touched.items():
            if self._current(generation):
                await self._settle(p, part, released, sent.get(p, ()), generation)
                self._flow(p, part)
        for p in tick_parts:
            if self._current(generation):
                await self.on_tick(p, generation)

    def _skip(self, part: Part, inp: _Input, msg: Message, raw: bytes,
              released: list[_Pending]) -> None:
        """A record the partition's previous owner finished (`Progress`): acked with the
        records around it, not applied or counted again; its event time still counts
        towards the watermark, as it did for the previous owner."""
        self.skipped += 1
        pending = _Pending(msg, done=True)
        inp.pending.append(pending)
        inp.done_ahead.add(msg.offset)  # done now: `finish` may take it with any group
        released.append(pending)
        assert inp.skip is not None
        if msg.offset + 1 >= inp.skip.until:
            inp.skip = None  # past everything the previous owner finished
        if isinstance(part, CompiledPartition):
            released += part.skip(msg.tp, raw, msg.key, self.settings.partitions,
                                  msg.partition)
            return
        decoded = decode(raw)
        if isinstance(decoded, Rejection):
            return
        key = decoded.user_id.encode()
        if ((msg.key is None or msg.key == key)
                and partition_for(key, self.settings.partitions) == msg.partition):
            # One the previous owner applied here (not dead-lettered or sent on).
            part.buffer.observe(msg.tp, decoded.occurred_at)
            released += part.release()

    async def on_tick(self, p: int, generation: int) -> None:
        part = await self.part(p, generation)
        if part is None:
            return
        now = time.monotonic()
        consumer = self.app.consumer
        released: list[_Pending] = []
        for name in self.topics.inputs:
            tp = TP(name, p)
            inp = self.inputs[tp]
            hw = consumer.highwater(tp)
            caught_up = hw is not None and inp.next_offset >= hw and tp not in self.paused
            # (A paused input's high-water mark is not fetched, so nothing could
            # see records come for it: it never counts as idle. Paused, it is ahead of
            # the input holding the watermark back, so it holds nothing back itself.)
            if not caught_up and hw is not None and tp not in self.paused:
                # Offsets may have gaps (transaction markers); every record fetched
                # before this tick was handled in an earlier batch or this one.
                position = await consumer.position(tp)
                if not self._current(generation):
                    return
                caught_up = position is not None and position >= hw
            if not caught_up:
                inp.caught_up_since = None
                if inp.idle_at is not None:  # records to fetch (or paused): not idle
                    _awake(part, tp, inp)
                continue
            if inp.caught_up_since is None:
                inp.caught_up_since = now
            if now - inp.caught_up_since >= self.settings.idle_timeout:
                released += part.set_idle(tp, True)
                if inp.idle_at is None:
                    inp.idle_at = hw
        released += part.release()
        await self._settle(p, part, released, (), generation)
        if self._current(generation):
            self._flow(p, part)
        self._gauges(p)

    def _wake(self, p: int, part: Part) -> None:
        """Idle inputs of partition p that the broker has records for again hold the
        watermark back again, from now, before a batch's records are offered: an
        input is idle only while it has nothing left to fetch (a tick finds the
        same by itself). Without this, an input idle through a lull in production
        stayed idle until its first record came, and another input's records,
        fetched or handled first, released events past that record's time (it then
        arrived late, and a deadline could fire that replay never fires)."""
        consumer: Any = None
        for name in self.topics.inputs:
            tp = TP(name, p)
            inp = self.inputs.get(tp)
            if inp is None or inp.idle_at is None:
                continue
            consumer = consumer or self.app.consumer
            hw = consumer.highwater(tp)
            if hw is not None and hw > inp.idle_at:
                _awake(part, tp, inp)

    def _flow(self, p: int, part: Part) -> None:
        """Back-pressure on partition p's inputs (Kafka Streams' per-partition buffer).

        An input holding more than `input_buffer` records not yet acked pauses while
        it is ahead of the input that holds the watermark back (its records wait for
        that one); it resumes at half that, or once it is itself the furthest behind.
        The input holding the watermark is never paused, so the watermark always
        moves on. Checked after every batch and tick of the partition; the consumer
        applies it before its next fetch (`MonitorConsumer.pause_later`).
        """
        limit = self.settings.input_buffer
        buffer = part.buffer
        slowest = buffer.slowest()
        consumer: Any = self.app.consumer
        for event_type in EVENT_TYPES:
            tp = TP(self.topics.for_type(event_type), p)
            inp = self.inputs.get(tp)
            if inp is None:
                continue
            held = len(inp.pending)
            ahead = slowest is not None and buffer.latest(tp) > slowest
            if held > limit and ahead:
                consumer.pause_later([tp])  # again if Faust resumed it meanwhile
                if tp not in self.paused:
                    self.paused.add(tp)
                    self.metrics.count_pause(event_type)
            elif tp in self.paused and (held <= limit // 2 or not ahead):
                consumer.resume_later([tp])
                self.paused.discard(tp)

    def _gauges(self, p: int) -> None:
        """Consumer lag of this partition's inputs and the users held, at each tick."""
        consumer = self.app.consumer
        for name in self.topics.inputs:
            tp = TP(name, p)
            hw = consumer.highwater(tp)
            inp = self.inputs.get(tp)
            if hw is not None and inp is not None:
                self.metrics.set_consumer_lag(name, p, max(hw - inp.next_offset, 0))
        self.metrics.set_users(sum(_table_states(part).users for part in self.parts.values()))

    async def _settle(self, p: int, part: Part, released: list[_Pending],
                      sent: Iterable[Any], generation: int) -> None:
        """Send what the released events decided; once delivered (with whatever else
        these records sent), store the states they changed (`_complete`); once the
        changelog has those, count the records and ack them, in offset order
        (`_confirm`).

        A crash before the state is stored redelivers the records and re-emits the
        same decisions (same ids); a state is never stored ahead of its decisions,
        and a record is never acked ahead of its state's changelog record. Nothing
        is stored or acked once a rebalance began: the partition may have gone to
        another worker, which reads its records again.
        """
        states = _table_states(part)
        # Every user of partition p has p as its home (on_batch forwards the others,
        # _restore loads only its own), and every topic the worker uses has the same
        # partition count: p is where the default partitioner puts the decision's key.
        futures = []
        if isinstance(part, CompiledPartition):
            for key, decision in part.drain_keyed():
                futures.append(await self._send(self.topics.decisions, key, decision, p))
            timings = part.take_timings()
            if timings is not None:
                self.metrics.add_timings(*timings)
        else:
            for d in part.drain():
                futures.append(await self._send(self.topics.decisions, d.user_id.encode(),
                                                d.to_json(), p))
        futures += sent
        writes = states.take_dirty()
        counted, part.tally = part.tally, Tally()  # what this settle's records came to
        if not self._current(generation):
            return
        outbox = self.outboxes[p]
        if futures or writes or released:
            outbox.append(_Group(futures, writes, released, counted))
        if p not in self.failed and self._confirm(p) and not outbox:
            # Groups became final and none is to be stored: a group of nothing, to
            # write the progress that names them (the next owner's to skip).
            outbox.append(_Group([], [], [], Tally()))
        while (outbox and outbox[0].ready() and self._current(generation)
               and p not in self.failed):
            error = outbox[0].error()
            if error is not None:
                # Delivery failed: nothing of this partition is completed from here
                # (a later group's states would hold this one's events), and the
                # worker restarts; the next owner reads these records again.
                self.failed.add(p)
                raise error
            group = outbox.popleft()
            # Finished whatever happens meanwhile (a rebalance, a stop cancelling this
            # handler): a group's states, progress and counts go together.
            task = asyncio.ensure_future(self._complete(p, states, group))
            self.completing.add(task)
            task.add_done_callback(self.completing.discard)
            await asyncio.shield(task)

    async def _complete(self, p: int, states: TableStates, group: _Group) -> None:
        """Store a delivered group's states, and partition p's progress after them
        when it moved; the group then waits for the changelog (`_confirm`)."""
        writes = group.writes
        progress = self._progress(p)
        if progress != self.progress_sent.get(p):
            writes = [*writes, (progress_key(p), progress)]
            self.progress_sent[p] = progress
        futures: list[Any] = []
        if writes:
            try:
                futures = await self._store(p, writes)
            except BaseException:
                self.failed.add(p)  # the table may hold some of these writes
                raise
            states.stored(group.writes)
        group.futures = futures
        self.storing[p].append(group)

    def _confirm(self, p: int) -> int:
        """Partition p's stored groups whose changelog records are delivered, in order:
        their records are done (the next progress names them), counted and acked.

        A changelog send that failed (the producer gave up after its retries) stops
        the partition as a failed delivery does, and raises: the worker restarts and
        the next owner reads those records again (the progress does not name them).
        Returns how many groups it confirmed.
        """
        storing = self.storing.get(p)
        ack = self.app.consumer.ack
        confirmed = 0
        while storing and storing[0].ready():
            error = storing[0].error()
            if error is not None:
                self.failed.add(p)
                raise error
            group = storing.popleft()
            acks = self._finish(p, group.released)
            group.tally.read = group.tally.accounted  # rerouted records count at home
            self.tally.add(group.tally)
            for message in acks:
                ack(message)
            if group.released:
                confirmed += 1
        return confirmed

    async def quiesce(self) -> None:
        """Before partitions go to another owner (which must find their progress) or
        the worker stops: let the groups being completed finish, then complete every
        group whose decisions are delivered once the producer is flushed, confirm
        every group whose changelog records are delivered once it is flushed again,
        and write and flush the progress that leaves (for a failed partition too: it
        names only confirmed records). What is left (a failed delivery, records not
        yet released) the next owner reads again and counts.

        Raises the first failure once every partition is done with, so that a
        rebalance's failure crashes the worker (which restarts) rather than leaving
        a failed partition assigned to it."""
        async with self._quiescing:  # a stop may come during a revoke's
            errors: list[BaseException] = []

            def failed(what: str, p: int, exc: BaseException) -> None:
                log.error("partition %d: %s failed: %r", p, what, exc)
                errors.append(exc)

            if self.completing:
                # `wait`, not `gather`: cancelling this must not cancel them.
                done, _ = await asyncio.wait(set(self.completing))
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("storing a batch failed: %r", task.exception())
                        errors.append(cast(BaseException, task.exception()))
            producer = self.app.producer
            await producer.flush()
            for p, outbox in list(self.outboxes.items()):
                part = self.parts.get(p)
                try:
                    while (part is not None and p not in self.failed and outbox
                           and outbox[0].ready() and outbox[0].error() is None):
                        await self._complete(p, _table_states(part), outbox.popleft())
                except Exception as exc:
                    failed("storing a batch", p, exc)
            await producer.flush()
            last: list[tuple[int, Any]] = []
            for p in list(self.storing):
                if p not in self.failed:
                    try:
                        self._confirm(p)
                    except Exception as exc:
                        failed("a changelog write", p, exc)
                progress = self._progress(p)
                if p in self.last_message and (progress != self.progress_sent.get(p)
                                               or p in self.failed):
                    # (For a failed partition, the last one sent may be what failed.)
                    try:
                        sent = await self._store(p, [(progress_key(p), progress)])
                    except Exception as exc:
                        failed("writing the progress", p, exc)
                        continue
                    self.progress_sent[p] = progress
                    last += [(p, future) for future in sent]
            if last:
                await producer.flush()
                for p, future in last:
                    if future.done() and not future.cancelled() and future.exception():
                        failed("writing the progress", p, future.exception())
            if errors:
                raise errors[0]

    def _finish(self, p: int, released: list[_Pending]) -> list[Message]:
        """Mark these records done; the records now done at the head of each of
        partition p's inputs, in offset order (to ack once the table holds them)."""
        touched = set()
        for pending in released:
            tp = pending.message.tp
            touched.add(tp)
            if pending.done:
                continue  # skipped: done (and in done_ahead) since it was read
            pending.done = True
            inp = self.inputs.get(tp)
            if inp is not None:
                inp.done_ahead.add(pending.message.offset)
        acks: list[Message] = []
        for tp in touched:
            inp = self.inputs.get(tp)
            if inp is not None:
                acks += inp.finish()
        return acks

    def _progress(self, p: int) -> bytes:
        """Partition p's progress record (`Progress`), once `_finish` took the heads."""
        inputs = {}
        for name in self.topics.inputs:
            inp = self.inputs.get(TP(name, p))
            if inp is not None:
                inputs[name] = inp.progress()
        return encode_progress(inputs)

    async def _store(self, p: int, writes: list[tuple[bytes, bytes]]) -> list[Any]:
        """Write to partition p of the table; the changelog sends' futures."""
        return await store_partition(self.app, self.table, self.last_message[p], writes,
                                     batched=not self.settings.tansu)

    async def _send(self, topic: str, key: bytes | None, value: bytes,
                    partition: int | None = None) -> Any:
        """Hand a record to the producer; the future is done when it is delivered."""
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def _dead_letter(self, tally: Tally | None, msg: Message, rejection: Rejection
                           ) -> Any:
        """Send a record to the dead-letter topic with its reason, counting it in `tally`
        (None: the engine counted it)."""
        if tally is not None:
            tally.count_rejection(rejection)
        record: dict[str, Any] = {
            "reason": rejection.reason, "detail": rejection.detail,
            "topic": msg.topic, "partition": msg.partition, "offset": msg.offset,
            "timestamp": msg.timestamp,
        }
        value = msg.value if msg.value is not None else b""
        try:
            record["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            import base64
            record["value_base64"] = base64.b64encode(value).decode("ascii")
        return await self._send(self.topics.dead_letter, msg.key, orjson.dumps(record))

    def stuck(self) -> list[str]:
        """Inputs whose oldest unacked record is not yet applied (for the shutdown report)."""
        out = []
        for tp, inp in sorted(self.inputs.items()):
            if inp.pending:
                head = inp.pending[0]
                out.append(f"{tp.topic}[{tp.partition}] {len(inp.pending)} unacked from "
                           f"offset {head.message.offset} (applied: {head.done})")
        return out

    @property
    def buffered(self) -> int:
        return sum(len(part.buffer) for part in self.parts.values())


def _awake(part: Part, tp: TP, inp: _Input) -> None:
    """An idle input holds the watermark back again (which releases nothing: the
    watermark never goes back) and counts its idle time afresh."""
    inp.idle_at = inp.caught_up_since = None
    part.buffer.set_idle(tp, False)


def _table_states(part: Part) -> Any:
    """A shell partition's states, as the shell stores them: `take_dirty`, `stored`,
    `users` (a `TableStates`, or the compiled partition's `States`)."""
    return part.states


async def store_partition(app: faust.App, table: Any, msg: Message,
                          writes: list[tuple[bytes, bytes]], *,
                          batched: bool = True) -> list[Any]:
    """Write key/value pairs to the table partition of record `msg` (its partition
    number): to the store, and straight to that changelog partition, as Faust's own
    table write does without its per-write buffering. The RocksDB store picks its
    partition by the current event, which is here `msg`'s.

    `batched` builds the changelog's record batches here, one producer call and one
    future per batch (`changelog_batches`); else each record is its own send, which
    the Tansu workaround (TANSU_PRODUCER_SETTINGS) needs to put each in its own batch.
    Returns the changelog sends' futures, done when delivered.
    """
    event = faust.Event(app, msg.key, msg.value, msg.headers, msg)
    token = _current_event.set(weakref.ref(event))
    try:
        data = table.data
        for key, raw in writes:
            data[key] = raw
    finally:
        _current_event.reset(token)
    changelog = table.changelog_topic.get_topic_name()
    if batched:
        return await changelog_batches(app, table, changelog, msg.partition, writes)
    send: Any = app.producer.send  # its futures are asyncio futures
    on_sent = table._on_changelog_sent  # records the store's persisted offset
    futures = []
    for key, raw in writes:
        future = await send(changelog, key, raw, msg.partition, None, None)
        future.add_done_callback(on_sent)
        futures.append(future)
    return futures


async def changelog_batches(app: faust.App, table: Any, topic: str, partition: int,
                            writes: list[tuple[bytes, bytes]]) -> list[Any]:
    """Send writes to one changelog partition in record batches built here
    (aiokafka's `create_batch`/`send_batch`, each up to the producer's batch size).

    A record sent alone costs Faust's and aiokafka's per-record path (serializers,
    partitioner, a future and a callback each: about 15 us, measured in bench/live);
    appended to a batch, a fraction of that. When a batch is delivered the store's
    persisted offset moves to its last record, as Faust's per-record callback does.
    Returns one future per batch.
    """
    producer = cast(Any, app.producer)._ensure_producer()  # Faust's aiokafka producer
    tp = TP(topic, partition)
    persisted = table.data.set_persisted_offset
    batch, n = producer.create_batch(), 0
    futures = []
    for key, raw in writes:
        if batch.append(key=key, value=raw, timestamp=None) is None:
            futures.append(await _send_batch(producer, batch, tp, n, persisted))
            batch, n = producer.create_batch(), 0
            batch.append(key=key, value=raw, timestamp=None)  # the first always fits
        n += 1
    if n:
        futures.append(await _send_batch(producer, batch, tp, n, persisted))
    return futures


async def _send_batch(producer: Any, batch: Any, tp: TP, n: int,
                      persisted: Callable[[TP, int], None]) -> Any:
    future = await producer.send_batch(batch, tp.topic, partition=tp.partition)

    def sent(f: Any) -> None:
        if not f.cancelled() and f.exception() is None:
            persisted(tp, f.result().offset + n - 1)  # the batch's base offset + n - 1

    future.add_done_callback(sent)
    return future


def raw_topic(app: faust.App, *names: str, partitions: int | None = None) -> Any:
    """A topic whose keys and values are bytes as they are on the wire."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw",
                     partitions=partitions)


def build_app(settings: Settings, policy: Policy) -> tuple[faust.App, Shell]:
    """The Faust app with its topics, table, batch handler, tick timer and web page."""
    conf: dict[str, Any] = {
        "broker": settings.broker,
        "store": "rocksdb://" if settings.store == "rocksdb" else "memory://",
        "datadir": settings.data_dir,
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        # Buffered (unacked) records must not hold a rebalance up: they are
        # redelivered to the partition's next owner.
        "stream_wait_empty": False,
        "autodiscover": False,
        "logging_config": None,
        # Faust's default linger of 0 sends every table write as its own produce
        # request (one per event); 5 ms lets them share requests, as Kafka's own
        # clients do by default since 4.0. Measured in bench/live.py.
        "producer_linger_ms": 5,
        # Records one fetch hands over (Kafka's max.poll.records; Faust's default is
        # no limit: everything the client has prefetched, for every partition, while
        # the client fetches as much again meanwhile). See MAX_POLL_RECORDS.
        "broker_max_poll_records": MAX_POLL_RECORDS,
    }
    if settings.store == "rocksdb":
        conf["rocksdb_options"] = {}
    if settings.fast_group:
        conf.update(FAST_GROUP_SETTINGS)
    if settings.tansu:
        conf.update(TANSU_PRODUCER_SETTINGS)
    conf.update(settings.extra)
    app = MonitorApp(settings.app_id, **conf)
    app.fetch_max_wait = settings.fetch_max_wait
    table: Any = app.Table("state", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes)
    # Keys are user ids, values the compact state: bytes as they are, both ways.
    table.key_serializer = table.value_serializer = "raw"
    metrics = Metrics(policy_version=policy.version)
    shell = Shell(app, settings, policy, table, metrics)

    async def serve_metrics(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        # Content-Type through headers: aiohttp refuses a content_type with a charset.
        return web.bytes(body, headers={"Content-Type": content_type})

    app.page("/metrics")(serve_metrics)
    # The inputs and the ticks are subscribed like an agent's topics, but their
    # records reach the shell a fetched batch at a time (streams.fetch).
    app.subscribe(raw_topic(app, *settings.topics.inputs, settings.ticks_topic,
                            partitions=settings.partitions), shell.on_batch)

    ticks = raw_topic(app, settings.ticks_topic, partitions=settings.partitions)

    async def tick() -> None:
        if app.rebalancing:
            return
        for tp in app.assignor.assigned_actives():
            if tp.topic == settings.ticks_topic:
                await ticks.send(value=b"", partition=tp.partition)

    app.timer(settings.tick_interval, name="tick")(tick)

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await shell.quiesce()
        shell.revoke(revoked)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_fetcher_stopped = shell.quiesce

    return app, shell
