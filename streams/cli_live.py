"""The commands that talk to Kafka: worker, dev, produce, record."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from streams.errors import ConfigError, MonitorError, UsageError

ENV = "CLOSURE_MONITOR_"


def _env(name: str, default: Any) -> Any:
    return os.environ.get(ENV + name, default)


def _int_env(name: str, default: int) -> int:
    value = _env(name, default)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{ENV}{name}={value!r}: not an integer") from None


def add_commands(sub: Any, policy_flags: Callable[..., None],
                 seconds: Callable[[str], float]) -> None:
    from streams.cli_help import add_command

    w = add_command(sub, "worker")
    _broker_flag(w)
    # Live, an event waits for no lateness unless told (app.DEFAULT_LATENESS).
    policy_flags(w, lateness_default=None,
                 lateness_help="allowed lateness, in seconds of event time: how long an "
                               "event waits for the other inputs to reach its time (default: "
                               "0: it waits only for them; 600 with --strict-order)")
    w.add_argument("--store", choices=("memory", "rocksdb"), default=_env("STORE", "memory"),
                   help="where the table of users' states is kept, backed by its "
                        "changelog topic either way (default: memory; env "
                        "CLOSURE_MONITOR_STORE)")
    w.add_argument("--data-dir", default=_env("DATA_DIR", "closure-monitor-data"),
                   metavar="DIR",
                   help="where RocksDB keeps state (default: closure-monitor-data; env "
                        "CLOSURE_MONITOR_DATA_DIR)")
    w.add_argument("--web-host", default=_env("WEB_HOST", "127.0.0.1"), metavar="HOST",
                   help="address of the /metrics web server; 0.0.0.0 for every interface "
                        "(default: 127.0.0.1; env CLOSURE_MONITOR_WEB_HOST)")
    w.add_argument("--web-port", type=int, default=None, metavar="PORT",
                   help="port of the /metrics web server (default: 6066; env "
                        "CLOSURE_MONITOR_WEB_PORT)")
    _partitions_flag(w)
    w.add_argument("--replication-factor", type=int, default=None, metavar="N",
                   help="replicas of every topic the worker creates, its changelog "
                        "included; set 3 on a production cluster (default: 1; env "
                        "CLOSURE_MONITOR_REPLICATION_FACTOR)")
    w.add_argument("--app-id", default=_env("APP_ID", "closure-monitor"), metavar="NAME",
                   help="consumer group and prefix of the changelog and tick topics "
                        "(default: closure-monitor; env CLOSURE_MONITOR_APP_ID)")
    _prefix_flag(w)
    w.add_argument("--idle-timeout", type=seconds, default=None, metavar="SECONDS",
                   help="how long an input must be caught up with the broker before it "
                        "stops holding the watermark back (default: 0, as Kafka Streams' "
                        "max.task.idle.ms: never wait for a silent input; 2 with "
                        "--strict-order)")
    w.add_argument("--strict-order", action="store_true",
                   default=_env("STRICT_ORDER", "") not in ("", "0"),
                   help="event-time order as replay has it: a lateness of 600 s and an "
                        "idle timeout of 2 s unless set, so that live equals replay for "
                        "any disorder within the lateness; events then wait that long "
                        "for their decisions (env CLOSURE_MONITOR_STRICT_ORDER=1 sets it)")
    w.add_argument("--fetch-max-wait", type=float, default=None, metavar="SECONDS",
                   help="longest a fetch waits for records (default: 0.5, Kafka's; 0.05 "
                        "with --tansu)")
    w.add_argument("--state-cache", type=int, default=None, metavar="N",
                   help="no effect, kept so that earlier command lines run: the engine "
                        "holds every user of its partitions (about 1 KB each) and stores "
                        "them in the table (env CLOSURE_MONITOR_STATE_CACHE)")
    w.add_argument("--input-buffer", type=int, default=None, metavar="N",
                   help="records of one input partition held (not yet applied and "
                        "acknowledged) before its fetching pauses while another input "
                        "holds the watermark back (default: 5000; env "
                        "CLOSURE_MONITOR_INPUT_BUFFER)")
    w.add_argument("--tansu", action="store_true",
                   default=_env("TANSU", "") not in ("", "0"),
                   help="the embedded development broker's workarounds, never for Kafka "
                        "(env CLOSURE_MONITOR_TANSU=1 sets it)")
    w.add_argument("--fast-rebalance", action="store_true",
                   default=_env("FAST_REBALANCE", "") not in ("", "0"),
                   help="short group session timeouts, for a broker on this machine "
                        "(env CLOSURE_MONITOR_FAST_REBALANCE=1 sets it)")
    w.add_argument("--loglevel", default=_env("LOGLEVEL", "warning"), metavar="LEVEL",
                   help="the worker's log level: debug, info, warning, error or critical "
                        "(default: warning; env CLOSURE_MONITOR_LOGLEVEL)")
    w.set_defaults(run=_worker)

    d = add_command(sub, "dev")
    d.add_argument("--users", type=int, default=3000, metavar="N",
                   help="borrowers in the synthetic log")
    d.add_argument("--days", type=int, default=180, metavar="N",
                   help="days of events in the synthetic log")
    d.add_argument("--rate", type=float, default=300.0, metavar="EVENTS",
                   help="events sent a second")
    d.add_argument("--web-port", type=int, default=6066, metavar="PORT",
                   help="port of the worker's /metrics web server (default: 6066, or a "
                        "free port if that one is taken)")
    d.add_argument("--partitions", type=int, default=4, metavar="N",
                   help="partitions of every topic")
    d.add_argument("--seed", type=int, default=1, metavar="N",
                   help="random seed of the synthetic log")
    d.set_defaults(run=_dev)

    p = add_command(sub, "produce")
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="a recorded event log: JSONL, gzipped or not; - reads stdin")
    _broker_flag(p)
    _prefix_flag(p)
    p.add_argument("--rate", type=float, default=None, metavar="LINES",
                   help="lines sent a second (default: as fast as the broker takes them)")
    p.set_defaults(run=_produce)

    r = add_command(sub, "record")
    _broker_flag(r)
    _prefix_flag(r)
    r.add_argument("--output", "-o", default="-", metavar="FILE",
                   help="write the log to FILE, gzipped if it ends in .gz; - is stdout")
    r.add_argument("--topic", action="append", dest="topic_names", metavar="TOPIC",
                   help="record this topic instead; repeat for more (default: the three "
                        "input topics)")
    r.add_argument("--follow", "-f", action="store_true",
                   help="keep recording new records until Ctrl-C")
    r.set_defaults(run=_record)


def _broker_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default=_env("BROKER", "kafka://127.0.0.1:9092"), metavar="URL",
                   help="Kafka bootstrap URL, kafka://HOST:PORT (several separated by ;) "
                        "(default: kafka://127.0.0.1:9092; env CLOSURE_MONITOR_BROKER)")


def _prefix_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic-prefix", default=_env("TOPIC_PREFIX", ""), metavar="PREFIX",
                   help="prefix to every topic name (default: none; env "
                        "CLOSURE_MONITOR_TOPIC_PREFIX)")


def _partitions_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="partitions of every topic the worker creates (default: 8; env "
                        "CLOSURE_MONITOR_PARTITIONS)")


def _count(value: int | None, flag: str, env: str, default: int) -> int:
    """A count of at least 1: the flag's value, else its environment variable, else
    the default. A bad value is named as it was given: flag or variable."""
    if value is not None:
        if value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
        return value
    count = _int_env(env, default)
    if count < 1:
        raise ConfigError(f"{ENV}{env}={count}: must be at least 1 (as {flag})")
    return count


def _settings(args: argparse.Namespace) -> Any:
    from streams.settings import (
        DEFAULT_FETCH_MAX_WAIT,
        DEFAULT_IDLE_TIMEOUT,
        DEFAULT_INPUT_BUFFER,
        DEFAULT_LATENESS,
        STRICT_IDLE_TIMEOUT,
        STRICT_LATENESS,
        TANSU_FETCH_MAX_WAIT,
        Settings,
    )

    partitions = _count(args.partitions, "--partitions", "PARTITIONS", 8)
    replication = _count(args.replication_factor, "--replication-factor",
                         "REPLICATION_FACTOR", 1)
    if args.web_port is not None:
        web_port = args.web_port
        if not 0 < web_port < 65536:
            raise UsageError(f"--web-port {web_port}: not a port number")
    else:
        web_port = _int_env("WEB_PORT", 6066)
        if not 0 < web_port < 65536:
            raise ConfigError(f"{ENV}WEB_PORT={web_port}: not a port number")
    fetch_max_wait = args.fetch_max_wait
    if fetch_max_wait is None:
        fetch_max_wait = TANSU_FETCH_MAX_WAIT if args.tansu else DEFAULT_FETCH_MAX_WAIT
    if not 0 < fetch_max_wait <= 60:
        raise UsageError(f"--fetch-max-wait {fetch_max_wait:g}: not in (0, 60] seconds")
    if args.state_cache is not None or _env("STATE_CACHE", ""):
        _count(args.state_cache, "--state-cache", "STATE_CACHE", 1)  # still refused when bad
        print("closure-monitor: --state-cache (CLOSURE_MONITOR_STATE_CACHE) has no effect: "
              "the engine holds every user's state (about 1 KB each)", file=sys.stderr)
    input_buffer = _count(args.input_buffer, "--input-buffer", "INPUT_BUFFER",
                          DEFAULT_INPUT_BUFFER)
    return Settings(broker=args.broker, store=args.store, data_dir=args.data_dir,
                    web_host=args.web_host, web_port=web_port, partitions=partitions,
                    replication_factor=replication,
                    app_id=args.app_id, topic_prefix=args.topic_prefix,
                    lateness=(args.lateness if args.lateness is not None
                              else STRICT_LATENESS if args.strict_order
                              else DEFAULT_LATENESS),
                    idle_timeout=(args.idle_timeout if args.idle_timeout is not None
                                  else STRICT_IDLE_TIMEOUT if args.strict_order
                                  else DEFAULT_IDLE_TIMEOUT),
                    fetch_max_wait=fetch_max_wait,
                    input_buffer=input_buffer,
                    tansu=args.tansu, fast_group=args.fast_rebalance or args.tansu,
                    loglevel=args.loglevel)


def _worker(args: argparse.Namespace) -> int:
    from streams.policy import load_policy
    from streams.worker import run_worker

    policy = load_policy(args.policy)
    settings = _settings(args)
    settings.policy = policy
    return run_worker(settings, policy)


def _produce(args: argparse.Namespace) -> int:
    from streams.kafka import Topics
    from streams.transfer import log_lines, produce

    for path in args.logs:
        if path != "-" and not os.path.isfile(path):
            raise ConfigError(f"{path}: no such log file")
    if args.rate is not None and not 0 < args.rate < math.inf:
        raise UsageError(f"--rate {args.rate:g}: must be a positive number of lines a second")
    started = time.monotonic()
    summary = asyncio.run(produce(args.broker, log_lines(args.logs), Topics(args.topic_prefix),
                                  rate=args.rate))
    elapsed = time.monotonic() - started
    topics = ", ".join(f"{t} {n:,}" for t, n in sorted(summary.by_topic.items()))
    print(f"produced {summary.sent:,} records in {elapsed:.1f} s ({topics}); "
          f"{summary.unroutable:,} without a readable event type", file=sys.stderr)
    return 0


def _record(args: argparse.Namespace) -> int:
    from streams.cli import _open_out
    from streams.kafka import Topics, check_broker
    from streams.transfer import record

    names = args.topic_names or list(Topics(args.topic_prefix).inputs)
    # An unreachable broker leaves an earlier file of that name as it was.
    asyncio.run(check_broker(args.broker))
    out = _open_out(args.output)
    try:
        count = asyncio.run(record(args.broker, names, out, follow=args.follow))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"recorded {count:,} records from {', '.join(names)}", file=sys.stderr)
    return 0


# -- dev -------------------------------------------------------------------------


def describe(decision: dict[str, Any]) -> str:
    """One readable line per decision, for people watching `dev`."""
    reason = decision["reasons"][0]
    more = len(decision["reasons"]) - 1
    line = (f"{decision['event_time'][:16].replace('T', ' ')}  {decision['action']:<9} "
            f"{decision['user_id']:<12} {decision['status_before']:>10} -> "
            f"{decision['status_after']:<10} {reason['code']}: {reason['message']}")
    if more:
        line += f" (+{more} more)"
    if decision.get("effective_at") and decision["effective_at"] != decision["event_time"]:
        line += f"; takes effect {decision['effective_at'][:10]} unless cured"
    if decision.get("supersedes"):
        line += f"; supersedes {decision['supersedes']}"
    return line


def _dev(args: argparse.Namespace) -> int:
    from streams.generate import generate_log
    from streams.kafka import EmbeddedBroker, Topics, free_port, port_open, stop_process
    from streams.worker import check_port

    if not 0 < args.rate < math.inf or args.users < 1 or args.days < 1:
        raise UsageError("--rate, --users and --days must be positive")
    web_port = args.web_port
    try:
        check_port("127.0.0.1", web_port)
    except MonitorError:
        web_port = free_port()
    log_dir = tempfile.mkdtemp(prefix="closure-monitor-dev-")
    log_path = os.path.join(log_dir, "events.jsonl")
    print(f"generating {args.users:,} synthetic users over {args.days} days ...", file=sys.stderr)
    with open(log_path, "wb") as out:
        summary = generate_log(out, seed=args.seed, users=args.users, days=args.days)
    broker = EmbeddedBroker(log_path=os.path.join(log_dir, "broker.log")).start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        print(f"embedded broker (Tansu) on {broker.bootstrap}", file=sys.stderr)
        topics = Topics()
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--broker", broker.url,
               "--partitions", str(args.partitions), "--web-port", str(web_port), "--tansu",
               "--app-id", "closure-monitor-dev", "--data-dir", os.path.join(log_dir, "data")]
        worker_log = open(os.path.join(log_dir, "worker.log"), "wb")  # noqa: SIM115
        worker = subprocess.Popen(cmd, stdout=worker_log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", web_port):
            if worker.poll() is not None:
                worker_log.close()
                with open(os.path.join(log_dir, "worker.log"), "rb") as f:
                    tail = f.read()[-2000:]
                raise MonitorError("the worker exited at startup:\n"
                                   + tail.decode("utf-8", "replace"))
            if time.monotonic() > deadline:
                raise MonitorError("the worker did not start within 60 s")
            time.sleep(0.1)
        print(f"worker up: metrics http://127.0.0.1:{web_port}/metrics; "
              f"producing {summary.lines:,} events at {args.rate:g}/s; Ctrl-C stops\n"
              f"logs in {log_dir}", file=sys.stderr)
        asyncio.run(_dev_loop(broker.url, topics, log_path, args.rate, worker))
    except KeyboardInterrupt:
        pass
    finally:
        if worker is not None:
            stop_process(worker, 20)
        broker.stop()
        print("stopped", file=sys.stderr)
    return 0


async def _dev_loop(url: str, topics: Any, log_path: str, rate: float,
                    worker: subprocess.Popen[bytes]) -> None:
    import orjson
    from aiokafka import AIOKafkaConsumer

    from streams.kafka import bootstrap
    from streams.settings import TANSU_AIOKAFKA_PRODUCER
    from streams.transfer import log_lines, produce

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    producing = asyncio.create_task(produce(url, log_lines([log_path]), topics, rate=rate,
                                            producer_settings=TANSU_AIOKAFKA_PRODUCER,
                                            stop=stop))
    consumer = AIOKafkaConsumer(topics.decisions, bootstrap_servers=bootstrap(url),
                                auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    shown = 0
    try:
        while not stop.is_set():
            if worker.poll() is not None:
                print(f"the worker exited with status {worker.returncode}", file=sys.stderr)
                break
            batch = await consumer.getmany(timeout_ms=250)
            for records in batch.values():
                for rec in records:
                    with contextlib.suppress(Exception):
                        print(describe(orjson.loads(rec.value)), flush=True)
                        shown += 1
            if producing.done() and producing.exception() is not None:
                raise producing.exception()  # type: ignore[misc]
    finally:
        stop.set()
        await consumer.stop()
        with contextlib.suppress(Exception):
            await producing
        print(f"{shown:,} decisions shown", file=sys.stderr)
