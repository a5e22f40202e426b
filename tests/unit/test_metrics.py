"""The metrics module against the exported-metrics contract, and `replay --metrics`.

Counts are checked against what the log and the replay output say
independently: lines in the log, decision lines, dead-letter lines, users and
event times decoded from the log.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams.codec import REJECT_REASONS, Rejection, decode
from streams.compiled import CompiledPartition
from streams.metrics import LAG_BUCKETS, STEP_BUCKETS, Metrics, exposition
from streams.policy import load_policy
from streams.replay import compiled
from streams.tally import Tally
from tests.deployment import EXPORTED_METRICS, HISTOGRAM_SUFFIXES
from tests.oracle.replay import replay

CLI = str(Path(sys.executable).parent / "closure-monitor")
POLICY = load_policy()
COUNTERS = [name for name, (kind, _) in EXPORTED_METRICS.items() if kind == "counter"]

Samples = dict[str, list[tuple[dict[str, str], float]]]  # exposition name -> samples


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CLI, *args], capture_output=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("metrics") / "log.jsonl"
    result = cli("generate", "--users", "300", "--days", "120", "--seed", "3",
                 "--malformed-share", "0.01", "--output", str(path))
    assert result.returncode == 0, result.stderr
    return path


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Exposition text to {metric name: type} and {metric name: samples}, by the names
    the dashboard uses (counters with `_total`, histograms without their suffixes)."""
    kinds: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        assert name not in kinds, f"{name} exported twice"
        kinds[name] = family.type
        samples[name] = []
        for sample in family.samples:
            suffix = sample.name.removeprefix(family.name)
            allowed = ("_total",) if family.type == "counter" else (
                HISTOGRAM_SUFFIXES if family.type == "histogram" else ("",))
            assert suffix in allowed, f"unexpected series {sample.name}"
            samples[name].append((dict(sample.labels), sample.value))
    return kinds, samples


def by_labels(samples: Samples, name: str, *labels: str) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for sample_labels, value in samples[name]:
        out[tuple(sample_labels[label] for label in labels)] += int(value)
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    (found,) = [v for sample_labels, v in samples[name] if sample_labels == labels]
    return found


def bucket(samples: Samples, name: str, le: str) -> float:
    return value(samples, name, le=le)


def histogram_count(samples: Samples, name: str) -> float:
    # parse() keeps the suffixes' samples together; +Inf is the count.
    return bucket(samples, name, "+Inf")


def check_contract(text: str) -> Samples:
    """Every exported name with its type, and only the allowed labels and values."""
    kinds, samples = parse(text)
    assert kinds == {name: kind for name, (kind, _) in EXPORTED_METRICS.items()}
    for name, (kind, allowed) in EXPORTED_METRICS.items():
        for labels, _ in samples[name]:
            names = set(labels) - ({"le"} if kind == "histogram" else set())
            assert names == set(allowed), f"{name}: labels {sorted(labels)}"
            for label, values in allowed.items():
                assert values is None or labels[label] in values, f"{name}: {labels}"
    assert "user_id" not in text
    return samples


def user_ids(path: Path) -> set[str]:
    return {e.user_id for e in map(decode, path.read_bytes().splitlines())
            if not isinstance(e, Rejection)}


# --- a replay's metrics -------------------------------------------------------------


def dead_lettered(record: bytes) -> Rejection:
    """A dead-letter record's rejection, its event type as the decoder reads the raw line."""
    d = orjson.loads(record)
    raw = d["raw"].encode() if "raw" in d else base64.b64decode(d["raw_base64"])
    rejection = decode(raw)
    assert isinstance(rejection, Rejection) and rejection.reason == d["reason"]
    return rejection


def replay_counted(log: Path, jobs: int = 1, lateness: float = 600.0
                   ) -> tuple[Samples, str, Tally, list[bytes], list[Rejection]]:
    """`replay --metrics`: its metrics, decision lines and rejections."""
    metrics = Metrics()
    decisions: list[bytes] = []
    dead: list[bytes] = []
    [tally] = compiled([POLICY], [str(log)], lateness=lateness, on_decisions=[decisions.extend],
                       on_reject=dead.extend, metrics=metrics, jobs=jobs)
    body, content_type = metrics.exposition()
    return (check_contract(body.decode()), content_type, tally, decisions,
            [dead_lettered(d) for d in dead])


