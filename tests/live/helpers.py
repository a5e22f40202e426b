"""Helpers for tests against the embedded broker: a worker process, producing a
log, reading topics, and waiting for conditions (never for fixed times)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams._engine import decode_fields
from streams.kafka import EmbeddedBroker, Topics, ensure_topics, free_port, port_open
from streams.policy import load_policy
from streams.replay import compiled
from streams.settings import TANSU_AIOKAFKA_PRODUCER
from streams.transfer import ProduceSummary, log_lines, produce, route

CLI = [sys.executable, "-m", "streams.cli"]
TEST_PRODUCER = TANSU_AIOKAFKA_PRODUCER


def event_time(line: bytes) -> float:
    """The occurred_at of the event a log line decodes to (the engine's decoder);
    -inf for a line it rejects."""
    fields = decode_fields(line)
    return float(fields[3]) if fields[0] != "rejected" else float("-inf")


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float,
                   what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(poll)


@dataclass
class Expected:
    """What `replay` decides for a log: the reference for every live test."""

    decisions: dict[str, dict[str, Any]]
    read: int
    applied: int
    duplicates: int
    rejected: Counter[str]
    late: int

    @classmethod
    def of(cls, path: Path, schedule: Sequence[tuple[Any, ...]] = ()) -> Expected:
        """Replay of the log (with a policy history: its switches)."""
        decisions: dict[str, dict[str, Any]] = {}

        def keep(batch: list[bytes]) -> None:
            for line in batch:
                d = orjson.loads(line)
                decisions[d["decision_id"]] = d

        tally = compiled([load_policy(None)], [str(path)], on_decisions=[keep],
                         schedule=schedule)[0]
        return cls(decisions, tally.read, sum(tally.applied.values()),
                   sum(tally.duplicates.values()), Counter(tally.rejected),
                   sum(tally.late.values()))


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    web_port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def summary(self) -> dict[str, int]:
        """The counts the worker printed at shutdown."""
        text = self.output()
        m = re.search(r"events read ([\d,]+): applied ([\d,]+), duplicates ([\d,]+), "
                      r"rejected ([\d,]+)", text)
        assert m, f"no summary in the worker's output:\n{text[-3000:]}"
        keys = ("read", "applied", "duplicates", "rejected")
        return {k: int(v.replace(",", "")) for k, v in zip(keys, m.groups(), strict=True)}

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError("the worker did not stop on SIGTERM") from None
        return self.process.returncode


@dataclass
class Live:
    """One test's topics, group and workers on the shared broker."""

    broker: EmbeddedBroker
    tmp: Path
    partitions: int = 4
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}.")
    workers: list[Worker] = field(default_factory=list)

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    @property
    def app_id(self) -> str:
        return self.prefix + "monitor"

    async def create_topics(self) -> None:
        await ensure_topics(self.broker.url, (*self.topics.all(), self.ticks_topic),
                            self.partitions)

    @property
    def ticks_topic(self) -> str:
        return f"{self.app_id}-ticks"

    def start_worker(self, *extra: str, store: str = "memory", tansu: bool = True,
                     strict: bool = True) -> Worker:
        """A worker on this test's topics; with tansu=False, production settings
        (Apache Kafka's: no Tansu workaround) but short group timeouts; with strict
        (the default here: the tests compare live with replay), `--strict-order`."""
        port = free_port()
        log = self.tmp / f"worker-{len(self.workers)}.log"
        cmd = [*CLI, "worker", "--broker", self.broker.url, "--partitions",
               str(self.partitions), "--topic-prefix", self.prefix, "--app-id", self.app_id,
               "--web-port", str(port), "--store", store,
               "--data-dir", str(self.tmp / f"data-{len(self.workers)}"),
               "--tansu" if tansu else "--fast-rebalance", "--loglevel", "info",
               *(["--strict-order"] if strict else []), *extra]
        with open(log, "wb") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                       cwd=self.tmp, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        worker = Worker(process, port, log)
        self.workers.append(worker)
        return worker

    async def wait_web(self, worker: Worker, timeout: float = 60) -> None:
        async def up() -> bool:
            assert worker.process.poll() is None, worker.output()[-3000:]
            return port_open("127.0.0.1", worker.web_port)
        await wait_for(up, timeout, "the worker's web port")

    async def produce(self, lines: Iterable[bytes], rate: float | None = None) -> ProduceSummary:
        return await produce(self.broker.url, lines, self.topics, rate=rate,
                             producer_settings=TEST_PRODUCER)

    async def produce_lines(self, path: Path) -> int:
        return (await self.produce(log_lines([str(path)]))).sent

    async def produce_topic_by_topic(self, path: Path) -> ProduceSummary:
        """A backlog: all of one topic, then the next."""
        lines = list(log_lines([str(path)]))
        total = ProduceSummary()
        for topic in self.topics.inputs:
            part = await self.produce(line for line in lines
                                      if route(line, self.topics)[0] == topic)
            total.sent += part.sent
            total.unroutable += part.unroutable
            for k, v in part.by_topic.items():
                total.by_topic[k] = total.by_topic.get(k, 0) + v
        return total

    async def committed(self) -> int:
        """Input records the group has committed (applied, acked and committed)."""
        return sum((await self.committed_offsets()).values())

    async def committed_offsets(self, topics: Iterable[str] | None = None
                                ) -> dict[tuple[str, int], int]:
        """The group's committed offset of each input topic-partition (0 if none), or of
        each partition of `topics`."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.broker.bootstrap,
                                    group_id=self.app_id, enable_auto_commit=False)
        await consumer.start()
        try:
            names = list(topics) if topics is not None else self.topics.inputs
            return {(t, p): await consumer.committed(TopicPartition(t, p)) or 0
                    for t in names for p in range(self.partitions)}
        finally:
            await consumer.stop()

    async def committed_by_tp(self) -> dict[str, int]:
        return {f"{t.rsplit('.', 1)[-1]}[{p}]": offset
                for (t, p), offset in (await self.committed_offsets()).items()}

    async def wait_committed(self, count: int, timeout: float = 120) -> None:
        async def done() -> bool:
            for worker in self.workers:
                if worker.process.returncode is None and worker.process.poll() is not None:
                    raise AssertionError(f"a worker died:\n{worker.output()[-3000:]}")
            return await self.committed() >= count
        try:
            await wait_for(done, timeout, f"{count} committed input records", poll=0.5)
        except AssertionError as exc:
            # Stop the workers cleanly so that their reports say what was held up.
            reports = []
            for worker in self.workers:
                if worker.process.poll() is None:
                    worker.process.send_signal(signal.SIGTERM)
                    worker.process.wait(60)
                reports.append(worker.output()[-1500:])
            raise AssertionError(f"{exc}; {await self.committed()} committed: "
                                 f"{await self.committed_by_tp()}\n"
                                 + "\n---\n".join(reports)) from None


class TopicReader:
    """Reads topics from the beginning as they grow."""

    def __init__(self, broker: EmbeddedBroker, *topics: str) -> None:
        self.broker = broker
        self.topics = topics
        self.records: dict[str, list[Any]] = {t: [] for t in topics}
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicReader:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.broker.bootstrap,
                                         enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        await self.consumer.start()
        tps = []
        for topic in self.topics:
            parts = self.consumer.partitions_for_topic(topic)
            if not parts:
                await self.consumer._client.force_metadata_update()
                parts = self.consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in parts]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.consumer is not None
        await self.consumer.stop()

    async def poll(self) -> None:
        assert self.consumer is not None
        batch = await self.consumer.getmany(timeout_ms=100)
        for tp, recs in batch.items():
            self.records[tp.topic] += recs

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        async def check() -> bool:
            await self.poll()
            return condition()
        await wait_for(check, timeout, what, poll=0)

    async def until_count(self, topic: str, count: int, timeout: float, what: str) -> None:
        """Until at least `count` records of `topic` were read."""
        await self.until(lambda: len(self.records[topic]) >= count, timeout, what)

    async def drain(self) -> None:
        """Read up to every partition's current high-water mark."""
        assert self.consumer is not None
        consumer = self.consumer

        async def caught_up() -> bool:
            await self.poll()
            for tp in consumer.assignment():
                hw = consumer.highwater(tp)
                if hw is None or await consumer.position(tp) < hw:
                    return False
            return True
        await wait_for(caught_up, 30, "the end of the topics", poll=0)

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.records[topic]]
