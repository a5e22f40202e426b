"""Prometheus metrics: what the worker serves on /metrics and `replay --metrics` writes.

Names, types and labels are a contract with the Grafana dashboard and the alert
rules (`EXPORTED_METRICS` in tests/deployment.py). Every label takes a small
fixed set of values; no metric is labelled by user.

Counts are not incremented here per record. The engine already counts every
input record and decision (`streams.tally.Tally`); `Metrics` follows tallies and reads
them whenever it is collected, so the worker and replay count through the same
code and nothing is added to the per-event path. What a tally does not know is
given through methods: the wall-clock histograms (`observe_lag`,
`observe_step`: a bisect and two additions each, cheap enough per record) and
the gauges.

`Metrics` is one custom collector in the registry it is given (a fresh one by
default, never the global registry), so two instances with their own registries
are independent. Counters are exposed without `_created` series. Not
thread-safe: call it, `exposition()` included, from the thread that runs the
partitions (the worker's event loop).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from os import PathLike
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import write_to_textfile as _write_to_textfile
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from streams.codec import REJECT_REASONS
from streams.events import EVENT_TYPES
from streams.policy import ACTION_RANK, ADVERSE_CODES, RESTORE_CODES
from streams.tally import Tally

UNKNOWN_TYPE = "unknown"  # event_type of a rejected record whose type cannot be read
OUTCOMES = ("applied", "duplicate", "rejected")
# An operator's decisions (overrides), by action and reason code.
OVERRIDE_DECISIONS = (("restore", "OVERRIDE"), ("hold", "APPEAL_HOLD"), ("release", "OVERRIDE"))
ACTIONS = (*ACTION_RANK, "restore", "hold", "release")

# Event lag: live it is about the allowed lateness (600 s by default) in steady
# flow, seconds when the inputs are idle, hours while a backlog is consumed.
LAG_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 450.0, 600.0, 750.0, 900.0,
               1200.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0, 259200.0)
# Step: tens of microseconds in memory, milliseconds with a RocksDB table.
STEP_BUCKETS = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01,
                0.025, 0.05, 0.1, 0.25, 1.0)

_PREFIX = "closure_monitor_"
# How a request to a user endpoint ended (`streams.api`).
API_OUTCOMES = ("ok", "not_found", "bad_request", "unauthorized", "forwarded", "unavailable")
_TALLY_COUNTS = ("applied", "duplicates", "late", "rejected", "rejected_types", "decisions")
# Label values created at zero, so that rate() and the alerts have series from the start.
_EVENT_LABELS = (*((t, o) for t in EVENT_TYPES for o in OUTCOMES), (UNKNOWN_TYPE, "rejected"))
_DECISION_LABELS = (*((a, r) for a in ACTION_RANK for r in ADVERSE_CODES),
                    *(("restore", r) for r in RESTORE_CODES), *OVERRIDE_DECISIONS)


class _Histogram:
    """A fixed-bucket histogram without labels or locks."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive
        self.total += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=[])
        les = [*map(floatToGoString, self.bounds), "+Inf"]
        cumulative, buckets = 0, []
        for le, n in zip(les, self.counts, strict=True):
            cumulative += n
            buckets.append((le, float(cumulative)))
        family.add_metric([], buckets, self.total)
        return family


