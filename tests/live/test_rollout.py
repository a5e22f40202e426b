"""A policy rolled out live (`closure-monitor rollout`) on the real (embedded) broker:
every partition of two workers switches at the record's event time, as a replay given
the same policy history does; a record whose policy fails validation is refused,
dead-lettered and counted, and the policy in force stays."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams import rollout
from streams.events import format_time
from streams.policy import load_policy
from tests.helpers import stricter_policy
from tests.live.helpers import CLI, Expected, Live, event_time
from tests.live.test_live import run_to_completion, scrape

pytestmark = pytest.mark.broker


def metric(port: int, name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for family in scrape(port)
            for s in family.samples if s.name == name}


async def test_every_worker_switches_at_one_event_time_as_replay_does(
        live: Live, live_log: Path, tmp_path: Path) -> None:
    lines = [line for line in live_log.read_bytes().splitlines() if line.strip()]
    times = sorted(t for t in map(event_time, lines) if t != float("-inf"))
    switch_at = times[len(times) // 2]
    # Events before the switch time first (and the lines that decode to nothing), then
    # the policy record, then the rest: the record reaches every partition ahead of
    # the events it governs.
    before = [x for x in lines if event_time(x) < switch_at]
    after = [x for x in lines if event_time(x) >= switch_at]
    policy_file = stricter_policy(tmp_path)
    new_version = load_policy(policy_file).version

    await live.create_topics()
    workers = [live.start_worker(), live.start_worker()]
    for worker in workers:
        await live.wait_web(worker)
    sent = (await live.produce(before)).sent
    done = subprocess.run([*CLI, "rollout", str(policy_file), "--at", format_time(switch_at),
                           "--by", "risk-7", "--broker", live.broker.url,
                           "--topic-prefix", live.prefix], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = done.stdout.strip()
    assert b"4 partitions" in done.stderr
    # A record no worker may apply: its policy fails validation.
    bad = orjson.loads(record)
    bad["policy_id"], bad["policy"]["rules"]["OVERDUE"]["tiers"][0]["threshold"] = "bad-1", -5
    producer = AIOKafkaProducer(bootstrap_servers=live.broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(live.topics.policies, orjson.dumps(bad), key=b"policy",
                                     partition=0)
    finally:
        await producer.stop()
    sent += (await live.produce(after)).sent

    history = tmp_path / "policies.jsonl"
    history.write_bytes(record + b"\n" + orjson.dumps(bad) + b"\n")
    switches, refused = rollout.history(history.read_bytes().splitlines())
    assert [r.policy_id for r in switches] == [f"{new_version}@{format_time(switch_at)}"]
    assert refused and "threshold" in refused[0][1]
    expected = Expected.of(live_log, schedule=[(r.effective_at, r.policy_id, r.policy)
                                               for r in switches])
    expected.rejected["policy_refused"] += 1  # the bad record's dead letter
    assert {d["policy_version"] for d in expected.decisions.values()} == {
        "2026.11-default", new_version}
    await run_to_completion(live, expected, sent)

    # Every worker runs the new policy; between them they accepted one copy per
    # partition and refused the bad one.
    for worker in workers:
        assert metric(worker.web_port, "closure_monitor_policy_info") == {(new_version,): 1}
    records = [metric(w.web_port, "closure_monitor_policy_records_total") for w in workers]
    assert sum(r[("accepted",)] for r in records) == live.partitions
    assert sum(r[("refused",)] for r in records) == 1
    logs = "".join(w.output() for w in workers)
    assert "policy record refused" in logs
    for worker in workers:
        assert worker.stop() == 0


def with_regions(lines: list[bytes]) -> list[bytes]:
    """The log's events, each carrying its user's region: odd user numbers "north",
    even ones "south" (lines that are not events are kept as they are)."""
    out = []
    for line in lines:
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.append(line)
            continue
        uid = d.get("user_id") if isinstance(d, dict) else None
        if isinstance(uid, str) and uid[-1:].isdigit():
            d["region"] = "north" if int(uid[-1]) % 2 else "south"
            out.append(orjson.dumps(d))
        else:
            out.append(line)
    return out


async def test_a_policy_for_one_region_switches_only_its_users(
        live: Live, live_log: Path, tmp_path: Path) -> None:
    lines = with_regions([x for x in live_log.read_bytes().splitlines() if x.strip()])
    log = tmp_path / "regions.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    times = sorted(t for t in map(event_time, lines) if t != float("-inf"))
    switch_at = times[len(times) // 3]

    policy_file = stricter_policy(tmp_path)
    await live.create_topics()
    worker = live.start_worker()
    await live.wait_web(worker)
    sent = (await live.produce([x for x in lines if event_time(x) < switch_at])).sent
    done = subprocess.run([*CLI, "rollout", str(policy_file), "--at", format_time(switch_at),
                           "--region", "north", "--by", "risk-7", "--broker", live.broker.url,
                           "--topic-prefix", live.prefix], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sent += (await live.produce([x for x in lines if event_time(x) >= switch_at])).sent
    [switch], _ = rollout.history([done.stdout.strip()])
    assert switch.region == "north"
    expected = Expected.of(log, schedule=[(switch.effective_at, switch.policy_id,
                                           switch.policy, switch.region)])
    # Only the north's users are decided under "strict", from the switch on.
    by_version: dict[str, set[str]] = {}
    for d in expected.decisions.values():
        by_version.setdefault(d["policy_version"], set()).add(d["user_id"][-1])
    assert by_version["strict"] <= set("13579") and by_version["strict"]
    assert set("02468") <= by_version["2026.11-default"]
    await run_to_completion(live, expected, sent)
    assert metric(worker.web_port, "closure_monitor_policy_info") == {
        ("2026.11-default",): 1, ("strict",): 1}
    assert worker.stop() == 0
