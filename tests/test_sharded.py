"""Replay over several processes (`--jobs`) gives what one process gives, byte for byte."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine import Partition
from streams.errors import MonitorError
from streams.generate import generate_log
from streams.policy import load_policy
from streams.replay import replay, replay_each, shard_of
from streams.tally import Tally
from tests.test_replay import cli, stricter_policy

POLICY = load_policy()


def _run(paths: list[str], jobs: int, lateness: float, **kw: Any
         ) -> tuple[list[bytes], list[bytes], Tally, list[bytes]]:
    """Decisions, rejected lines, the tally, and both callbacks' calls in their order."""
    decisions: list[bytes] = []
    rejected: list[bytes] = []
    calls: list[bytes] = []

    def on_decision(d: Any) -> None:
        decisions.append(d.to_json())
        calls.append(b"d" + decisions[-1])

    def on_reject(r: Any) -> None:
        rejected.append(r.to_json())
        calls.append(b"r" + rejected[-1])

    tally = replay(POLICY, paths, lateness=lateness, jobs=jobs, on_decision=on_decision,
                   on_reject=on_reject, **kw)
    return decisions, rejected, tally, calls


def _counts(t: Tally) -> tuple[Any, ...]:
    return (t.read, t.applied, t.duplicates, t.late, t.rejected, t.decisions, t.rejected_types)


def _disordered_logs(tmp: Path, seed: int, files: int, shuffle: int) -> list[str]:
    """A generated log, locally shuffled (records up to `shuffle` lines out of place,
    far beyond any lateness), dealt at random over `files` files."""
    buf = io.BytesIO()
    generate_log(buf, seed=seed, users=50, days=150, malformed_share=0.02,
                 duplicate_share=0.03)
    lines = buf.getvalue().splitlines()
    rng = random.Random(seed)
    keyed = sorted(range(len(lines)), key=lambda i: i + rng.uniform(0, shuffle))
    outs: list[list[bytes]] = [[] for _ in range(files)]
    for i in keyed:
        outs[rng.randrange(files)].append(lines[i])
    paths = []
    for n, chunk in enumerate(outs):
        path = tmp / f"log-{seed}-{files}-{shuffle}-{n}.jsonl"
        path.write_bytes(b"\n".join(chunk) + b"\n")
        paths.append(str(path))
    return paths


@settings(max_examples=20, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), files=st.integers(1, 3), jobs=st.integers(2, 4),
       shuffle=st.sampled_from([0, 40, 400]),
       lateness=st.sampled_from([0.0, 600.0, 3 * 86_400.0]))
def test_any_number_of_processes_gives_the_same_output(tmp_path: Path, seed: int, files: int,
                                                       jobs: int, shuffle: int,
                                                       lateness: float) -> None:
    paths = _disordered_logs(tmp_path, seed, files, shuffle)
    one = _run(paths, 1, lateness)
    many = _run(paths, jobs, lateness)
    assert many[0] == one[0]  # the same decisions in the same order
    assert many[1] == one[1]  # the same rejected lines in the same order
    assert many[3] == one[3]  # and each rejected line between the same decisions
    assert _counts(many[2]) == _counts(one[2])
    assert many[2].accounted == many[2].read


def test_late_and_out_of_order_records_still_merge_in_one_order(tmp_path: Path) -> None:
    """Records far out of order across three files with no lateness allowed: many are
    late, deadlines fire between them, and the merged order is still one process's."""
    paths = _disordered_logs(tmp_path, 11, 3, 400)
    one = _run(paths, 1, 0.0)
    assert sum(one[2].late.values()) > 100 and len(one[0]) > 50 and one[1]
    for jobs in (2, 3):
        many = _run(paths, jobs, 0.0)
        assert (many[0], many[1], _counts(many[2])) == (one[0], one[1], _counts(one[2]))
        assert many[3] == one[3]


@pytest.mark.parametrize("jobs", [1, 2])
def test_one_pass_under_two_policies_decides_as_each_replay(tmp_path: Path, jobs: int) -> None:
    """backtest's pass: each line decoded once, fed to one partition per policy; each
    policy's decisions and tally are those of its own replay, rejections come once."""
    paths = _disordered_logs(tmp_path, 5, 2, 40)
    policies = [load_policy(str(stricter_policy(tmp_path))), POLICY]
    alone = []
    for policy in policies:
        decisions: list[bytes] = []
        rejected: list[bytes] = []
        tally = replay(policy, paths, on_decision=lambda d, out=decisions: out.append(d.to_json()),
                       on_reject=lambda r, out=rejected: out.append(r.to_json()))
        alone.append((decisions, rejected, _counts(tally)))
    assert alone[0][0] != alone[1][0]  # the policies disagree somewhere
    both: list[list[bytes]] = [[], []]
    rejected_once: list[bytes] = []
    tallies = replay_each(policies, paths, jobs=jobs,
                          on_decisions=[lambda d: both[0].append(d.to_json()),
                                        lambda d: both[1].append(d.to_json())],
                          on_reject=lambda r: rejected_once.append(r.to_json()))
    for i in range(2):
        assert (both[i], _counts(tallies[i])) == (alone[i][0], alone[i][2])
    assert rejected_once == alone[0][1] and rejected_once


