"""`produce` and `record`: recorded logs into Kafka and back.

`produce` sends each line of a log to its event type's topic, keyed by
`user_id`, with Kafka's default partitioner. A line whose type can't be read
(malformed input is part of real logs) goes to the repayments topic as it is,
unkeyed unless a `user_id` can be read, so the worker dead-letters it like any
bad record. `record` reads the input topics from the beginning up to their
current end and writes every record as one JSONL line, merged across partitions
into event-time order (`--follow` keeps going).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.codec import Rejection, decode
from streams.errors import BrokerError
from streams.kafka import Topics, bootstrap, start_client
from streams.reorder import ReorderBuffer
from streams.replay import open_log
from streams.security import client_settings


@dataclass
class ProduceSummary:
    sent: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)
    unroutable: int = 0  # lines whose event type couldn't be read


def route(line: bytes, topics: Topics) -> tuple[str, bytes | None, bool]:
    """(topic, key, routable) for one log line."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return topics.repayments, None, False
    if not isinstance(obj, dict):
        return topics.repayments, None, False
    uid = obj.get("user_id")
    key = uid.encode() if isinstance(uid, str) else None
    kind = obj.get("event_type")
    if kind in ("repayment", "application", "credit_report", "override"):
        return topics.for_type(kind), key, True
    return topics.repayments, key, False


def log_lines(paths: Iterable[str]) -> Iterator[bytes]:
    for path in paths:
        handle = open_log(path)
        try:
            for line in handle:
                line = line.rstrip(b"\r\n")
                if line.strip():
                    yield line
        finally:
            if path != "-":
                handle.close()


async def produce(url: str, lines: Iterable[bytes], topics: Topics, *,
                  rate: float | None = None,
                  producer_settings: dict[str, Any] | None = None,
                  on_sent: Callable[[bytes, str, float], None] | None = None,
                  stop: asyncio.Event | None = None) -> ProduceSummary:
    """Send the lines; at `rate` lines per second if given, else as fast as possible."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), linger_ms=5,
                                **client_settings(), **(producer_settings or {}))
    await start_client(producer, url, producer.stop)
    summary = ProduceSummary()
    started = time.monotonic()
    try:
        for line in lines:
            if stop is not None and stop.is_set():
                break
            topic, key, routable = route(line, topics)
            if rate:
                due = started + summary.sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await producer.send(topic, line, key=key)
            if on_sent is not None:
                on_sent(line, topic, time.time())
            summary.sent += 1
            summary.by_topic[topic] = summary.by_topic.get(topic, 0) + 1
            if not routable:
                summary.unroutable += 1
        await producer.flush()
    finally:
        await producer.stop()
    return summary


async def record(url: str, names: Iterable[str], out: IO[bytes], *, follow: bool = False,
                 idle: float = 1.0, stop: asyncio.Event | None = None) -> int:
    """Every record of the topics, from the beginning, one line each; returns the count.

    Without `follow` it stops once every partition's position has reached the
    high-water mark reported by the fetches (not ListOffsets) for `idle` seconds.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), enable_auto_commit=False,
                                auto_offset_reset="earliest", **client_settings())
    await start_client(consumer, url, consumer.stop)
    count = 0
    try:
        tps = []
        for name in names:
            parts = consumer.partitions_for_topic(name)
            if parts is None:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(name)
            if not parts:
                raise BrokerError(f"topic {name} does not exist on {url}")
            tps += [TopicPartition(name, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Partitions interleave arbitrarily: merge them back into event-time order
        # through the worker's reorder rule, so the log replays as it happened.
        merge: ReorderBuffer[bytes] = ReorderBuffer(0.0)
        for tp in tps:
            merge.add_input(tp)
        caught_up_since: float | None = None
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, records in batch.items():
                for rec in records:
                    value = (rec.value if rec.value is not None else b"").rstrip(b"\r\n")
                    event = decode(value)
                    if isinstance(event, Rejection):
                        out.write(value + b"\n")  # bad records keep no order
                        count += 1
                    else:
                        merge.push(tp, event, value)
            done = True
            for tp in tps:
                hw = consumer.highwater(tp)
                at_end = hw is not None and await consumer.position(tp) >= hw
                merge.set_idle(tp, at_end)
                done = done and at_end
            for _, value in merge.release():
                out.write(value + b"\n")
                count += 1
            if follow:
                continue
            if not done or batch:
                caught_up_since = None
            elif caught_up_since is None:
                caught_up_since = time.monotonic()
            elif time.monotonic() - caught_up_since >= idle:
                break
        for tp in tps:
            merge.remove_input(tp)
        for _, value in merge.release():
            out.write(value + b"\n")
            count += 1
    finally:
        out.flush()
        await consumer.stop()
    return count
