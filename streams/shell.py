"""The worker's shell: what it does with each fetched batch of input and tick records,
per partition, around the compiled engine (see `streams.app` for the whole).

Per partition number the shell keeps an engine partition (`streams.compiled`): the
reorder buffer behind the multi-input watermark, the deadline index, the states and
the tally. Each partition settles once per batch: its decisions go to the producer;
when they are delivered the states they changed are written to the table (once per
user); when the changelog has those writes, the records are counted and
acknowledged, in offset order per topic-partition, so a commit never skips a record
whose state could be lost. The partition's progress (`streams.progress`) follows in
the changelog, so that a later owner skips the records it names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, cast

import faust
import orjson
from faust.types import TP, Message

from streams import rollout
from streams.codec import Rejection
from streams.compiled import CompiledPartition, States
from streams.events import EVENT_TYPES, format_time
from streams.explain import merge_history
from streams.kafka import partition_for
from streams.metrics import LAG_BUCKETS, STEP_BUCKETS, Metrics
from streams.policy import Policy
from streams.progress import (
    HISTORY_KEY,
    RESERVED,
    Group,
    Input,
    Pending,
    Progress,
    decode_progress,
    encode_progress,
    policy_key,
    progress_key,
)
from streams.settings import Settings
from streams.store import store_partition
from streams.tally import Tally

log = logging.getLogger("closure_monitor")

# A partition as the shell drives it: the compiled engine's.
Part = CompiledPartition[Pending]


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
        self.inputs: dict[TP, Input] = {}
        self.last_message: dict[int, Message] = {}  # by partition: routes table writes
        self.outboxes: dict[int, deque[Group]] = {}  # by partition, as self.parts
        # Groups stored, their changelog sends in flight (`_confirm`), by partition.
        self.storing: dict[int, deque[Group]] = {}
        self.progress_sent: dict[int, bytes] = {}  # the last progress record written
        self.paused: set[TP] = set()  # inputs paused for back-pressure (`_flow`)
        # With the user endpoint on, each user's latest decisions are kept in the table
        # (`HISTORY_KEY` + user id); by partition, the histories written and not yet
        # stored (the table has the others).
        self.histories: dict[int, dict[bytes, bytes]] | None = (
            {} if settings.api_token is not None else None)
        # Policy records offered to each partition, by policy_id (the one in force is
        # stored in the table, `policy_key`), and the switch last stored.
        self.policy_records: dict[int, dict[str, bytes]] = {}
        self.policy_stored: dict[int, tuple[str, ...]] = {}

    # -- partitions --------------------------------------------------------------

    async def part(self, p: int, generation: int) -> Part | None:
        """Partition p's engine, made on its first record; None when a rebalance
        began meanwhile (the partition may no longer be this worker's)."""
        part = self.parts.get(p)
        if part is None:
            tps = [TP(name, p) for name in self.topics.sources]
            starts = [await self._start_offset(tp) for tp in tps]
            if not self._current(generation):
                return None
            metrics = self.metrics
            part = CompiledPartition(self.policy, self.settings.lateness,
                                     step_bounds=STEP_BUCKETS, lag_bounds=LAG_BUCKETS)
            progress = self._progress_restored(p)
            for tp, start in zip(tps, starts, strict=True):
                part.add_input(tp)
                inp = self.inputs[tp] = Input()
                inp.next_offset = start
                skip = progress.get(tp.topic)
                if skip is not None and start < skip.until:
                    inp.skip = skip
            self._restore(p, part)
            self._restore_policy(p, part)
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

        def stored() -> Iterator[tuple[str, bytes]]:
            """The table's states of this partition's users, as stored."""
            for key, raw in self.table.data.items():
                if isinstance(key, bytes) and key.startswith(RESERVED):
                    continue  # progress records and decision histories
                uid = key if isinstance(key, str) else key.decode()
                if raw is not None and partition_for(uid.encode(), n) == p:
                    yield uid, raw

        users = part.restore(stored())
        if users:
            log.info("partition %d: %d users restored, %d deadlines pending", p,
                     users, part.pending_deadlines)

    def _restore_policy(self, p: int, part: Part) -> None:
        """The policy a previous owner of partition p had switched to (its record in
        the table), in force again from its time."""
        stored = self.table.data.get(policy_key(p))
        if stored is None:
            return
        for raw in orjson.loads(stored):  # the records of the switches in force
            raw = orjson.dumps(raw)
            try:
                record = rollout.parse(raw)
            except rollout.RefusedPolicy as exc:  # stored by a worker: not expected
                log.warning("partition %d: a stored policy record is refused (%s); the "
                            "policy %s stays in force", p, exc, part.policy_version)
                continue
            part.restore_policy(record.effective_at, record.policy_id, record.policy,
                                record.region)
            self.policy_records.setdefault(p, {})[record.policy_id] = raw
            scope = f" for region {record.region}" if record.region is not None else ""
            log.info("partition %d: policy %s%s in force since %s (%s)", p,
                     record.policy.version, scope, format_time(record.effective_at),
                     record.policy_id)
        self.policy_stored[p] = self._in_force(part)

    def _policy_record(self, p: int, part: Part, tp: TP, raw: bytes, pending: Pending,
                       released: list[Pending]) -> Rejection | None:
        """Offer a policy record to partition p; the rejection to dead-letter when it
        is refused."""
        try:
            record = rollout.parse(raw)
        except rollout.RefusedPolicy as exc:
            self.metrics.count_policy_record("refused")
            log.warning("partition %d: policy record refused: %s; the policy %s stays in "
                        "force", p, exc, part.policy_version)
            return Rejection("policy_refused", str(exc), None)
        self.metrics.count_policy_record("accepted")
        self.policy_records.setdefault(p, {})[record.policy_id] = raw
        released += part.offer_policy(tp, record.effective_at, record.policy_id,
                                      record.policy, pending, record.region)
        return None

    @staticmethod
    def _in_force(part: Part) -> tuple[str, ...]:
        """The policy_ids of the switches in force in a partition."""
        return tuple(policy_id for _, _, policy_id in part.policies if policy_id)

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
            self.policy_records.pop(p, None)
            self.policy_stored.pop(p, None)
            if self.histories is not None:
                self.histories.pop(p, None)
            for name in self.topics.sources:
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
        policies = self.topics.policies
        touched: dict[int, tuple[Part, list[Pending]]] = {}
        sent: dict[int, list[Any]] = {}
        tick_parts: dict[int, None] = {}
        arrived: dict[TP, Input] = {}  # inputs that delivered records in this batch
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
            pending = Pending(msg)
            inp.pending.append(pending)
            if msg.topic == policies:
                # A policy record: switches the partition's policy in event time, or is
                # refused (dead-lettered, counted, logged) and the policy in force stays.
                refused = self._policy_record(p, part, tp, raw, pending, released)
                if refused is not None:
                    sent.setdefault(p, []).append(await self._dead_letter(msg, refused))
                    released.append(pending)
                continue
            # Decoded, checked (key, home partition) and buffered in the engine. A
            # record that is not applied here is sent on (a dead letter, or to its
            # user's partition when produced with another partitioner or no key: it
            # is counted there) and done once that is delivered.
            let_go, rejection, elsewhere = part.take(tp, raw, msg.key, pending,
                                                     self.settings.partitions, p)
            released += let_go
            if rejection is not None:
                diverted = await self._dead_letter(msg, rejection)
            elif elsewhere is not None:
                self.rerouted += 1
                user, home = elsewhere
                diverted = await self._send(msg.topic, user, raw, home)
            else:
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

    def _skip(self, part: Part, inp: Input, msg: Message, raw: bytes,
              released: list[Pending]) -> None:
        """A record the partition's previous owner finished (`Progress`): acked with the
        records around it, not applied or counted again; its event time still counts
        towards the watermark, as it did for the previous owner."""
        self.skipped += 1
        pending = Pending(msg, done=True)
        inp.pending.append(pending)
        inp.done_ahead.add(msg.offset)  # done now: `finish` may take it with any group
        released.append(pending)
        assert inp.skip is not None
        if msg.offset + 1 >= inp.skip.until:
            inp.skip = None  # past everything the previous owner finished
        released += part.skip(msg.tp, raw, msg.key, self.settings.partitions,
                              msg.partition)

    async def on_tick(self, p: int, generation: int) -> None:
        part = await self.part(p, generation)
        if part is None:
            return
        now = time.monotonic()
        consumer = self.app.consumer
        released: list[Pending] = []
        for name in self.topics.sources:
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
        for name in self.topics.sources:
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
        for name in self.topics.sources:
            tp = TP(name, p)
            hw = consumer.highwater(tp)
            inp = self.inputs.get(tp)
            if hw is not None and inp is not None:
                self.metrics.set_consumer_lag(name, p, max(hw - inp.next_offset, 0))
        self.metrics.set_users(sum(part.states.users for part in self.parts.values()))

    async def _settle(self, p: int, part: Part, released: list[Pending],
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
        states = part.states
        # Every user of partition p has p as its home (on_batch forwards the others,
        # _restore loads only its own), and every topic the worker uses has the same
        # partition count: p is where the default partitioner puts the decision's key.
        futures = []
        for pending, rejection in part.take_refused():
            # An override of no known user: dead-lettered; acked once that is delivered.
            futures.append(await self._dead_letter(pending.message, rejection))
        keyed = part.drain_keyed()
        for key, decision in keyed:
            futures.append(await self._send(self.topics.decisions, key, decision, p))
        timings = part.take_timings()
        if timings is not None:
            self.metrics.add_timings(*timings)
        futures += sent
        writes = states.take_dirty()
        in_force = self._in_force(part)
        if in_force and in_force != self.policy_stored.get(p):
            # The partition switched policy: the records in force go with these states.
            known = self.policy_records.get(p, {})
            records = [known[i] for i in in_force if i in known]
            writes.append((policy_key(p), b"[" + b",".join(records) + b"]"))
            self.policy_stored[p] = in_force
            log.info("partition %d: policies in force: %s", p, ", ".join(
                version + (f" (region {region})" if region is not None else "")
                for region, version, _ in part.policies))
        if self.histories is not None and keyed:
            writes += self._history_writes(p, keyed)
        counted, part.tally = part.tally, Tally()  # what this settle's records came to
        if not self._current(generation):
            return
        outbox = self.outboxes[p]
        if futures or writes or released:
            outbox.append(Group(futures, writes, released, counted))
        if p not in self.failed and self._confirm(p) and not outbox:
            # Groups became final and none is to be stored: a group of nothing, to
            # write the progress that names them (the next owner's to skip).
            outbox.append(Group([], [], [], Tally()))
        if not self._current(generation) or p in self.failed:
            return
        if self.storing.get(p):
            # One changelog write of a partition in flight at a time: another would
            # wait here, in the fetch loop, for this one to go out (aiokafka holds
            # one batch per partition). The groups delivered meanwhile wait in the
            # outbox; the settle after it is delivered (a batch's, or a tick's within
            # the tick interval) stores them together.
            return
        ready: list[Group] = []
        error = None
        while outbox and outbox[0].ready():
            error = outbox[0].error()
            if error is not None:
                break
            ready.append(outbox.popleft())
        if ready:
            # The delivered groups are stored together, in one changelog send: the
            # producer holds one batch per partition until a request takes it, so
            # each further store of the partition would wait here for the linger or
            # a whole produce round trip, once per group (and the groups pile up as
            # the fetch loop waits: the latency tail under load).
            # Finished whatever happens meanwhile (a rebalance, a stop cancelling
            # this handler): a group's states, progress and counts go together.
            task = asyncio.ensure_future(self._complete(p, states, Group.merged(ready)))
            self.completing.add(task)
            task.add_done_callback(self.completing.discard)
            await asyncio.shield(task)
        if error is not None and self._current(generation):
            # Delivery failed: nothing of this partition is completed from here
            # (a later group's states would hold this one's events), and the
            # worker restarts; the next owner reads these records again.
            self.failed.add(p)
            raise error

    async def _complete(self, p: int, states: States, group: Group) -> None:
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
            pending = self.histories.get(p) if self.histories is not None else None
            if pending:
                for key, value in group.writes:
                    if pending.get(key) is value:
                        del pending[key]  # the table has it now
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
                        await self._complete(p, part.states, outbox.popleft())
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

    def _finish(self, p: int, released: list[Pending]) -> list[Message]:
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
        for name in self.topics.sources:
            inp = self.inputs.get(TP(name, p))
            if inp is not None:
                inputs[name] = inp.progress()
        return encode_progress(inputs)

    def _history_writes(self, p: int, keyed: list[tuple[bytes, bytes]]
                        ) -> list[tuple[bytes, bytes]]:
        """The history writes of a settle's decisions: each user's, once."""
        assert self.histories is not None
        pending = self.histories.setdefault(p, {})
        by_user: dict[bytes, list[bytes]] = {}
        for key, decision in keyed:
            by_user.setdefault(key, []).append(decision)
        writes = []
        for key, decisions in by_user.items():
            hkey = HISTORY_KEY + key
            merged = merge_history(self.history(hkey, p), decisions)
            pending[hkey] = merged
            writes.append((hkey, merged))
        return writes

    def history(self, hkey: bytes, p: int) -> bytes | None:
        """A user's decision history as last written (`HISTORY_KEY` + user id)."""
        pending = self.histories.get(p) if self.histories is not None else None
        if pending is not None and hkey in pending:
            return pending[hkey]
        stored = self.table.data.get(hkey)
        return bytes(stored) if stored is not None else None

    async def _store(self, p: int, writes: list[tuple[bytes, bytes]]) -> list[Any]:
        """Write to partition p of the table; the changelog sends' futures."""
        return await store_partition(self.app, self.table, self.last_message[p], writes,
                                     batched=not self.settings.tansu)

    async def _send(self, topic: str, key: bytes | None, value: bytes,
                    partition: int | None = None) -> Any:
        """Hand a record to the producer; the future is done when it is delivered."""
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def _dead_letter(self, msg: Message, rejection: Rejection) -> Any:
        """Send a record to the dead-letter topic with its reason (the engine counted
        it when it rejected it)."""
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


def _awake(part: Part, tp: TP, inp: Input) -> None:
    """An idle input holds the watermark back again (which releases nothing: the
    watermark never goes back) and counts its idle time afresh."""
    inp.idle_at = inp.caught_up_since = None
    part.buffer.set_idle(tp, False)