def test_every_process_owns_some_users() -> None:
    users = [f"u{n:06d}" for n in range(2_000)]
    for n in (2, 3, 8):
        owned = [sum(1 for u in users if shard_of(u, n) == k) for k in range(n)]
        assert min(owned) > len(users) / n * 0.8, owned


def _on_users(monkeypatch: pytest.MonkeyPatch, suffix: str, act: Callable[[str], None]) -> None:
    """Make applying an event of a user whose id ends with `suffix` call `act(user_id)`
    first (the forked processes inherit the patch)."""
    apply = Partition.apply

    def patched(self: Partition[Any], event: Any) -> None:
        if event.user_id.endswith(suffix):
            act(event.user_id)
        apply(self, event)

    monkeypatch.setattr(Partition, "apply", patched)


def test_a_failing_process_fails_the_run_and_leaves_none_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _disordered_logs(tmp_path, 5, 1, 0)

    def fail(user_id: str) -> None:
        raise ValueError("cannot apply " + user_id)

    _on_users(monkeypatch, "7", fail)
    with pytest.raises(RuntimeError, match="ValueError: cannot apply u"):
        _run(paths, 2, 600.0)
    assert not multiprocessing.active_children()


def test_a_killed_process_ends_the_run_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _disordered_logs(tmp_path, 8, 1, 0)
    # as the kernel's OOM killer would
    _on_users(monkeypatch, "3", lambda _: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(MonitorError, match=r"ended early \(killed by signal 9; out of memory"):
        _run(paths, 2, 600.0)
    assert not multiprocessing.active_children()


def test_a_failing_consumer_stops_the_processes(tmp_path: Path) -> None:
    paths = _disordered_logs(tmp_path, 6, 1, 0)

    def full(_: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replay(POLICY, paths, jobs=3, on_decision=full)
    assert not multiprocessing.active_children()


def test_replay_and_backtest_commands_take_jobs(tmp_path: Path) -> None:
    paths = _disordered_logs(tmp_path, 9, 2, 40)
    outputs = []
    for jobs in ("1", "2"):
        dead = tmp_path / f"dead-{jobs}.jsonl"
        result = cli("replay", *paths, "--jobs", jobs, "--dead-letter", str(dead))
        assert result.returncode == 0, result.stderr
        outputs.append((result.stdout, dead.read_bytes(), result.stderr.splitlines()[:-1]))
    assert outputs[0] == outputs[1] and outputs[0][0] and outputs[0][1]
    reports = []
    for jobs in ("1", "3"):
        result = cli("backtest", *paths, "--policy", "deploy/policies/default.yaml", "--json",
                     "-j", jobs)
        assert result.returncode == 0, result.stderr
        reports.append(json.loads(result.stdout))
    assert reports[0] == reports[1] and reports[0]["events_read"] > 0
    bad = cli("replay", *paths, "--jobs", "0")
    assert bad.returncode == 2 and b"--jobs" in bad.stderr


def test_replay_and_backtest_commands_accept_a_state_cache_and_say_it_does_nothing(
        tmp_path: Path) -> None:
    """Earlier command lines with `--state-cache` still run, with the same output, and
    are told once that the option no longer bounds anything."""
    paths = _disordered_logs(tmp_path, 11, 1, 10)
    runs = [cli("replay", *paths, *flags) for flags in ([], ["--state-cache", "2", "-j", "2"])]
    assert all(r.returncode == 0 for r in runs) and runs[0].stdout
    assert runs[0].stdout == runs[1].stdout
    assert b"--state-cache" not in runs[0].stderr
    assert runs[1].stderr.count(b"--state-cache has no effect") == 1
    reports = [json.loads(cli("backtest", *paths, "--policy", "deploy/policies/default.yaml",
                              "--json", *flags).stdout)
               for flags in ([], ["--state-cache", "1"])]
    assert reports[0] == reports[1]
    bad = cli("replay", *paths, "--state-cache", "0")
    assert bad.returncode == 2 and b"--state-cache" in bad.stderr
