"""Live benchmark: one worker through the embedded broker.

Usage: .venv/bin/python bench/live.py [--events 1000000] [--offset 0] [--runs 3]
                                      [--rates 5000 500]
                                      [--floors agent batch client stock]
                                      [--latency-seconds 20] [--partitions 8]
                                      [--idle-timeouts 2 0.2]

1. Pre-loads the first --events lines of bench/data/replay-100k.jsonl (made by
   bench/replay.py; generated here if missing) into the three input topics.
2. Throughput, each of --runs times with a fresh consumer group:
   (a) floor: a minimal Faust agent that only reads the same topics into a
       table (the framework's own cost per record, same broker, same process
       model), on the worker's consumer (streams.fetch: no per-record tasks);
       the batch floor: the worker's batch hand-off storing every record as the
       worker stores a state (store plus changelog), no agent; the client
       floor: a plain aiokafka consumer in this process reading every record
       (no Faust, no decoding; what the broker and client allow at all); and with
       `--floors stock`, the agent on Faust's own consumer;
   (b) worker: `closure-monitor worker` with production settings (default
       producer batching; no Tansu workaround; short group timeouts only to
       cut the join wait).
   Rate = records committed by the group / time from its first to its last
   commit, polled every 0.25 s. Medians and worker/floor ratio are printed.
3. Latency: fresh topics, a running worker, events offered at each of --rates for
   --latency-seconds; for every decision an event triggered, the time from
   sending that event to reading the decision. p50/p99 printed. The worker and
   the reader fetch with a short max wait (50 and 20 ms; TANSU_FETCH_MAX_WAIT:
   Tansu answers records that arrive during a fetch's wait late; Kafka answers at
   once).
   Beside it, with now stamps, the broker's own share (`relay_floor`: the same
   events through a relay that only consumes and produces them, two trips through
   the broker as an event and its decision make; --no-relay-floor skips it), and
   the latency that the event-time watermark alone imposes on the
   same events at the same rate (`watermark_floor`, no processing at all). With
   --idle-timeouts, each rate is measured with each idle timeout in turn.

Prints the machine first. Nothing here is asserted: figures are for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from itertools import product
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.replay import ensure_log, machine  # noqa: E402
from streams.codec import Rejection, decode  # noqa: E402
from streams.events import format_time  # noqa: E402
from streams.kafka import (  # noqa: E402
    EmbeddedBroker,
    Topics,
    ensure_topics,
    free_port,
    partition_for,
    stop_process,
)
from streams.policy import load_policy  # noqa: E402
from streams.reorder import ReorderBuffer  # noqa: E402
from streams.replay import compiled  # noqa: E402
from streams.settings import (  # noqa: E402
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LATENESS,
    TANSU_FETCH_MAX_WAIT,
)
from streams.transfer import route  # noqa: E402

CLI = [sys.executable, "-m", "streams.cli"]

FLOOR_APP = r'''
import sys
import faust
from streams.fetch import MonitorApp
broker, prefix, group, partitions, port, kind, datadir = sys.argv[1:8]
# "agent": an agent on the worker's consumer (direct hand-off); "stock": an agent
# on Faust's own consumer; "batch": the worker's batch hand-off, no agent.
App = faust.App if kind == "stock" else MonitorApp
names = [prefix + t for t in ("credit.repayments", "credit.applications",
                              "credit.report-changes")]
app = App(group, broker=broker, store="memory://", web_port=int(port), datadir=datadir,
                web_bind="127.0.0.1", topic_partitions=int(partitions),
                consumer_auto_offset_reset="earliest", stream_wait_empty=False,
                broker_session_timeout=10, broker_rebalance_timeout=10,
                broker_heartbeat_interval=1, autodiscover=False,
                producer_linger_ms=5)  # the worker's producer setting
table = app.Table("floor", default=None, partitions=int(partitions),
                  key_type=bytes, value_type=bytes)
table.key_serializer = table.value_serializer = "raw"
topic = app.topic(*names, key_serializer="raw", value_serializer="raw")

async def read(stream):
    async for event in stream.events():
        table[event.key or b""] = event.value

async def handle(messages):
    # Per partition, the worker's own state write (store plus changelog); then acks.
    from streams.store import store_partition
    by_partition = {}
    for m in messages:
        by_partition.setdefault(m.partition, []).append(m)
    for ms in by_partition.values():
        await store_partition(app, table, ms[-1], [(m.key or b"", m.value) for m in ms])
        for m in ms:
            app.consumer.ack(m)

if kind == "batch":
    app.subscribe(topic, handle)
else:
    app.agent(topic)(read)

worker = faust.Worker(app, loglevel="warning", redirect_stdouts=False, quiet=True)
worker.spinner = None  # as the monitor's worker does: see streams/worker.py
sys.argv[1:] = ["worker"]
worker.execute_from_commandline()
'''


async def preload(broker: EmbeddedBroker, topics: Topics, lines: list[bytes]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20,
                                max_batch_size=1 << 20)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        for line in lines:
            topic, key, _ = route(line, topics)
            futures.append(await producer.send(topic, line, key=key))
            if len(futures) >= 20_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def committed(broker: EmbeddedBroker, group: str, tps: list[TopicPartition]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return sum([await consumer.committed(tp) or 0 for tp in tps])
    finally:
        await consumer.stop()


async def client_floor(broker: EmbeddedBroker, tps: list[TopicPartition], total: int,
                       timeout: float) -> dict[str, float]:
    """Records/s of a plain aiokafka consumer reading every record from the start
    (assigned, no group): the records after its first fetched batch, over the time
    from that batch to the last record."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                fetch_max_wait_ms=int(TANSU_FETCH_MAX_WAIT * 1000))
    await consumer.start()
    try:
        consumer.assign(tps)
        n, first, started = 0, 0, 0.0
        deadline = time.perf_counter() + timeout
        while n < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            n += sum(len(records) for records in batch.values())
            if batch and not first:
                first, started = n, time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"client floor: only {n:,} of {total:,} read")
        seconds = time.perf_counter() - started
        return {"rate": (n - first) / seconds, "seconds": seconds}
    finally:
        await consumer.stop()


