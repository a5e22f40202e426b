"""Writing states to the table: to the changelog partition of a record, in record
batches under production settings, one record at a time under the embedded broker's
workaround."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, cast

import faust
from faust.streams import _current_event  # the context Faust routes table writes by
from faust.types import TP, Message


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
