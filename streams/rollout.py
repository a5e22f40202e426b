"""Rolling a policy out live: policy records on the `credit.policies` topic.

A record names a validated policy document and the event time it takes effect
(`effective_at`). `closure-monitor policy publish` checks the policy and sends one
copy of the record to every partition of the topic, which is co-partitioned with
the inputs: each partition of every worker applies it in event-time order with its
events (the engine's policy switch), so all of them switch at the same event time,
and a replay given the same records (`replay --policy-history`) decides the same.

A record may name a segment, `"segment": {"region": "<region>"}`: its policy then
decides only the users of that region (the region their events give), every other
user stays under the policy in force for them; without one, it is the policy of
every user but those of a region with a policy of its own.

A record a worker cannot use (not JSON, a field missing, a policy that fails the
same validation as a policy file) is refused: the policy in force stays, and the
record goes to the dead-letter topic with the reason, is logged and counted
(`closure_monitor_policy_records_total{outcome="refused"}`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from streams.errors import PolicyError
from streams.policy import Policy, compile_policy

FIELDS = ("policy_id", "effective_at", "published_by", "policy")
# As an event's region (streams/codec.py): a string of 1 to 64 characters.
REGION_LIMIT = 64


class RefusedPolicy(ValueError):
    """A policy record a worker cannot apply; the message says why."""


@dataclass(frozen=True)
class PolicyRecord:
    policy_id: str
    effective_at: float
    published_by: str
    policy: Policy
    region: str | None = None  # the segment's region; None: unscoped


def _text(d: dict[str, Any], name: str, limit: int) -> str:
    value = d.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isprintable():
        raise RefusedPolicy(f"{name}: a string of 1 to {limit} printable characters")
    return value


def _time(value: Any) -> float:
    if not isinstance(value, str):
        raise RefusedPolicy("effective_at: an RFC 3339 date-time with an offset")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise RefusedPolicy(f"effective_at {value!r}: not an RFC 3339 date-time") from None
    if at.tzinfo is None:
        raise RefusedPolicy(f"effective_at {value!r}: no offset (add Z for UTC)")
    return at.timestamp()


def parse(raw: bytes) -> PolicyRecord:
    """A policy record's bytes to the record, its policy validated and compiled;
    RefusedPolicy saying what is wrong otherwise."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RefusedPolicy(f"not JSON: {exc}") from None
    if not isinstance(d, dict):
        raise RefusedPolicy("not a JSON object")
    policy_id = _text(d, "policy_id", 128)
    at = _time(d.get("effective_at"))
    by = _text(d, "published_by", 128)
    try:
        policy = compile_policy(d.get("policy"))
    except PolicyError as exc:
        raise RefusedPolicy(f"policy: {exc}") from None
    region = _segment(d["segment"]) if "segment" in d else None
    return PolicyRecord(policy_id, at, by, policy, region)


def _segment(value: Any) -> str:
    """A segment's region. A segment is an object with one key, "region": a string of
    1 to 64 characters, as events carry it (any, compared as it is)."""
    if not isinstance(value, dict):
        raise RefusedPolicy('segment: an object, {"region": ...}')
    other = sorted(k for k in value if k != "region")
    if other:
        raise RefusedPolicy(f"segment: unknown key {other[0]!r} (only region)")
    if "region" not in value:
        raise RefusedPolicy("segment: region required")
    region = value["region"]
    if not isinstance(region, str) or not 1 <= len(region) <= REGION_LIMIT:
        raise RefusedPolicy(f"segment: region: a string of 1 to {REGION_LIMIT} characters")
    return region


def record(policy_document: Any, policy_id: str, effective_at: str, published_by: str,
           region: str | None = None) -> bytes:
    """A policy record (JSON) for a policy document, as `publish` sends it; with a
    region, for that region's users only (its segment)."""
    body: dict[str, Any] = {"policy_id": policy_id, "effective_at": effective_at,
                            "published_by": published_by, "policy": policy_document}
    if region is not None:
        body["segment"] = {"region": region}
    return orjson.dumps(body)


def history(lines: Iterable[bytes]) -> tuple[list[PolicyRecord], list[tuple[int, str]]]:
    """A recorded policy history (the topic's records, one copy per partition, in any
    order): each record once (by policy_id and region: the first line of each), in
    the order a replay applies them (time, policy_id, then region, an unscoped record
    first), and the refused ones as (line number, reason)."""
    kept: dict[tuple[str, str | None], PolicyRecord] = {}
    refused: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            r = parse(line)
        except RefusedPolicy as exc:
            refused.append((n, str(exc)))
            continue
        kept.setdefault((r.policy_id, r.region), r)
    return sorted(kept.values(),
                  key=lambda r: (r.effective_at, r.policy_id, r.region or "")), refused


async def publish(url: str, topic: str, raw: bytes) -> int:
    """Send a policy record to every partition of the policies topic (each partition
    of the inputs switches by its own copy); the number of partitions. The topic must
    exist (a worker creates it): sent to a broker that creates unknown topics, the
    record would land in partitions no worker reads."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.errors import ConfigError
    from streams.kafka import bootstrap, start_client
    from streams.security import client_settings

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(url), **client_settings())
    await start_client(admin, url, admin.close)
    try:
        if topic not in await admin.list_topics():
            raise ConfigError(f"{topic}: no such topic on {url}; start a worker first (it "
                              "creates its topics)")
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap(url), **client_settings())
    await start_client(producer, url, producer.stop)
    try:
        partitions = sorted(await producer.partitions_for(topic))
        for p in partitions:
            await producer.send_and_wait(topic, raw, key=b"policy", partition=p)
    finally:
        await producer.stop()
    return len(partitions)
