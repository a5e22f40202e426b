"""Operators' overrides on the real (embedded) broker: `closure-monitor override`
through credit.overrides to the worker, decided in event time as replay decides the
same records, with the operator in the decisions and bad overrides dead-lettered."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from streams.events import format_time
from tests.live.helpers import CLI, Expected, Live, event_time
from tests.live.test_live import run_to_completion

pytestmark = pytest.mark.broker

DAY = 86_400.0




async def test_overrides_live_equal_replay_with_their_audit_trail(
        live: Live, live_log: Path, tmp_path: Path) -> None:
    base = Expected.of(live_log)
    final: dict[str, str] = {}
    for d in sorted(base.decisions.values(), key=lambda d: d["event_time"]):
        final[d["user_id"]] = d["status_after"]
    closed = min(u for u, s in final.items() if s == "closed")
    warned = min(u for u, s in final.items() if s == "warned")
    t0 = max(map(event_time, live_log.read_bytes().splitlines())) + DAY  # after the log

    await live.create_topics()
    worker = live.start_worker()
    await live.wait_web(worker)
    sent = await live.produce_lines(live_log)
    broker = ["--broker", live.broker.url, "--topic-prefix", live.prefix]
    overrides = [
        [closed, "--action", "restore", "--days", "20", "--by", "lead-3",
         "--reason", "appeal 5521 upheld", "--at", format_time(t0)],
        [warned, "--action", "hold", "--days", "10", "--by", "agent-17",
         "--reason", "appeal 5522 under review", "--at", format_time(t0 + 60)],
        [warned, "--action", "release", "--by", "agent-17",
         "--reason", "appeal 5522 withdrawn", "--at", format_time(t0 + 3600)],
        ["u-never-seen", "--action", "restore", "--by", "agent-17",
         "--reason", "typo in the user id", "--at", format_time(t0 + 7200)],
    ]
    records = []
    for args in overrides:
        done = subprocess.run([*CLI, "override", *args, *broker], capture_output=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        records.append(done.stdout.strip())
    # An override the command would refuse, sent as it is: no operator.
    bad = orjson.loads(records[0])
    del bad["operator"]
    bad["event_id"] = "ovr-no-operator"
    records.append(orjson.dumps(bad))
    await live.produce(records[-1:])
    combined = tmp_path / "with-overrides.jsonl"
    combined.write_bytes(live_log.read_bytes().rstrip(b"\n") + b"\n" + b"\n".join(records)
                         + b"\n")
    expected = Expected.of(combined)
    assert expected.rejected["unknown_user"] == 1 and expected.rejected["schema"] > 0
    await run_to_completion(live, expected, sent + len(records))
    assert worker.stop() == 0

    # The audit trail: each override's decisions name it and its operator.
    ids = [orjson.loads(r)["event_id"] for r in records[:3]]
    by_trigger: dict[str, list[dict]] = {}
    for d in expected.decisions.values():
        by_trigger.setdefault(d["trigger_event_id"], []).append(d)
    restore, hold = sorted(by_trigger[ids[0]], key=lambda d: d["action"] != "restore")[:2]
    assert (restore["action"], restore["status_before"], restore["operator"]) == (
        "restore", "closed", "lead-3")
    assert restore["reasons"][0]["code"] == "OVERRIDE"
    assert hold["action"] == "hold" and hold["reasons"][0]["code"] == "APPEAL_HOLD"
    assert [d["action"] for d in by_trigger[ids[1]]][:1] == ["hold"]
    assert by_trigger[ids[2]][0]["action"] == "release"
    assert all(d["operator"] == "agent-17" for d in by_trigger[ids[1]] + by_trigger[ids[2]]
               if d["action"] in ("hold", "release"))