async def measure(broker: EmbeddedBroker, group: str, tps: list[TopicPartition], total: int,
                  cmd: list[str], log: Path, timeout: float) -> dict[str, float]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        first_t = first_n = None
        last_n, last_t = 0, time.perf_counter()
        deadline = time.perf_counter() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[3] if len(cmd) > 3 else cmd} exited; see {log}")
            n = await committed(broker, group, tps)
            now = time.perf_counter()
            if n > last_n:
                if first_t is None:
                    first_t, first_n = now, n
                last_n, last_t = n, now
            if n >= total:
                break
            if now > deadline:
                raise RuntimeError(f"only {n:,} of {total:,} committed in {timeout:g} s")
            await asyncio.sleep(0.25)
        assert first_t is not None and first_n is not None
        return {"rate": (last_n - first_n) / max(last_t - first_t, 1e-9),
                "seconds": last_t - first_t, "peak_mib": _peak_mib(proc.pid)}
    finally:
        stop_process(proc, 60)


def restamped(line: bytes, at: float) -> bytes:
    """The line with its event time (and payment time, when paid) set to `at`: as a
    producer stamping events when they happen writes them."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return line
    if not isinstance(obj, dict):
        return line
    stamp = format_time(round(at, 3))
    obj["occurred_at"] = stamp
    if obj.get("paid_at") is not None:
        obj["paid_at"] = stamp
    return orjson.dumps(obj)


# How long the producer of the offered events lingers to fill a batch, in ms. A Tansu
# workaround for the latency runs (its memory store lists every batch a partition
# ever stored at every fetch of it, so fetches slow down as batches pile up: with
# one-record batches, linger 0, fetches fell from 282 a second to 14 within 20 s at
# 5,000/s). 20 ms holds them level over a minute at 5,000/s. The linger is counted
# in the latency measured (from the send call), so it only costs the figures.
PRODUCER_LINGER_MS = 20


async def latency(broker: EmbeddedBroker, lines: list[bytes], rate: float, seconds: float,
                  partitions: int, tmp: Path, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                  stamps: str = "log", linger_ms: int = PRODUCER_LINGER_MS
                  ) -> dict[str, float]:
    """With stamps "now", every event is stamped with the wall clock as it is sent
    (`restamped`): a real-time producer; with "log", the log's own times, played
    faster than they happened."""
    prefix = f"lat{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix)
    app_id = prefix + "monitor"
    await ensure_topics(broker.url, (*topics.all(), f"{app_id}-ticks"), partitions)
    port = free_port()
    cmd = [*CLI, "worker", "--broker", broker.url, "--partitions", str(partitions),
           "--topic-prefix", prefix, "--app-id", app_id, "--web-port", str(port),
           "--fast-rebalance", "--fetch-max-wait", str(TANSU_FETCH_MAX_WAIT),
           "--idle-timeout", str(idle_timeout), "--data-dir", str(tmp / app_id)]
    with open(tmp / "latency-worker.log", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    # Tansu answers records that arrive during a fetch's wait late: keep the wait
    # short for the reader, so that the instrument adds no latency of its own.
    consumer = AIOKafkaConsumer(topics.decisions, bootstrap_servers=broker.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=20)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=linger_ms)
    await consumer.start()
    await producer.start()
    try:
        # Warm-up: wait until the worker is assigned and deciding before timing.
        await _wait_group(broker, app_id, proc)
        count = int(rate * seconds)
        offered = lines[:count]

        async def read() -> None:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batch.values():
                    for rec in records:
                        trigger = orjson.loads(rec.value)["trigger_event_id"]
                        if trigger in sent_at:
                            latencies.append(now - sent_at[trigger])

        reader = asyncio.create_task(read())
        started = time.perf_counter()
        for i, line in enumerate(offered):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if stamps == "now":
                line = restamped(line, time.time())
            topic, key, ok = route(line, topics)
            if ok:
                with_id = orjson.loads(line).get("event_id")
                if isinstance(with_id, str):
                    sent_at.setdefault(with_id, time.perf_counter())
            await producer.send(topic, line, key=key)
        offered_s = time.perf_counter() - started
        await producer.flush()
        # Drain: decisions keep coming until the watermark passes the last events.
        settle = time.perf_counter() + 15
        seen = -1
        while time.perf_counter() < settle and seen != len(latencies):
            seen = len(latencies)
            await asyncio.sleep(2)
        reader.cancel()
    finally:
        await producer.stop()
        await consumer.stop()
        stop_process(proc, 60)
    latencies.sort()
    if not latencies:
        raise RuntimeError("no decisions measured")
    return {"offered_rate": len(offered) / offered_s, "decisions": len(latencies),
            **percentiles(latencies)}


def percentiles(ordered: list[float]) -> dict[str, float]:
    """p50, p99 and max, in ms, of waits in seconds sorted ascending (not empty)."""
    return {"p50_ms": 1000 * ordered[len(ordered) // 2],
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            "max_ms": 1000 * ordered[-1]}


async def relay_floor(broker: EmbeddedBroker, lines: list[bytes], rate: float,
                      seconds: float, partitions: int,
                      linger_ms: int = PRODUCER_LINGER_MS) -> dict[str, float]:
    """The latency the broker alone imposes on the worker's path: the same events
    offered the same way to fresh input topics, and a relay in this process (one
    consumer of the three inputs, fetching with the worker's wait, one producer
    lingering as the worker's does) that sends every record on to the decisions
    topic at once, with no processing; from sending each record to reading it there.
    Two trips through the broker, as an event and its decision make."""
    topics = Topics(f"relay{uuid.uuid4().hex[:6]}.")
    await ensure_topics(broker.url, topics.all(), partitions)
    sent_at: dict[bytes, float] = {}
    latencies: list[float] = []
    source = AIOKafkaConsumer(*topics.inputs, bootstrap_servers=broker.bootstrap,
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              fetch_max_wait_ms=int(1000 * TANSU_FETCH_MAX_WAIT))
    relay = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    reader = AIOKafkaConsumer(topics.decisions, bootstrap_servers=broker.bootstrap,
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              fetch_max_wait_ms=20)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=linger_ms)
    for client in (source, relay, reader, producer):
        await client.start()
    try:
        async def forward() -> None:
            while True:
                batch = await source.getmany(timeout_ms=100)
                for records in batch.values():
                    for rec in records:
                        await relay.send(topics.decisions, rec.value, key=rec.key)

        warm: set[bytes] = set()
        repeated: set[bytes] = set()

        async def read() -> None:
            while True:
                batch = await reader.getmany(timeout_ms=100)
                now = time.perf_counter()
                for records in batch.values():
                    for rec in records:
                        at = sent_at.get(rec.value)
                        if at is not None and rec.value not in repeated:
                            latencies.append(now - at)
                        elif rec.value.startswith(b"warm-up "):
                            warm.add(rec.value)

        tasks = [asyncio.create_task(forward()), asyncio.create_task(read())]
        # Warm-up, as the worker's measure waits for its assignment: a record through
        # every partition of every input, relayed and read, before timing.
        markers = [f"warm-up {t} {p}".encode() for t in topics.inputs for p in range(partitions)]
        for marker in markers:
            _, topic, p = marker.decode().split()
            await producer.send(topic, marker, partition=int(p))
        deadline = time.perf_counter() + 60
        while len(warm) < len(markers) and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        offered = lines[:int(rate * seconds)]
        started = time.perf_counter()
        for i, line in enumerate(offered):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            line = restamped(line, time.time())
            topic, key, _ = route(line, topics)
            if line in sent_at:
                repeated.add(line)  # (a line that cannot be restamped, sent again)
            sent_at.setdefault(line, time.perf_counter())
            await producer.send(topic, line, key=key)
        await producer.flush()
        settle = time.perf_counter() + 15
        while (time.perf_counter() < settle
               and len(latencies) < len(offered) - len(repeated)):
            await asyncio.sleep(0.5)
        for task in tasks:
            task.cancel()
    finally:
        for client in (producer, reader, relay, source):
            await client.stop()
    latencies.sort()
    if not latencies:
        raise RuntimeError("nothing relayed")
    return {"records": len(latencies), **percentiles(latencies),
            "over_1s": sum(x > 1 for x in latencies)}


def watermark_floor(lines: list[bytes], rate: float, partitions: int,
                    lateness: float = DEFAULT_LATENESS,
                    idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> dict[str, float]:
    """The latency the event-time watermark alone imposes (no processing at all):
    `lines` offered at `rate`, each partition's events through the worker's own
    ReorderBuffer, for the events whose decisions replay says they trigger. The
    contract (docs/design.md) holds an event until every input of its partition is
    `lateness` of event time past it; how long that takes in wall time depends on
    how fast event time moves through the offered log."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        f.write(b"\n".join(lines) + b"\n")
        f.flush()
        triggers: set[str] = set()

        def keep(batch: list[bytes]) -> None:
            triggers.update(orjson.loads(line).get("trigger_event_id") or "" for line in batch)

        compiled([load_policy()], [f.name], lateness=lateness, on_decisions=[keep])
    topics = Topics()
    buffers: dict[int, ReorderBuffer[float]] = {}
    last: dict[tuple[int, str], float] = {}  # latest arrival per input
    waits = []
    for i, line in enumerate(lines):
        event = decode(line)
        if isinstance(event, Rejection):
            continue
        p = partition_for(event.user_id.encode(), partitions)
        buffer = buffers.get(p)
        if buffer is None:
            buffer = buffers[p] = ReorderBuffer(lateness)
            for name in topics.inputs:
                buffer.add_input(name)
                buffer.set_idle(name, True)  # caught up before the first record
        now = i / rate
        # As the worker does with a consumer that keeps up: an input that brought
        # nothing for the idle timeout stops holding the watermark.
        for name in topics.inputs:
            if now - last.get((p, name), now) >= idle_timeout:
                buffer.set_idle(name, True)
        source = route(line, topics)[0]
        last[p, source] = now
        buffer.push(source, event, now)
        waits += [now - sent for e, sent in buffer.release() if e.event_id in triggers]
    waits.sort()
    return {"events": len(waits), **percentiles(waits)}


async def _wait_group(broker: EmbeddedBroker, app_id: str, proc: subprocess.Popen[bytes]) -> None:
    """The worker has joined and been assigned: its tick topic sees commits or records."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(f"{app_id}-ticks", 0)
        consumer.assign([tp])
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("the latency worker exited")
            batch = await consumer.getmany(timeout_ms=500)
            if batch:
                return
        raise RuntimeError("the worker never ticked")
    finally:
        await consumer.stop()


def _peak_mib(pid: int) -> float:
    """A live process's peak resident memory (VmHWM), MiB; NaN where /proc lacks it."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


async def run(args: argparse.Namespace) -> None:
    m = machine()
    print(f"machine: nproc {m['nproc']} (affinity {m['affinity']}), cpu {m['cpu']}, "
          f"{m['python']}, {m['platform']}", flush=True)
    path = ensure_log(100_000, 180)
    with open(path, "rb") as f:
        for _ in range(args.offset):
            f.readline()
        lines = [line.rstrip(b"\n") for _, line in zip(range(args.events), f, strict=False)]
    kinds = Counter(route(line, Topics())[0] for line in lines)
    print(f"{len(lines):,} lines from line {args.offset:,}: "
          + ", ".join(f"{t} {n:,}" for t, n in sorted(kinds.items())), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    with EmbeddedBroker(log_path=str(tmp / "tansu.log")) as broker:
        topics = Topics(f"b{uuid.uuid4().hex[:6]}.")
        await ensure_topics(broker.url, topics.inputs, args.partitions)
        # (the backlog only the throughput runs read: none with --runs 0)
        seconds = await preload(broker, topics, lines if args.runs else [])
        print(f"pre-loaded {len(lines) if args.runs else 0:,} records in {seconds:.1f} s "
              f"({args.partitions} partitions per topic)", flush=True)
        tps = [TopicPartition(t, p) for t in topics.inputs for p in range(args.partitions)]
        floor_code = tmp / "floor_app.py"
        floor_code.write_text(FLOOR_APP)
        floors, stocks, batches, clients, workers = [], [], [], [], []
        for i in range(args.runs):
            if "client" in args.floors:
                r = await client_floor(broker, tps, len(lines), args.timeout)
                clients.append(r["rate"])
                print(f"  run {i + 1}: {'client floor':<11} {r['rate']:>9,.0f} records/s "
                      f"({r['seconds']:.1f} s)", flush=True)
            for kind, rates in (("agent", floors), ("stock", stocks), ("batch", batches)):
                if kind not in args.floors:
                    continue
                group = f"floor-{uuid.uuid4().hex[:6]}"
                cmd = [sys.executable, str(floor_code), broker.url, topics.prefix, group,
                       str(args.partitions), str(free_port()), kind, str(tmp / group)]
                r = await measure(broker, group, tps, len(lines), cmd,
                                  tmp / f"floor-{kind}-{i}.log", args.timeout)
                rates.append(r["rate"])
                label = {"agent": "floor", "stock": "stock floor",
                         "batch": "batch floor"}[kind]
                print(f"  run {i + 1}: {label:<11} {r['rate']:>9,.0f} records/s "
                      f"({r['seconds']:.1f} s)", flush=True)
            app_id = f"monitor-{uuid.uuid4().hex[:6]}"
            await ensure_topics(broker.url, (topics.decisions, topics.dead_letter,
                                             f"{app_id}-ticks"), args.partitions)
            cmd = [*CLI, "worker", "--broker", broker.url, "--partitions", str(args.partitions),
                   "--topic-prefix", topics.prefix, "--app-id", app_id, "--web-port",
                   str(free_port()), "--fast-rebalance", "--data-dir", str(tmp / app_id)]
            r = await measure(broker, app_id, tps, len(lines), cmd, tmp / f"worker-{i}.log",
                              args.timeout)
            workers.append(r["rate"])
            print(f"  run {i + 1}: {'worker':<11} {r['rate']:>9,.0f} events/s "
                  f"({r['seconds']:.1f} s, peak RSS {r['peak_mib']:.0f} MiB)", flush=True)
        if workers:  # (--runs 0: latency only)
            worker = statistics.median(workers)
            print(f"throughput, median of {args.runs}: worker {worker:,.0f} events/s "
                  f"(issue 16: >= 30,000, target 50,000)", flush=True)
            for name, rates in (("floor (agent)", floors), ("batch floor", batches),
                                ("stock floor", stocks), ("client floor", clients)):
                if rates:
                    rate = statistics.median(rates)
                    print(f"  {name}: {rate:,.0f} records/s; worker = {worker / rate:.2f} "
                          f"of it", flush=True)
        for stamps, rate, idle in product(args.stamps, args.rates, args.idle_timeouts):
            lat = await latency(broker, lines, rate, args.latency_seconds, args.partitions,
                                tmp, idle, stamps, args.producer_linger)
            offered = lines[:int(rate * args.latency_seconds)]
            if stamps == "now":  # event time moves as the wall clock does
                start = time.time()
                offered = [restamped(line, start + i / rate)
                           for i, line in enumerate(offered)]
            floor_lat = watermark_floor(offered, rate, args.partitions, idle_timeout=idle)
            print(f"latency, {stamps} stamps, at {lat['offered_rate']:,.0f} events/s "
                  f"offered, idle timeout {idle:g} s: p50 {lat['p50_ms']:.0f} ms, p99 "
                  f"{lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms over "
                  f"{lat['decisions']:,} event-triggered decisions, producer linger "
                  f"{args.producer_linger} ms (target p99 <= 250 ms at 5,000/s with now "
                  f"stamps, goal 100 ms)", flush=True)
            if stamps == "now" and args.relay_floor:
                relayed = await relay_floor(broker, lines, rate, args.latency_seconds,
                                            args.partitions, args.producer_linger)
                print(f"  the broker alone (a relay, no processing, two trips as an event "
                      f"and its decision make): p50 {relayed['p50_ms']:.0f} ms, p99 "
                      f"{relayed['p99_ms']:.0f} ms, max {relayed['max_ms']:.0f} ms over "
                      f"{relayed['records']:,} records ({relayed['over_1s']:,} over 1 s)",
                      flush=True)
            print(f"  of which the event-time watermark alone (lateness "
                  f"{DEFAULT_LATENESS:g} s, no processing): p50 {floor_lat['p50_ms']:.0f} "
                  f"ms, p99 {floor_lat['p99_ms']:.0f} ms over {floor_lat['events']:,} "
                  f"decision-triggering events", flush=True)
    print(f"logs in {tmp}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--offset", type=int, default=0,
                   help="skip this many lines first (the log opens with every user's "
                        "first bureau report; later slices mix all three types)")
    p.add_argument("--runs", type=int, default=3, help="throughput runs (0: latency only)")
    p.add_argument("--rates", type=float, nargs="*", default=[5000, 500],
                   help="offered rates for the latency runs (events/s)")
    p.add_argument("--latency-seconds", type=float, default=20)
    p.add_argument("--producer-linger", type=int, default=PRODUCER_LINGER_MS, metavar="MS",
                   help="linger of the offered events' producer in the latency runs "
                        f"(default {PRODUCER_LINGER_MS}: see PRODUCER_LINGER_MS)")
    p.add_argument("--idle-timeouts", type=float, nargs="+", default=[DEFAULT_IDLE_TIMEOUT],
                   help="the worker's --idle-timeout for the latency runs, each in turn "
                        "(default: the worker's default)")
    p.add_argument("--stamps", nargs="+", default=["now", "log"], choices=("now", "log"),
                   help="event times of the latency runs: the wall clock when sent (a "
                        "real-time producer) and/or the log's own (default both)")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--relay-floor", action=argparse.BooleanOptionalAction, default=True,
                   help="with now stamps, also time a relay with no processing through "
                        "the same broker (the broker's own share of the latency)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--floors", nargs="*", default=["agent", "batch", "client"],
                   choices=("agent", "batch", "client", "stock"),
                   help="floors to measure (default agent batch client; stock is slow)")
    asyncio.run(run(p.parse_args()))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
