"""Faust's aiokafka consumer with a cheaper hand-off from fetch to processing.

Faust's fetch loop (`Consumer._drain_messages`, faust-streaming 0.15) hands each
record to the streams through `wait_first(callback(message),
suspend_flow.wait())`: two tasks and an `asyncio.wait` per record, so that a
rebalance can cancel a hand-off blocked on a full stream buffer. Then each
record costs a Faust event, a queue hop and the stream's per-event bookkeeping.
bench/live.py measures what that costs against this module's consumer.

`MonitorConsumer` keeps Faust's loop (read offsets, offset gaps, commit-every)
with two changes:

- a stream hand-off is awaited directly. What the cancellation was for still
  holds: a rebalance clears the stream buffers (`flow_control.clear()`), which
  unblocks a hand-off waiting for room;
- records of the topics given to `MonitorApp.subscribe` skip streams: they go
  to the app's batch handler, up to BATCH_MAX records of one fetch per call.
  The handler acks them (`consumer.ack`) when it is done with them, so Faust's
  commits stay as they are.

A hand-off that returns into a new consumer generation, or while the flow is
stopped, does not move the read offsets and ends the fetch: the rebalance's
seek to the committed offsets decides where reading resumes (the stream drops
records of an old generation; the batch handler checks it too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

YIELD_EVERY = 100  # records handed off between two passes of the event loop
BATCH_MAX = 1000  # records per call of a batch handler


BatchHandler = Callable[[list[Message]], Awaitable[None]]


class MonitorConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes fetch_max_wait_ms=1500 with no setting to change it.
        wait = cast(MonitorApp, self.app).fetch_max_wait
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait * 1000)
        return consumer


class MonitorConsumer(faust_aiokafka.Consumer):
    _pause_requests: set[TP]
    _resume_requests: set[TP]

    def on_init(self) -> None:
        super().on_init()
        self._pause_requests = set()
        self._resume_requests = set()

    def _new_consumer_thread(self) -> MonitorConsumerThread:
        return MonitorConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        app = cast(MonitorApp, self.app)
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self._apply_flow_requests()
                records = self.getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    continue
                handler, batch_topics = app.batch_handler, app.batch_topics
                batch: list[Message] = []
                batch_read: dict[TP, int] = {}  # read offsets of the batch, set once handled
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = batch_read.get(tp, read_offset[tp])
                    if r_offset is not None and offset < r_offset:
                        continue  # read already (before a seek back)
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    commit_every = self._commit_every
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if handler is not None and message.topic in batch_topics:
                        batch.append(message)
                        batch_read[tp] = offset
                        if len(batch) < BATCH_MAX:
                            continue
                        full, batch, batch_read = (batch, batch_read), [], {}
                        if not await self._hand_over(handler, *full):
                            break
                        continue
                    await callback(message)
                    if not self._same_generation(message):
                        break  # a rebalance began: its seek decides what is read next
                    read_offset[tp] = offset
                if batch:
                    await self._hand_over(handler, batch, batch_read)  # type: ignore[arg-type]
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        # Faust forgets its pauses of revoked partitions: so do the requests, or one
        # applied after the rebalance would pause a partition nobody resumes.
        self._pause_requests.difference_update(revoked)
        self._resume_requests.difference_update(revoked)
        await super().on_partitions_revoked(revoked)

    def pause_later(self, tps: Iterable[TP]) -> None:
        """Pause fetching from tps before the next fetch (see `_apply_flow_requests`)."""
        self._resume_requests.difference_update(tps)
        self._pause_requests.update(tps)

    def resume_later(self, tps: Iterable[TP]) -> None:
        """Resume fetching from tps before the next fetch."""
        self._pause_requests.difference_update(tps)
        self._resume_requests.update(tps)

    def _apply_flow_requests(self) -> None:
        """Pause and resume as requested, between two fetches: never while a fetched
        batch is being handed over. Faust's `getmany` yields only the records of
        partitions in the active set, which `pause_partitions` changes in place, so a
        partition paused mid-batch would have the rest of its fetched records
        skipped while the client's position had already moved past them."""
        if self._pause_requests:
            self.pause_partitions(self._pause_requests)
            self._pause_requests = set()
        if self._resume_requests:
            self.resume_partitions(self._resume_requests)
            self._resume_requests = set()

    def _same_generation(self, message: Message) -> bool:
        return bool(self.flow_active
                    and self.app.consumer_generation_id == message.generation_id)

    async def _hand_over(self, handler: BatchHandler, batch: list[Message],
                         batch_read: dict[TP, int]) -> bool:
        """Run the handler on a batch; move the read offsets past it unless a
        rebalance began meanwhile (then its seek decides, and False is returned)."""
        await handler(batch)
        if not self._same_generation(batch[-1]):
            return False
        self._read_offset.update(batch_read)
        return True


class MonitorTransport(faust_aiokafka.Transport):
    Consumer = MonitorConsumer


class MonitorApp(faust.App):
    """A Faust app whose consumer is `MonitorConsumer` (any kafka:// broker).

    Records of `batch_topics` go to `batch_handler` a fetched batch at a time
    (at most BATCH_MAX records) instead of to streams; the handler acks them
    (`consumer.ack`) when it is done with them. `subscribe` registers the
    topics with the conductor when the app starts, as an agent would.
    """

    batch_handler: BatchHandler | None = None
    batch_topics: frozenset[str] = frozenset()
    # Awaited once the fetcher has stopped (the batch handler cancelled), before Faust
    # stops the tables and the producer: work the handler shielded may finish.
    on_fetcher_stopped: Callable[[], Awaitable[None]] | None = None
    # The longest a fetch may wait for records (fetch.max.wait.ms), seconds; Faust
    # hard-codes 1.5 s, which None keeps.
    fetch_max_wait: float | None = None
    _batch_channels: tuple[Any, ...] = ()

    def subscribe(self, channel: Any, handler: BatchHandler) -> None:
        """Deliver the records of channel's topics to handler, in batches."""
        self._batch_channels += (channel,)
        self.batch_topics = self.batch_topics | frozenset(channel.topics)
        self.batch_handler = handler

    async def on_start(self) -> None:
        await super().on_start()
        for channel in self._batch_channels:
            self.topics.add(channel)

    async def _stop_fetcher(self) -> None:
        await super()._stop_fetcher()
        if self.on_fetcher_stopped is not None:
            try:
                await self.on_fetcher_stopped()
            except Exception:  # the stop goes on (tables, producer, final commit)
                self.log.exception("finishing the batch handler's work failed")

    def _new_transport(self) -> Any:
        return MonitorTransport(self.conf.broker_consumer, self)
