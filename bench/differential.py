"""The engine against the Python engine (the oracle under tests/oracle) on large logs.

Usage: .venv/bin/python bench/differential.py [--users 100000] [--days 180] [--seed 2026]
                                              [--quick]

Generates a log with `generate` (seeded; 100,000 users over 180 days is about
1,070,000 lines, with malformed and duplicated records and operators' overrides,
OVERRIDE_SHARE of the users, some for users that do not exist), then for each check runs
the engine as `closure-monitor replay` does (`streams.replay.compiled`, with
--jobs 1 and 2) and the Python engine's replay over the same files, and compares
byte for byte:
  - the decisions (every JSON line, in order),
  - the dead letters (every field but a `not_json` detail, which is each parser's
    own message),
  - the counts (read, applied, duplicates, late, rejected, decisions),
  - with the default policy, the stored state of every user at the end.

Checks: the default policy and the test suite's other policies, lateness 600 s;
the default policy with lateness 0; the log split into one file per event type
(four inputs merged by event time); and a policy history (test policy 1 rolled
out on day 60, test policy 2 on day 120). --quick runs the first two only.
This is the check to run on a 1,000,000-event log before an engine change is
released (about 10 minutes here); the test suite runs the same comparison on
small logs. Prints one line per check and exits non-zero on any difference.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.events import PolicySwitch
from streams.generate import generate_log
from streams.policy import Policy, load_policy
from streams.replay import compiled
from streams.tally import Tally
from tests.helpers import dead_letter_key, final_states, tally_counts
from tests.oracle.policies import POLICIES
from tests.oracle.replay import replay
from tests.oracle.state import UserState, dump

OVERRIDE_SHARE = 0.01


def digest(lines: Sequence[bytes]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for line in lines:
        h.update(line)
        h.update(b"\n")
    return h.hexdigest()


# A policy history: (day of the log, policy, id). The checks with it run the log with
# the default policy in force first, then each of these from its day on.
History = Sequence[tuple[float, Policy, str]]


def engine_run(policy: Policy, paths: list[str], lateness: float, jobs: int,
               history: History = ()) -> tuple[list[bytes], list[bytes], Tally]:
    decisions: list[bytes] = []
    dead: list[bytes] = []
    [tally] = compiled([policy], paths, lateness=lateness, on_decisions=[decisions.extend],
                       on_reject=dead.extend, jobs=jobs,
                       schedule=[(at, pid, p) for at, p, pid in history])
    return decisions, dead, tally


def oracle_run(policy: Policy, paths: list[str], lateness: float,
               states: dict[str, UserState] | None, history: History = ()
               ) -> tuple[list[bytes], list[bytes], Tally]:
    decisions: list[bytes] = []
    dead: list[bytes] = []
    tally = replay(policy, paths, lateness=lateness,
                   on_decision=lambda d: decisions.append(d.to_json()),
                   on_reject=lambda r: dead.append(r.to_json()), states=states,
                   schedule=[PolicySwitch(at, pid, p) for at, p, pid in history])
    return decisions, dead, tally


def first_difference(a: Sequence[bytes], b: Sequence[bytes]) -> str:
    for n, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"line {n + 1}:\n  engine {x[:300]!r}\n  oracle {y[:300]!r}"
    return f"lengths {len(a):,} against {len(b):,}"


def check(name: str, policy: Policy, paths: list[str], lateness: float,
          with_states: bool, history: History = ()) -> bool:
    started = time.monotonic()
    states: dict[str, UserState] | None = {} if with_states else None
    want, want_dead, want_tally = oracle_run(policy, paths, lateness, states, history)
    oracle_seconds = time.monotonic() - started
    ok = True
    problems: list[str] = []
    for jobs in (1, 2):  # (with a history, the engine runs one thread either way)
        got, got_dead, got_tally = engine_run(policy, paths, lateness, jobs, history)
        if got != want:
            ok = False
            problems.append(f"--jobs {jobs}: decisions differ at {first_difference(got, want)}")
        if [dead_letter_key(d) for d in got_dead] != [dead_letter_key(d) for d in want_dead]:
            ok = False
            problems.append(f"--jobs {jobs}: dead letters differ: "
                            + first_difference(got_dead, want_dead))
        if tally_counts(got_tally) != tally_counts(want_tally):
            ok = False
            problems.append(f"--jobs {jobs}: counts differ: {tally_counts(got_tally)} against "
                            f"{tally_counts(want_tally)}")
    users = ""
    if states is not None:
        ours = sorted(final_states(paths[0], policy, lateness).items())
        theirs = sorted((uid.encode(), dump(s)) for uid, s in states.items())
        users = f", {len(theirs):,} users' stored states"
        if ours != theirs:
            ok = False
            problems.append("stored states differ: "
                            + first_difference([b"%s %s" % kv for kv in ours],
                                               [b"%s %s" % kv for kv in theirs]))
    print(f"{'same' if ok else 'DIFFERENT'}: {name}: {want_tally.read:,} lines, "
          f"{len(want):,} decisions (digest {digest(want)}), {len(want_dead):,} dead "
          f"letters{users}; oracle {oracle_seconds:.0f} s", flush=True)
    for p in problems:
        print(f"  {p}", flush=True)
    return ok


def split_by_type(path: Path, folder: Path) -> list[str]:
    """One file per event type (unknown and broken lines with the repayments)."""
    names = ("repayment", "application", "credit_report", "override")
    outs = {n: (folder / f"{n}.jsonl").open("wb") for n in names}
    try:
        with path.open("rb") as f:
            for line in f:
                kind = next((n for n in names if b'"%s"' % n.encode() in line), names[0])
                outs[kind].write(line)
    finally:
        for out in outs.values():
            out.close()
    return [str(folder / f"{n}.jsonl") for n in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--quick", action="store_true", help="the first two checks only")
    args = ap.parse_args(argv)
    print(f"machine: {os.cpu_count()} cpus, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}", flush=True)
    default = load_policy()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log.jsonl"
        with log.open("wb") as out:
            s = generate_log(out, seed=args.seed, users=args.users, days=args.days,
                             override_share=OVERRIDE_SHARE)
        print(f"log: seed {args.seed}, {args.users:,} users, {args.days} days: "
              f"{s.lines:,} lines ({s.malformed:,} malformed, {s.duplicates:,} duplicated, "
              f"{s.by_type['override']:,} overrides)",
              flush=True)
        checks: list[tuple[str, Policy, list[str], float, bool]] = [
            ("default policy, lateness 600 s", default, [str(log)], 600.0, True),
            ("default policy, lateness 0", default, [str(log)], 0.0, False),
        ]
        if not args.quick:
            checks += [(f"test policy {n}, lateness 600 s", p, [str(log)], 600.0, False)
                       for n, p in enumerate(POLICIES[1:], 1)]
            folder = Path(tmp) / "split"
            folder.mkdir()
            checks.append(("default policy, one file per event type, lateness 600 s",
                           default, split_by_type(log, folder), 600.0, False))
        results = [check(*c) for c in checks]
        if not args.quick:
            # Rolled out mid-log: test policy 1 from day 60, test policy 2 from day 120.
            start = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
            history = [(start + 60 * 86_400.0, POLICIES[1], "p-60"),
                       (start + 120 * 86_400.0, POLICIES[2], "p-120")]
            results.append(check("default policy, then test policy 1 from day 60 and test "
                                 "policy 2 from day 120, lateness 600 s", default, [str(log)],
                                 600.0, False, history))
    failed = results.count(False)
    print(f"{len(results) - failed} of {len(results)} checks the same byte for byte")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