class Metrics:
    """The worker's metrics in `registry` (default: a new `CollectorRegistry`)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 policy_version: str | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._followed: dict[int, tuple[Tally, int]] = {}  # id -> (tally, times followed)
        self._retired: dict[str, Counter[Any]] = {k: Counter() for k in _TALLY_COUNTS}
        self._watched: dict[str, Any] = {}  # a Partition, or a CompiledPartition
        self._tallies: dict[str, Tally] = {}  # the tally followed for a watched partition
        self._lag = _Histogram(LAG_BUCKETS)
        self._step = _Histogram(STEP_BUCKETS)
        self._users = 0
        self._policy_version = policy_version
        self._consumer_lag: dict[tuple[str, str], float] = {}
        self._pauses: Counter[str] = Counter()  # by the event type of the input topic
        self._api: Counter[tuple[str, ...]] = Counter()  # (endpoint, outcome)
        self._policy_records: Counter[str] = Counter()  # accepted | refused
        self.registry.register(self)

    # --- counts, from tallies ---------------------------------------------------

    def follow(self, tally: Tally) -> None:
        """Count everything `tally` has counted and will count.

        A tally followed more than once (one shared by several partitions) counts
        once; it stops being followed when every `follow` is undone.
        """
        _, times = self._followed.get(id(tally), (tally, 0))
        self._followed[id(tally)] = (tally, times + 1)

    def unfollow(self, tally: Tally) -> None:
        """Keep what `tally` has counted so far; ignore what it counts from now on."""
        entry = self._followed.get(id(tally))
        if entry is None or entry[0] is not tally:
            raise ValueError("unfollow of a tally that is not followed")
        if entry[1] > 1:
            self._followed[id(tally)] = (tally, entry[1] - 1)
            return
        del self._followed[id(tally)]
        for name in _TALLY_COUNTS:
            self._retired[name].update(getattr(tally, name))

    def add_tally(self, tally: Tally) -> None:
        """Count a finished tally once (follow and unfollow at once)."""
        self.follow(tally)
        self.unfollow(tally)

    # --- per record -------------------------------------------------------------

    def observe_lag(self, seconds: float) -> None:
        """Wall-clock time of processing minus the event's `occurred_at`, in seconds.

        A negative lag (the producer's clock ahead of ours) counts as 0.
        """
        self._lag.observe(seconds if seconds > 0.0 else 0.0)

    def observe_step(self, seconds: float) -> None:
        """Wall time taken to apply one event."""
        self._step.observe(seconds)

    def add_timings(self, step: Sequence[int], step_sum: float, lag: Sequence[int],
                    lag_sum: float) -> None:
        """Histogram counts taken elsewhere (the compiled engine's, per bucket of
        STEP_BUCKETS and LAG_BUCKETS, with +Inf last) added to the step and lag
        histograms."""
        for histogram, counts, total in ((self._step, step, step_sum), (self._lag, lag, lag_sum)):
            if len(counts) != len(histogram.counts):
                raise ValueError("bucket counts do not match the histogram's buckets")
            for i, n in enumerate(counts):
                histogram.counts[i] += n
            histogram.total += total

    def count_pause(self, event_type: str) -> None:
        """A partition of `event_type`'s input topic stopped being fetched (back-pressure)."""
        self._pauses[event_type] += 1

    # --- gauges -----------------------------------------------------------------

    def set_policy(self, version: str) -> None:
        """The policy version in force: closure_monitor_policy_info{version} = 1."""
        self._policy_version = version

    def set_users(self, users: int) -> None:
        """Users with state in this process's tables (all its partitions)."""
        self._users = users

    def watch(self, partition: int | str, part: Any, *, follow: bool = True) -> None:
        """Export `part`'s watermark, buffered events and pending deadlines under the
        label `partition`, read at each collection, and follow its tally (unless
        `follow` is false: the worker counts a record once it is final, in a tally of
        its own)."""
        label = str(partition)
        previous = self._tallies.pop(label, None)
        if previous is not None:
            self.unfollow(previous)
        self._watched[label] = part
        if follow:
            self._tallies[label] = part.tally
            self.follow(part.tally)

    def unwatch(self, partition: int | str) -> None:
        """Drop a partition's gauges (revoked) and unfollow its tally; its counts stay."""
        label = str(partition)
        self._watched.pop(label, None)
        tally = self._tallies.pop(label, None)
        if tally is not None:
            self.unfollow(tally)
        for key in [k for k in self._consumer_lag if k[1] == label]:
            del self._consumer_lag[key]

    def set_consumer_lag(self, topic: str, partition: int | str, lag: float) -> None:
        """Records between the processed position and the high-water mark."""
        self._consumer_lag[topic, str(partition)] = lag

    # --- output -----------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format, and its content type."""
        return exposition(self.registry)

    def write(self, path: str | PathLike[str]) -> None:
        """The registry to a file in the Prometheus text format (written atomically)."""
        _write_to_textfile(str(path), self.registry)

    # --- the collector protocol ---------------------------------------------------

    def count_policy_record(self, outcome: str) -> None:
        """A record of the policies topic, accepted (offered to its partition, to switch
        in event time) or refused (its policy failed validation: dead-lettered)."""
        self._policy_records[outcome] += 1

    def count_api(self, endpoint: str, outcome: str) -> None:
        """One request to an API endpoint (`streams.api`) and how it ended."""
        self._api[endpoint, outcome] += 1

    def describe(self) -> Iterable[Metric]:
        return self._families(described=True)

    def collect(self) -> Iterable[Metric]:
        return self._families(described=False)

    def _totals(self) -> dict[str, Counter[Any]]:
        totals = {name: Counter(counts) for name, counts in self._retired.items()}
        for tally, _ in self._followed.values():
            for name in _TALLY_COUNTS:
                totals[name].update(getattr(tally, name))
        return totals

    def _families(self, *, described: bool) -> Iterator[Metric]:
        totals = self._totals() if not described else {k: Counter() for k in _TALLY_COUNTS}

        events = CounterMetricFamily(
            _PREFIX + "events", "Input records by event type and outcome "
            "(applied, duplicate, rejected).", labels=["event_type", "outcome"])
        rejected = totals["rejected_types"]
        # Rejections counted by reason only (not through Tally.count_rejection): unknown type.
        untyped = sum(totals["rejected"].values()) - sum(rejected.values())
        if untyped > 0:
            rejected[UNKNOWN_TYPE] += untyped
        by_outcome = {"applied": totals["applied"], "duplicate": totals["duplicates"],
                      "rejected": rejected}
        seen: dict[tuple[str, ...], int] = {
            (t, o): n for o, counts in by_outcome.items() for t, n in counts.items()}
        _add(events, _EVENT_LABELS, seen, described)
        yield events

        late = CounterMetricFamily(
            _PREFIX + "late_events", "Input events that arrived behind the watermark "
            "(applied all the same).", labels=["event_type"])
        _add(late, [(t,) for t in EVENT_TYPES],
             {(t,): n for t, n in totals["late"].items()}, described)
        yield late

        decisions = CounterMetricFamily(
            _PREFIX + "decisions", "Decisions emitted, by action and primary reason code.",
            labels=["action", "reason"])
        _add(decisions, _DECISION_LABELS, dict(totals["decisions"]), described)
        yield decisions

        dead = CounterMetricFamily(
            _PREFIX + "dead_letters", "Rejected input records (dead-lettered), by reason.",
            labels=["reason"])
        _add(dead, [(r,) for r in REJECT_REASONS],
             {(r,): n for r, n in totals["rejected"].items()}, described)
        yield dead

        pauses = CounterMetricFamily(
            _PREFIX + "input_pauses", "Times an input partition's fetching paused because "
            "it held --input-buffer records waiting for the watermark, by the event type "
            "of its topic.", labels=["event_type"])
        _add(pauses, [(t,) for t in EVENT_TYPES],
             {(t,): n for t, n in self._pauses.items()}, described)
        yield pauses

        api = CounterMetricFamily(
            _PREFIX + "api_requests", "Requests to the user endpoints, by endpoint and "
            "outcome (unauthorized: refused without the bearer token; forwarded: passed on "
            "to the worker that owns the user).", labels=["endpoint", "outcome"])
        _add(api, [("users", o) for o in API_OUTCOMES], dict(self._api), described)
        yield api

        if described:
            yield HistogramMetricFamily(_PREFIX + "event_lag_seconds", "", labels=[])
            yield HistogramMetricFamily(_PREFIX + "step_seconds", "", labels=[])
        else:
            yield self._lag.family(
                _PREFIX + "event_lag_seconds",
                "Wall-clock time of processing minus the event's occurred_at.")
            yield self._step.family(
                _PREFIX + "step_seconds",
                "Time to apply one event: load its user's state, step, store.")

        watched = self._watched if not described else {}
        users = GaugeMetricFamily(_PREFIX + "users", "Users with state in this process.")
        pending = GaugeMetricFamily(_PREFIX + "pending_deadlines",
                                    "Notice periods and cooling-off timers waiting to fire.")
        if not described:
            users.add_metric([], self._users)
            pending.add_metric([], sum(p.pending_deadlines for p in watched.values()))
        yield users
        yield pending

        watermark = GaugeMetricFamily(
            _PREFIX + "watermark_timestamp_seconds",
            "Event-time watermark of each partition, Unix seconds.", labels=["partition"])
        buffered = GaugeMetricFamily(
            _PREFIX + "buffered_events", "Events in each partition's reorder buffer.",
            labels=["partition"])
        for label, part in sorted(watched.items()):
            mark = part.buffer.watermark
            if math.isfinite(mark):  # nothing delivered yet: no watermark to show
                watermark.add_metric([label], mark)
            buffered.add_metric([label], len(part.buffer))
        yield watermark
        yield buffered

        policy = GaugeMetricFamily(
            _PREFIX + "policy_info", "The policy versions in force: value 1 for each "
            "(several while a switch has reached some partitions and not others).",
            labels=["version"])
        if not described:
            versions = {version for part in watched.values()
                        for _, version, _ in getattr(part, "policies", ())}
            if not versions and self._policy_version is not None:
                versions = {self._policy_version}
            for version in sorted(versions):
                policy.add_metric([version], 1)
        yield policy

        records = CounterMetricFamily(
            _PREFIX + "policy_records", "Records of the policies topic: accepted (switching "
            "their partition at their effective time) or refused (invalid: the policy in "
            "force stays; dead-lettered).", labels=["outcome"])
        _add(records, [("accepted",), ("refused",)],
             {(k,): n for k, n in self._policy_records.items()}, described)
        yield records

        lag = GaugeMetricFamily(
            _PREFIX + "consumer_lag",
            "Records between the processed position and the high-water mark.",
            labels=["topic", "partition"])
        if not described:
            for (topic, label), value in sorted(self._consumer_lag.items()):
                lag.add_metric([topic, label], value)
        yield lag


def _add(family: CounterMetricFamily, known: Iterable[tuple[str, ...]],
         counts: dict[tuple[str, ...], int], described: bool) -> None:
    """Known label values first (zero when nothing was counted), then any others."""
    if described:
        return
    known = list(known)
    for labels in known:
        family.add_metric(list(labels), counts.get(labels, 0))
    for labels in sorted(set(counts) - set(known)):
        family.add_metric(list(labels), counts[labels])


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """A /metrics response: `registry` in the Prometheus text format, and its content type.

    The content type names a charset: aiohttp (Faust's web server) refuses it as
    `content_type=`; send it as the Content-Type header instead.
    """
    return generate_latest(registry), CONTENT_TYPE_LATEST