@pytest.fixture(scope="module")
def replayed(log: Path) -> tuple[Samples, str, Tally, list[bytes], list[Rejection]]:
    return replay_counted(log)


@pytest.mark.parametrize("jobs", [1, 2])
def test_replay_metrics_are_the_python_engines(log: Path, jobs: int) -> None:
    """The engine's run counted as the Python engine (the oracle) counts it: every
    series the same but the step times (the same count, other durations)."""
    metrics = Metrics()
    decisions: list[bytes] = []
    tally = replay(POLICY, [str(log)], on_decision=lambda d: decisions.append(d.to_json()),
                   metrics=metrics)
    samples = check_contract(metrics.exposition()[0].decode())
    theirs, _, compiled_tally, lines, _ = replay_counted(log, jobs)
    assert compiled_tally == tally and lines == decisions
    step = "closure_monitor_step_seconds"
    assert theirs.keys() == samples.keys()
    for name in theirs:
        if name != step:
            assert theirs[name] == samples[name], name
    # every event released is timed, a duplicate and an override rejected when applied too
    steps = (sum(tally.applied.values()) + sum(tally.duplicates.values())
             + tally.rejected["unknown_user"])
    assert histogram_count(theirs, step) == histogram_count(samples, step) == steps > 0
    assert 0 < bucket(theirs, step, "0.001") <= bucket(theirs, step, "0.01") <= steps


def test_every_exported_metric_with_its_type_and_labels(replayed: Any) -> None:
    samples, content_type, *_ = replayed
    assert content_type.startswith("text/plain")
    for name in COUNTERS:
        assert samples[name], f"{name} has no series"


def test_events_account_for_every_line(replayed: Any, log: Path) -> None:
    samples, _, tally, _, rejected = replayed
    lines = [x for x in log.read_bytes().splitlines() if x.strip()]
    events = by_labels(samples, "closure_monitor_events_total", "event_type", "outcome")
    assert sum(events.values()) == len(lines) == tally.read
    outcomes = Counter[str]()
    for (_, outcome), n in events.items():
        outcomes[outcome] += n
    assert outcomes["applied"] == sum(tally.applied.values()) > 0
    assert outcomes["duplicate"] == sum(tally.duplicates.values()) > 0
    assert outcomes["rejected"] == len(rejected) > 0
    # Rejected records keep their type when they name a known one.
    expected = Counter((r.event_type or "unknown") for r in rejected)
    assert {t: n for (t, o), n in events.items() if o == "rejected" and n} == expected
    assert len(expected) >= 2, "the log should reject records of known and unknown type"
    # Applied, by type, against the log itself.
    valid = [e for e in map(decode, lines) if not isinstance(e, Rejection)]
    by_type = Counter(e.event_type for e in valid)
    for event_type, n in by_type.items():
        applied = events[event_type, "applied"]
        assert applied + events[event_type, "duplicate"] == n


def test_dead_letters_are_the_rejected_records_by_reason(replayed: Any) -> None:
    samples, _, _, _, rejected = replayed
    dead = by_labels(samples, "closure_monitor_dead_letters_total", "reason")
    assert +dead == Counter((r.reason,) for r in rejected)
    assert set(REJECT_REASONS) <= {reason for (reason,) in dead}  # all there, at zero or not


def test_decisions_equal_the_decision_lines(replayed: Any) -> None:
    samples, _, _, decisions, _ = replayed
    counted = by_labels(samples, "closure_monitor_decisions_total", "action", "reason")
    lines = [orjson.loads(d) for d in decisions]
    expected = Counter((d["action"], d["reasons"][0]["code"]) for d in lines)
    assert len(lines) > 50
    assert +counted == expected


