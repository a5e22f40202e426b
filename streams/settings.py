"""The worker's settings and their defaults (command line and environment:
`streams.cli_live`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.kafka import Topics
from streams.policy import Policy
from streams.security import BrokerSecurity

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
    input_buffer: int = DEFAULT_INPUT_BUFFER  # records held per input before it pauses
    fetch_max_wait: float = DEFAULT_FETCH_MAX_WAIT
    tansu: bool = False  # the embedded development broker's workaround
    fast_group: bool = False  # short session timeouts (one-machine broker)
    loglevel: str = "warning"
    # The bearer token of the user endpoints (`streams.api`); None: they are off.
    api_token: str | None = None
    # How the other workers reach this one's web server (Faust's canonical_url);
    # None: http://WEB_HOST:WEB_PORT, the host's name where WEB_HOST is 0.0.0.0.
    advertised_url: str | None = None
    security: BrokerSecurity = field(default_factory=BrokerSecurity)  # TLS and SASL
    extra: dict[str, Any] = field(default_factory=dict)  # further Faust settings

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    @property
    def canonical_url(self) -> str:
        if self.advertised_url:
            return self.advertised_url
        host = self.web_host
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"

    @property
    def ticks_topic(self) -> str:
        return f"{self.app_id}-ticks"  # app-scoped, like Faust's changelog topics
