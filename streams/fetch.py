"""Faust's aiokafka consumer with a direct hand-off from fetch to stream.

Faust's fetch loop (`Consumer._drain_messages`, faust-streaming 0.15) hands each
record to the streams through `wait_first(callback(message),
suspend_flow.wait())`: two tasks and an `asyncio.wait` per record, so that a
rebalance can cancel a hand-off blocked on a full stream buffer. That costs more
than everything else Faust does per record: a Faust agent reading the monitor's
topics into a table moves about 1,600 records/s with it and several times more
without (bench/live.py measures the floor with this consumer).

`MonitorConsumer` keeps Faust's loop (read offsets, offset gaps, commit-every)
and awaits the hand-off directly. What the cancellation was for still holds:
a rebalance clears the stream buffers (`flow_control.clear()`), which unblocks
a hand-off waiting for room. A hand-off that returns into a new consumer
generation, or while the flow is stopped, does not move the read offset and
ends the batch: the rebalance's seek to the committed offsets decides where
reading resumes, and the stream drops records of an old generation.

Used by `MonitorApp`, the app class of the worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

YIELD_EVERY = 100  # records handed off between two passes of the event loop


class MonitorConsumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:
        callback = self.callback
        app = self.app
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        since_yield = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                batch = self.getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in batch:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    r_offset = read_offset[tp]
                    if r_offset is not None and offset < r_offset:
                        continue  # read already (before a seek back)
                    if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, r_offset + 1, offset)
                    commit_every = self._commit_every
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await callback(message)
                    if (not self.flow_active
                            or app.consumer_generation_id != message.generation_id):
                        break  # a rebalance began: its seek decides what is read next
                    read_offset[tp] = offset
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


class MonitorTransport(faust_aiokafka.Transport):
    Consumer = MonitorConsumer


class MonitorApp(faust.App):
    """A Faust app whose consumer is `MonitorConsumer` (any kafka:// broker)."""

    def _new_transport(self) -> Any:
        return MonitorTransport(self.conf.broker_consumer, self)