def test_gauges_and_histograms_after_replay(replayed: Any, log: Path) -> None:
    samples, _, tally, _, _ = replayed
    assert value(samples, "closure_monitor_users") == len(user_ids(log)) > 0
    valid = [e for e in map(decode, log.read_bytes().splitlines())
             if not isinstance(e, Rejection)]
    # Every input finished: the watermark is the latest event time.
    assert value(samples, "closure_monitor_watermark_timestamp_seconds",
                 partition="0") == max(e.occurred_at for e in valid)
    assert value(samples, "closure_monitor_buffered_events", partition="0") == 0
    assert value(samples, "closure_monitor_pending_deadlines") > 0
    assert value(samples, "closure_monitor_policy_info", version=POLICY.version) == 1
    # A step per event released (applied, found duplicate, or an override rejected when
    # applied); no wall-clock lag in a replay.
    steps = (sum(tally.applied.values()) + sum(tally.duplicates.values())
             + tally.rejected["unknown_user"])
    assert histogram_count(samples, "closure_monitor_step_seconds") == steps
    assert histogram_count(samples, "closure_monitor_event_lag_seconds") == 0
    assert samples["closure_monitor_consumer_lag"] == []


def test_late_events_by_type(log: Path) -> None:
    samples, _, tally, _, _ = replay_counted(log, lateness=0.0)
    late = by_labels(samples, "closure_monitor_late_events_total", "event_type")
    assert sum(late.values()) > 0
    assert +late == Counter({(t,): n for t, n in tally.late.items()})


# --- the module on its own ---------------------------------------------------------


def test_fresh_metrics_have_every_counter_series_at_zero() -> None:
    samples = check_contract(Metrics().exposition()[0].decode())
    events = by_labels(samples, "closure_monitor_events_total", "event_type", "outcome")
    assert {o for _, o in events} == {"applied", "duplicate", "rejected"}
    assert ("unknown", "rejected") in events
    decisions = by_labels(samples, "closure_monitor_decisions_total", "action", "reason")
    assert {a for a, _ in decisions} == {"warn", "downgrade", "close", "restore", "hold",
                                         "release"}
    assert ("restore", "CURED") in decisions and ("close", "OVERDUE") in decisions
    assert {("restore", "OVERRIDE"), ("hold", "APPEAL_HOLD"), ("release", "OVERRIDE")} <= set(
        decisions)
    assert ("override", "rejected") in events
    dead = by_labels(samples, "closure_monitor_dead_letters_total", "reason")
    assert ("unknown_user",) in dead
    for name in COUNTERS:
        assert samples[name] and all(v == 0 for _, v in samples[name]), name


def test_separate_registries_do_not_collide() -> None:
    first, second = Metrics(), Metrics(CollectorRegistry())
    assert first.registry is not second.registry
    assert first.registry is not REGISTRY
    assert not any(name.startswith("closure_monitor")
                   for name in REGISTRY._names_to_collectors)  # never the global registry
    tally = Tally()
    tally.applied["repayment"] += 5
    first.add_tally(tally)
    one = check_contract(first.exposition()[0].decode())
    two = check_contract(second.exposition()[0].decode())
    assert value(one, "closure_monitor_events_total",
                 event_type="repayment", outcome="applied") == 5
    assert value(two, "closure_monitor_events_total",
                 event_type="repayment", outcome="applied") == 0
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(first.registry)


def test_followed_tallies_are_read_at_collection_and_kept_after_unfollow() -> None:
    metrics = Metrics()
    shared, other = Tally(), Tally()
    metrics.follow(shared)
    metrics.follow(shared)  # e.g. one tally shared by two partitions: counted once
    metrics.follow(other)

    def applied() -> float:
        return value(parse(metrics.exposition()[0].decode())[1],
                     "closure_monitor_events_total", event_type="application", outcome="applied")

    shared.applied["application"] += 3
    other.applied["application"] += 1
    assert applied() == 4
    shared.applied["application"] += 2
    assert applied() == 6
    metrics.unfollow(other)
    other.applied["application"] += 100  # no longer followed
    assert applied() == 6
    metrics.unfollow(shared)
    shared.applied["application"] += 1  # still followed once
    assert applied() == 7
    metrics.unfollow(shared)
    shared.applied["application"] += 1
    assert applied() == 7
    with pytest.raises(ValueError):
        metrics.unfollow(shared)


APPLICATION = (b'{"event_id":"a1","event_type":"application","user_id":"u1",'
               b'"occurred_at":"2026-01-04T00:00:00Z","schema_version":1,'
               b'"application_id":"app1","product":"cash_loan","kind":"drawdown",'
               b'"requested_amount":1000,"channel":"app"}')
