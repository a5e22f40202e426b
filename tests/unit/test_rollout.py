"""Policy records (`streams.rollout`): what a worker accepts, what it refuses and why,
and a recorded history read back for replay."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from streams import rollout
from tests.helpers import ROOT, cli, stricter_policy, usage_error

DEFAULT = yaml.safe_load((ROOT / "deploy/policies/default.yaml").read_text())


def record(**fields: object) -> bytes:
    base = {"policy_id": "p-1", "effective_at": "2026-07-01T00:00:00Z",
            "published_by": "risk-7", "policy": DEFAULT}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def test_a_valid_record_names_its_policy_and_time() -> None:
    r = rollout.parse(record())
    assert (r.policy_id, r.published_by, r.policy.version) == ("p-1", "risk-7",
                                                               "2026.11-default")
    assert r.effective_at == 1_782_864_000.0


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{", "not JSON"),
    (b"[1]", "not a JSON object"),
    (record(policy_id=None), "policy_id: a string of 1 to 128"),
    (record(effective_at="2026-07-01T00:00:00"), "no offset"),
    (record(effective_at="July"), "not an RFC 3339 date-time"),
    (record(published_by=""), "published_by: a string"),
    (record(policy={**DEFAULT, "version": ""}), "policy: version"),
    (record(policy={**DEFAULT, "cooling_off_days": -1}), "policy: cooling_off_days"),
    (record(policy=None), "policy: top level"),
])
def test_refused_records_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(rollout.RefusedPolicy, match=reason):
        rollout.parse(raw)


def test_a_record_without_a_segment_is_unscoped_and_one_with_one_is_its_regions() -> None:
    assert rollout.parse(record()).region is None
    for region in ("north", "é" * 64, "😀" * 64, "a b\t"):
        r = rollout.parse(record(segment={"region": region}))
        assert (r.region, r.policy_id, r.policy.version) == (region, "p-1", "2026.11-default")


@pytest.mark.parametrize(("segment", "reason"), [
    ({}, "segment: region required"),
    ({"region": "north", "country": "cn"}, "segment: unknown key 'country'"),
    ({"Region": "north"}, "segment: unknown key 'Region'"),
    ({"region": ""}, "segment: region: a string of 1 to 64 characters"),
    ({"region": "r" * 65}, "segment: region: a string of 1 to 64"),
    ({"region": "😀" * 65}, "segment: region: a string of 1 to 64"),
    ({"region": None}, "segment: region: a string"),
    ({"region": 7}, "segment: region: a string"),
    ({"region": ["north"]}, "segment: region: a string"),
    ("north", "segment: an object"),
    (["north"], "segment: an object"),
    (False, "segment: an object"),
])
def test_a_bad_segment_is_refused(segment: object, reason: str) -> None:
    with pytest.raises(rollout.RefusedPolicy, match=reason):
        rollout.parse(record(segment=segment))


def test_a_null_segment_is_refused_not_read_as_none() -> None:
    """A record meant for one region must not reach every user: `"segment": null` is
    refused (a record for every user has no segment at all)."""
    raw = orjson.dumps({**orjson.loads(record()), "segment": None})
    with pytest.raises(rollout.RefusedPolicy, match="segment: an object"):
        rollout.parse(raw)


def test_record_writes_a_segment_only_for_a_region() -> None:
    plain = rollout.record(DEFAULT, "p-1", "2026-07-01T00:00:00Z", "risk-7")
    assert "segment" not in orjson.loads(plain)
    assert plain == rollout.record(DEFAULT, "p-1", "2026-07-01T00:00:00Z", "risk-7", None)
    scoped = rollout.record(DEFAULT, "p-1", "2026-07-01T00:00:00Z", "risk-7", region="north")
    assert orjson.loads(scoped)["segment"] == {"region": "north"}
    r = rollout.parse(scoped)
    assert (r.region, r.policy_id, r.effective_at) == ("north", "p-1", 1_782_864_000.0)


def test_a_history_keeps_each_record_once_per_region_unscoped_first() -> None:
    """Records are one per policy_id and region: the same policy_id rolled out to two
    regions, and unscoped, is three switches; in time, then policy_id order, then
    region (unscoped first)."""
    north = record(segment={"region": "north"})
    south = record(segment={"region": "south"})
    later = record(policy_id="p-0", effective_at="2026-08-01T00:00:00Z",
                   segment={"region": "north"})
    lines = [south, later, north, record(), south, north, b"",
             record(segment={"region": ""})]
    kept, refused = rollout.history(lines)
    assert [(r.policy_id, r.region) for r in kept] == [
        ("p-1", None), ("p-1", "north"), ("p-1", "south"), ("p-0", "north")]
    assert refused == [(8, "segment: region: a string of 1 to 64 characters")]


def test_a_history_keeps_each_record_once_in_time_order_and_names_the_refused() -> None:
    later = record(policy_id="p-2", effective_at="2026-08-01T00:00:00Z")
    lines = [later, record(), later, b"", record(policy_id="p-3", policy={"version": 1})]
    kept, refused = rollout.history(lines)
    assert [r.policy_id for r in kept] == ["p-1", "p-2"]
    assert [n for n, _ in refused] == [5]


def test_replay_with_a_policy_history_switches_at_its_time(tmp_path: Path) -> None:
    from streams.generate import generate_log

    log = tmp_path / "log.jsonl"
    with log.open("wb") as out:
        generate_log(out, seed=4, users=300, days=120)
    strict = yaml.safe_load(stricter_policy(tmp_path).read_text())
    history = tmp_path / "policies.jsonl"
    history.write_bytes(record(policy=strict, effective_at="2026-03-01T00:00:00Z") + b"\n"
                        + record(policy_id="bad", policy={"version": ""}) + b"\n")
    done = cli("replay", str(log), "--policy-history", str(history))
    assert done.returncode == 0, done.stderr
    decisions = [orjson.loads(x) for x in done.stdout.splitlines()]
    before = {d["policy_version"] for d in decisions if d["event_time"] < "2026-03-01"}
    after = {d["policy_version"] for d in decisions if d["event_time"] >= "2026-03-01"}
    assert before == {"2026.11-default"} and after == {"strict"}
    stderr = done.stderr.decode()
    assert "line 2: refused: policy: version" in stderr
    assert "policy strict from 2026-03-01T00:00:00Z (p-1, published by risk-7)" in stderr


def test_rollout_refuses_an_invalid_policy_before_reaching_a_broker(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: ''\n")
    done = cli("rollout", str(bad), "--at", "2026-07-01T00:00:00Z", "--by", "risk-7",
               "--broker", "kafka://127.0.0.1:9")
    assert done.returncode == 2
    assert done.stderr.decode().startswith("closure-monitor: policy ")
    usage_error(cli("rollout", str(bad), "--by", "x"), "rollout", "--at")
