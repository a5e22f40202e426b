"""The Faust app of the worker: consume the four input topics, decide in the
compiled engine as `replay` does, keep per-user state in a Faust table, emit
decisions and dead letters.

The app subscribes the four co-partitioned input topics plus a small tick
topic; their records reach `Shell.on_batch` a fetched batch at a time
(`streams.fetch`: Faust's streams cost several times what deciding does). For
each partition number the shell keeps a partition of the engine
(`streams.compiled.CompiledPartition`): the reorder buffer behind the multi-input
watermark, the users' states, the deadline index and the tally. An input
record is decoded, buffered, and applied once the watermark passes it. Each
partition then settles once per batch: its decisions go to the producer; when
they are delivered the states they changed are written to the table (once per
user); when the changelog has those writes, the records are counted and
acknowledged, in offset order per topic-partition, so a commit never skips a
record whose state could be lost. The partition's progress (`Progress`), which
names the records so finished, follows in the changelog, so that a later owner
skips them instead of counting them again. A timer sends one
tick per assigned partition to the tick topic; a tick record makes its
partition's inputs that have been caught up for the idle timeout stop holding
the watermark back, and fires due deadlines. Ticks travel through a topic so
that they reach the partition's owner, in order with its input records.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP

from streams.fetch import MonitorApp
from streams.metrics import Metrics
from streams.policy import Policy
from streams.settings import (
    FAST_GROUP_SETTINGS,
    MAX_POLL_RECORDS,
    TANSU_PRODUCER_SETTINGS,
    Settings,
)
from streams.shell import Shell


def raw_topic(app: faust.App, *names: str, partitions: int | None = None) -> Any:
    """A topic whose keys and values are bytes as they are on the wire."""
    return app.topic(*names, key_serializer="raw", value_serializer="raw",
                     partitions=partitions)


def build_app(settings: Settings, policy: Policy) -> tuple[faust.App, Shell]:
    """The Faust app with its topics, table, batch handler, tick timer and web page."""
    conf: dict[str, Any] = {
        "broker": settings.broker,
        "store": "rocksdb://" if settings.store == "rocksdb" else "memory://",
        "datadir": settings.data_dir,
        "web_enabled": True,
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "canonical_url": settings.canonical_url,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_allow_declare": True,
        "consumer_auto_offset_reset": "earliest",
        # Buffered (unacked) records must not hold a rebalance up: they are
        # redelivered to the partition's next owner.
        "stream_wait_empty": False,
        "autodiscover": False,
        "logging_config": None,
        # Faust's default linger of 0 sends every table write as its own produce
        # request (one per event); 5 ms lets them share requests, as Kafka's own
        # clients do by default since 4.0. Measured in bench/live.py.
        "producer_linger_ms": 5,
        # aiokafka holds one batch per partition and has one request in flight: of a
        # settle's state writes, each batch past the first (16 KiB by default, about
        # 20 states) waits in the fetch loop until the one before it has gone out.
        # Kafka's default message.max.bytes is 1 MiB.
        "producer_max_batch_size": 512 * 1024,
        # Records one fetch hands over (Kafka's max.poll.records; Faust's default is
        # no limit: everything the client has prefetched, for every partition, while
        # the client fetches as much again meanwhile). See MAX_POLL_RECORDS.
        "broker_max_poll_records": MAX_POLL_RECORDS,
    }
    if settings.store == "rocksdb":
        conf["rocksdb_options"] = {}
    if settings.fast_group:
        conf.update(FAST_GROUP_SETTINGS)
    if settings.tansu:
        conf.update(TANSU_PRODUCER_SETTINGS)
    conf.update(settings.security.faust_settings())
    conf.update(settings.extra)
    app = MonitorApp(settings.app_id, **conf)
    app.fetch_max_wait = settings.fetch_max_wait
    table: Any = app.Table("state", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes)
    # Keys are user ids, values the compact state: bytes as they are, both ways.
    table.key_serializer = table.value_serializer = "raw"
    metrics = Metrics(policy_version=policy.version)
    shell = Shell(app, settings, policy, table, metrics)

    async def serve_metrics(web: Any, request: Any) -> Any:
        body, content_type = metrics.exposition()
        # Content-Type through headers: aiohttp refuses a content_type with a charset.
        return web.bytes(body, headers={"Content-Type": content_type})

    app.page("/metrics")(serve_metrics)
    if settings.api_token is not None:
        from streams.api import UserApi

        UserApi(app, shell, policy, settings, metrics, settings.api_token).register()
    # The inputs and the ticks are subscribed like an agent's topics, but their
    # records reach the shell a fetched batch at a time (streams.fetch).
    app.subscribe(raw_topic(app, *settings.topics.sources, settings.ticks_topic,
                            partitions=settings.partitions), shell.on_batch)

    ticks = raw_topic(app, settings.ticks_topic, partitions=settings.partitions)

    async def tick() -> None:
        if app.rebalancing:
            return
        for tp in app.assignor.assigned_actives():
            if tp.topic == settings.ticks_topic:
                await ticks.send(value=b"", partition=tp.partition)

    app.timer(settings.tick_interval, name="tick")(tick)

    async def on_revoked(sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        await shell.quiesce()
        shell.revoke(revoked)

    app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]
    app.on_fetcher_stopped = shell.quiesce

    return app, shell