APPLIED_AT = 1_767_484_800.0  # 2026-01-04T00:00:00Z


def _partition() -> CompiledPartition[None]:
    part: CompiledPartition[None] = CompiledPartition(POLICY, 0.0)
    part.add_input("in")
    return part


def _offer(part: CompiledPartition[None], raw: bytes) -> None:
    released, rejection, elsewhere = part.take("in", raw, None, None, 1, 0)
    assert rejection is None and elsewhere is None and released == [None]


def test_watched_partitions_and_consumer_lag() -> None:
    metrics = Metrics()
    parts = [_partition(), _partition()]
    for n, part in enumerate(parts):
        metrics.watch(n, part)
        metrics.set_consumer_lag("credit.repayments", n, 10 + n)
    samples = parse(metrics.exposition()[0].decode())[1]
    assert samples["closure_monitor_watermark_timestamp_seconds"] == []  # no event yet
    _offer(parts[1], APPLICATION)
    assert parts[1].tally.applied["application"] == 1  # (the engine's count, taken)
    samples = check_contract(metrics.exposition()[0].decode())
    assert value(samples, "closure_monitor_watermark_timestamp_seconds",
                 partition="1") == APPLIED_AT
    assert value(samples, "closure_monitor_events_total",
                 event_type="application", outcome="applied") == 1
    assert value(samples, "closure_monitor_pending_deadlines") == parts[1].pending_deadlines
    assert by_labels(samples, "closure_monitor_consumer_lag", "topic", "partition") == {
        ("credit.repayments", "0"): 10, ("credit.repayments", "1"): 11}
    metrics.watch(0, parts[0])  # watching again replaces, without counting twice
    assert by_labels(check_contract(metrics.exposition()[0].decode()),
                     "closure_monitor_events_total", "outcome")[("applied",)] == 1
    metrics.unwatch(1)  # revoked: its gauges go, its counts stay
    samples = check_contract(metrics.exposition()[0].decode())
    assert samples["closure_monitor_watermark_timestamp_seconds"] == []
    assert [labels["partition"] for labels, _ in samples["closure_monitor_buffered_events"]
            ] == ["0"]
    assert by_labels(samples, "closure_monitor_consumer_lag", "topic", "partition") == {
        ("credit.repayments", "0"): 10}
    assert value(samples, "closure_monitor_events_total",
                 event_type="application", outcome="applied") == 1


def test_a_partition_watched_without_its_tally_shows_gauges_only() -> None:
    """The worker counts a record once it is final, in a tally of its own: a
    partition watched with follow=False exports its gauges, not its engine's counts."""
    metrics = Metrics()
    part = _partition()
    metrics.watch(0, part, follow=False)
    _offer(part, APPLICATION)
    assert part.tally.applied["application"] == 1
    samples = check_contract(metrics.exposition()[0].decode())
    assert value(samples, "closure_monitor_watermark_timestamp_seconds",
                 partition="0") == APPLIED_AT
    assert value(samples, "closure_monitor_events_total",
                 event_type="application", outcome="applied") == 0
    metrics.unwatch(0)
    metrics.follow(part.tally)  # the tally itself, followed on its own
    samples = check_contract(metrics.exposition()[0].decode())
    assert value(samples, "closure_monitor_events_total",
                 event_type="application", outcome="applied") == 1


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    metrics = Metrics()
    for seconds in (3e-6, 1e-3, 1e-3, 2.0):
        metrics.observe_step(seconds)
    for seconds in (-5.0, 600.0, 1e6):
        metrics.observe_lag(seconds)
    samples = parse(metrics.exposition()[0].decode())[1]
    step = "closure_monitor_step_seconds"
    assert bucket(samples, step, "5e-06") == 1
    assert bucket(samples, step, "0.0005") == 1
    assert bucket(samples, step, "0.001") == 3  # le is inclusive
    assert bucket(samples, step, "1.0") == 3
    assert bucket(samples, step, "+Inf") == 4
    lag = "closure_monitor_event_lag_seconds"
    assert bucket(samples, lag, "1.0") == 1  # a negative lag counts as 0
    assert bucket(samples, lag, "600.0") == 2
    assert bucket(samples, lag, "+Inf") == 3
    counts = [v for labels, v in samples[step] if "le" in labels]
    assert counts == sorted(counts) and len(counts) == len(STEP_BUCKETS) + 1
    assert len([1 for labels, _ in samples[lag] if "le" in labels]) == len(LAG_BUCKETS) + 1


