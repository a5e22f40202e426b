"""Replay over several threads (`--jobs`) gives what one gives, and what the Python
engine (the oracle, tests/oracle) gives, byte for byte: on logs shuffled far beyond
any lateness and dealt over several files, under several policies at once."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.generate import generate_log
from streams.policy import Policy, load_policy
from streams.replay import compiled
from tests.helpers import cli, dead_letter_key, stricter_policy, tally_counts
from tests.oracle.replay import replay

POLICY = load_policy()

Run = tuple[list[bytes], list[bytes], dict[str, Any]]


def _run(paths: list[str], jobs: int, lateness: float = 600.0,
         policies: tuple[Policy, ...] = (POLICY,)) -> list[Run]:
    """The engine's decisions, dead letters and counts, per policy."""
    decisions: list[list[bytes]] = [[] for _ in policies]
    dead: list[bytes] = []
    tallies = compiled(list(policies), paths, lateness=lateness,
                       on_decisions=[out.extend for out in decisions], on_reject=dead.extend,
                       jobs=jobs)
    return [(out, [dead_letter_key(d) for d in dead], tally_counts(t))
            for out, t in zip(decisions, tallies, strict=True)]


def _oracle(paths: list[str], lateness: float = 600.0, policy: Policy = POLICY) -> Run:
    decisions: list[bytes] = []
    dead: list[bytes] = []
    tally = replay(policy, paths, lateness=lateness,
                   on_decision=lambda d: decisions.append(d.to_json()),
                   on_reject=lambda r: dead.append(dead_letter_key(r.to_json())))
    return decisions, dead, tally_counts(tally)


def _disordered_logs(tmp: Path, seed: int, files: int, shuffle: int) -> list[str]:
    """A generated log with overrides (some of users that do not exist), locally
    shuffled (records up to `shuffle` lines out of place, far beyond any lateness),
    dealt at random over `files` files."""
    buf = io.BytesIO()
    generate_log(buf, seed=seed, users=50, days=150, malformed_share=0.02,
                 duplicate_share=0.03, override_share=0.05)
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
@given(seed=st.integers(0, 10_000), files=st.integers(1, 3), jobs=st.integers(1, 4),
       shuffle=st.sampled_from([0, 40, 400]),
       lateness=st.sampled_from([0.0, 600.0, 3 * 86_400.0]))
def test_any_number_of_threads_gives_the_oracles_output(tmp_path: Path, seed: int, files: int,
                                                        jobs: int, shuffle: int,
                                                        lateness: float) -> None:
    paths = _disordered_logs(tmp_path, seed, files, shuffle)
    [ours] = _run(paths, jobs, lateness)
    assert ours == _oracle(paths, lateness)  # the decisions, dead letters, counts, in order
    assert ours[0] and ours[1]


def test_late_and_out_of_order_records_still_merge_in_one_order(tmp_path: Path) -> None:
    """Records far out of order across three files with no lateness allowed: many are
    late, deadlines fire between them, and the merged order is still one thread's."""
    paths = _disordered_logs(tmp_path, 11, 3, 400)
    want = _oracle(paths, 0.0)
    late = want[2]["late"]
    assert sum(late.values()) > 100 and len(want[0]) > 50 and want[1]
    for jobs in (1, 2, 3):
        assert _run(paths, jobs, 0.0) == [want]


@pytest.mark.parametrize("jobs", [1, 2])
def test_one_pass_under_two_policies_decides_as_each_replay(tmp_path: Path, jobs: int) -> None:
    """backtest's pass: each line decoded once, fed to one partition per policy; each
    policy's decisions and tally are those of its own replay, rejections come once."""
    paths = _disordered_logs(tmp_path, 5, 2, 40)
    policies = (load_policy(str(stricter_policy(tmp_path))), POLICY)
    alone = [_oracle(paths, policy=policy) for policy in policies]
    assert alone[0][0] != alone[1][0]  # the policies disagree somewhere
    assert _run(paths, jobs, policies=policies) == alone and alone[0][1]


def test_a_failing_consumer_stops_the_threads(tmp_path: Path) -> None:
    paths = _disordered_logs(tmp_path, 6, 1, 0)

    def full(_: object) -> None:
        raise OSError("disk full")

    for jobs in (1, 3):
        with pytest.raises(OSError, match="disk full"):
            compiled([POLICY], paths, on_decisions=[full], jobs=jobs)


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