def test_write_and_exposition_agree(tmp_path: Path) -> None:
    metrics = Metrics(policy_version="v-test")
    tally = Tally()
    tally.count_rejection(Rejection("schema", "x", "credit_report"))
    tally.count_rejection(Rejection("not_json", "x"))
    metrics.add_tally(tally)
    path = tmp_path / "metrics.prom"
    metrics.write(path)
    body, content_type = exposition(metrics.registry)
    assert path.read_bytes() == body == metrics.exposition()[0]
    assert content_type == metrics.exposition()[1]
    samples = check_contract(path.read_text())
    rejected = by_labels(samples, "closure_monitor_events_total", "event_type", "outcome")
    assert rejected["credit_report", "rejected"] == rejected["unknown", "rejected"] == 1
    assert by_labels(samples, "closure_monitor_dead_letters_total", "reason")[("schema",)] == 1
    assert value(samples, "closure_monitor_policy_info", version="v-test") == 1


def test_rejections_counted_by_reason_only_are_of_unknown_type() -> None:
    metrics = Metrics()
    tally = Tally()
    metrics.follow(tally)
    tally.count_rejection(Rejection("schema", "x", "repayment"))
    tally.rejected["key_mismatch"] += 2  # as a shell that bypasses count_rejection would
    samples = check_contract(metrics.exposition()[0].decode())
    rejected = by_labels(samples, "closure_monitor_events_total", "event_type", "outcome")
    assert rejected["repayment", "rejected"] == 1
    assert rejected["unknown", "rejected"] == 2
    dead = by_labels(samples, "closure_monitor_dead_letters_total", "reason")
    assert sum(dead.values()) == 3 and dead[("key_mismatch",)] == 2


# --- the console script -------------------------------------------------------------


SUMMARY = re.compile(r"events read ([\d,]+): applied ([\d,]+), duplicates ([\d,]+), "
                     r"rejected ([\d,]+); late ([\d,]+)")


def test_replay_metrics_option(log: Path, tmp_path: Path) -> None:
    path, dead = tmp_path / "replay.prom", tmp_path / "dead.jsonl"
    result = cli("replay", str(log), "--metrics", str(path), "--dead-letter", str(dead))
    assert result.returncode == 0, result.stderr
    samples = check_contract(path.read_text())
    match = SUMMARY.search(result.stderr.decode())
    assert match, result.stderr
    read, applied, dups, rejected, late = (int(g.replace(",", "")) for g in match.groups())
    events = by_labels(samples, "closure_monitor_events_total", "event_type", "outcome")
    outcomes = Counter[str]()
    for (_, outcome), n in events.items():
        outcomes[outcome] += n
    assert sum(outcomes.values()) == read
    assert (outcomes["applied"], outcomes["duplicate"], outcomes["rejected"]) == (
        applied, dups, rejected)
    assert sum(by_labels(samples, "closure_monitor_late_events_total", "event_type").values()
               ) == late
    dead_lines = [json.loads(x) for x in dead.read_bytes().splitlines()]
    assert +by_labels(samples, "closure_monitor_dead_letters_total", "reason") == Counter(
        (d["reason"],) for d in dead_lines)
    decisions = [json.loads(x) for x in result.stdout.splitlines()]
    assert +by_labels(samples, "closure_monitor_decisions_total", "action", "reason") == Counter(
        (d["action"], d["reasons"][0]["code"]) for d in decisions)
    assert not user_ids(log) & set(path.read_text().split('"'))  # no user id in any label


def test_replay_metrics_to_an_unwritable_place_fails_before_the_run(log: Path,
                                                                     tmp_path: Path) -> None:
    result = cli("replay", str(log), "--metrics", str(tmp_path / "missing" / "m.prom"))
    assert result.returncode == 2
    assert b"--metrics" in result.stderr and b"cannot write there" in result.stderr
    assert result.stdout == b""
