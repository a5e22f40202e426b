"""Replay throughput benchmark: the orjson parse-only floor vs the full replay.

Usage: .venv/bin/python bench/replay.py [--events-users 100000] [--runs 3] [--days 180]
                                        [--jobs N]

Generates (or reuses) bench/data/replay-<N>k.jsonl with
`streams.generate.generate_log(out, seed=7, users=N, days=180)`, then times, each
`--runs` times and each in a fresh subprocess (so peak memory is per run):

  (a) floor:  read the file line by line and `orjson.loads` every line;
  (b) replay: `streams.replay.compiled([load_policy()], [path], ...)`, the compiled
      engine's whole loop (read, decode, reorder, decide) as `closure-monitor replay`
      runs it, one thread; events/s are by the tally's `read`;
  (c) the same with `jobs=N` (`replay --jobs`: threads over one decode; default: the
      command's own default, one per core, at most 8), whose speed-up over (b) is
      measured in the same run;
  (d) the bytes of state per user: held (the RSS growth of one compiled partition
      over the log, divided by its users; an upper bound: the lines and the buffer
      count too) and stored (the table's JSON).

Prints the machine, the medians, the replay/floor ratios, the decisions count and
the peak RSS (ru_maxrss) of the replay subprocess. Target: one thread at >= 0.5 of
the floor of its own run (goal: 1.0, the whole job faster than Python parses the
lines); --jobs 2 >= 1.7 times one thread; <= 300 bytes of state held per user.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
TARGET, GOAL = 0.5, 1.0  # one thread's events/s against the floor of its own run
SPEED_UP = 1.7  # --jobs 2 against one thread, same run
HELD = 300  # bytes of state held per user

# Each child prints one JSON object on its last stdout line.
FLOOR_CHILD = r"""
import json, resource, sys, time
import orjson
path = sys.argv[1]
loads = orjson.loads
n = bad = 0
t0 = time.perf_counter()
with open(path, "rb") as f:
    for line in f:
        n += 1
        try:
            loads(line)
        except orjson.JSONDecodeError:
            bad += 1
elapsed = time.perf_counter() - t0
print(json.dumps({"events": n, "bad": bad, "seconds": elapsed,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

GENERATE_CHILD = r"""
import json, sys
from streams.generate import generate_log
with open(sys.argv[1], "wb") as out:
    s = generate_log(out, seed=7, users=int(sys.argv[2]), days=int(sys.argv[3]))
print(json.dumps({"lines": s.lines, "events": s.events, "duplicates": s.duplicates,
                  "malformed": s.malformed}))
"""

REPLAY_CHILD = r"""
import json, resource, sys, time
from streams.policy import load_policy
from streams.replay import compiled
path, jobs = sys.argv[1], int(sys.argv[2])
policy = load_policy()
count = 0
def on_decisions(batch):
    global count
    count += len(batch)
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
tally = compiled([policy], [path], on_decisions=[on_decisions], jobs=jobs)[0]
elapsed = time.perf_counter() - t0
print(json.dumps({"events": tally.read, "seconds": elapsed, "decisions": count,
                  "applied": sum(tally.applied.values()),
                  "duplicates": sum(tally.duplicates.values()),
                  "rejected": sum(tally.rejected.values()),
                  "late": sum(tally.late.values()),
                  "rss_before_kb": rss_before,
                  "vmhwm_kb": int(next(l.split()[1] for l in open("/proc/self/status")
                                       if l.startswith("VmHWM:"))),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

# Bytes per user of state, held and stored: one partition of the compiled engine over
# the log (no Python loop around it but the offer), its memory before and after; the
# stored form is what the worker's table keeps per user (the JSON `state.dump` writes).
STATE_CHILD = r"""
import json, sys
from streams import _engine
from streams.policy import load_policy
path = sys.argv[1]
def rss_kb():
    return int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmRSS:")))
part = _engine.Partition(_engine.Policy(load_policy().engine_json()), 600.0,
                        track_dirty=False)
part.add_input(0)
lines = open(path, "rb").read().split(b"\n")
before = rss_kb()
for n, raw in enumerate(lines):
    if raw.strip():
        part.offer(0, raw, n)
    if n % 4096 == 0:  # decisions and handles out, as a caller takes them
        part.take_decisions()
        part.take_handles()
part.remove_input(0)
part.take_decisions()
part.take_handles()
held = rss_kb() - before
users = len(part)
stored = sum(len(raw) for _, raw in part.states())
print(json.dumps({"users": users, "held_kb": held, "stored_bytes": stored}))
"""


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count() or "?"),
            "affinity": str(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity")
            else "?",
            "cpu": model,
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform()}


def ensure_log(users: int, days: int) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    name = f"replay-{users // 1000}k.jsonl" if users % 1000 == 0 else f"replay-{users}.jsonl"
    if days != 180:
        name = name.replace(".jsonl", f"-{days}d.jsonl")
    path = DATA / name
    if path.exists() and path.stat().st_size > 0:
        print(f"reusing {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)
        return path
    tmp = path.with_suffix(".jsonl.tmp")
    print(f"generating {path} (users={users:,}, days={days}, seed=7) ...", flush=True)
    t0 = time.perf_counter()
    # In a subprocess: Linux carries ru_maxrss across fork+exec, so a parent bloated
    # by the generator would raise every later child's reported peak.
    s = run_child(GENERATE_CHILD, tmp, str(users), str(days))
    tmp.replace(path)
    print(f"  {s['lines']:,} lines ({s['events']:,} events, {s['duplicates']:,} duplicates, "
          f"{s['malformed']:,} malformed) in {time.perf_counter() - t0:.1f} s", flush=True)
    return path


def run_child(code: str, path: Path, *extra: str) -> dict[str, float]:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    proc = subprocess.run([sys.executable, "-c", code, str(path), *extra], capture_output=True,
                          text=True, env=env, cwd=str(HERE.parent), check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"benchmark child failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(HERE.parent))
    from streams.cli import default_jobs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events-users", type=int, default=100_000,
                    help="users in the generated log (default 100000, ~1M events)")
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=default_jobs(),
                    help="threads for the --jobs replay (default: replay's default)")
    args = ap.parse_args(argv)

    m = machine()
    print(f"machine: nproc {m['nproc']} (affinity {m['affinity']}), cpu {m['cpu']}, "
          f"{m['python']}, {m['platform']}", flush=True)
    path = ensure_log(args.events_users, args.days)

    floors: list[dict[str, float]] = []
    singles: list[dict[str, float]] = []
    multis: list[dict[str, float]] = []
    for r in range(1, args.runs + 1):
        f = run_child(FLOOR_CHILD, path)
        floors.append(f)
        print(f"run {r}: floor      {f['events'] / f['seconds']:>10,.0f} ev/s "
              f"({f['events']:,} lines in {f['seconds']:.2f} s)", flush=True)
        for jobs, runs in ((1, singles), (args.jobs, multis)):
            x = run_child(REPLAY_CHILD, path, str(jobs))
            runs.append(x)
            print(f"run {r}: replay -j {jobs} {x['events'] / x['seconds']:>10,.0f} ev/s "
                  f"({x['events']:,} read in {x['seconds']:.2f} s, "
                  f"peak RSS {x['maxrss_kb'] / 1024:,.0f} MiB)", flush=True)

    def rate(xs: list[dict[str, float]]) -> float:
        return statistics.median(x["events"] / x["seconds"] for x in xs)

    floor_rate, single_rate, multi_rate = rate(floors), rate(singles), rate(multis)
    speedups = [s["seconds"] / x["seconds"] for s, x in zip(singles, multis, strict=True)]
    # Each replay against the floor of its own run (the two ran back to back): on a
    # shared machine, a pair moves together where the medians of each may not.
    paired = [f["seconds"] / s["seconds"] for f, s in zip(floors, singles, strict=True)]
    peak = statistics.median(x["maxrss_kb"] for x in singles) / 1024
    peak_max = max(x["maxrss_kb"] for x in singles) / 1024
    floor_peak = statistics.median(f["maxrss_kb"] for f in floors) / 1024
    base = statistics.median(x["rss_before_kb"] for x in singles) / 1024
    hwm = statistics.median(x["vmhwm_kb"] for x in singles) / 1024
    multi_parent = statistics.median(x["maxrss_kb"] for x in multis) / 1024
    last = singles[-1]
    st = run_child(STATE_CHILD, path)
    held_per_user = st["held_kb"] * 1024 / max(st["users"], 1)
    stored_per_user = st["stored_bytes"] / max(st["users"], 1)
    decisions = {int(x["decisions"]) for x in singles + multis}
    ratio, speed_up = statistics.median(paired), statistics.median(speedups)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    verdicts = (f"1 thread {ratio:.3f} of the floor (target {TARGET}, goal {GOAL}): "
                f"{'GOAL MET' if ratio >= GOAL else verdict(ratio >= TARGET)}; "
                f"--jobs {args.jobs} {speed_up:.2f}x (target {SPEED_UP}x): "
                f"{verdict(speed_up >= SPEED_UP)}; held {held_per_user:,.0f} B/user "
                f"(target {HELD}): {verdict(held_per_user <= HELD)}")
    rows = [
        ("log", f"{path.name} ({path.stat().st_size / 1e6:,.1f} MB)"),
        ("lines read (tally.read)", f"{int(last['events']):,}"),
        ("  applied / dup / rejected / late",
         f"{int(last['applied']):,} / {int(last['duplicates']):,} / "
         f"{int(last['rejected']):,} / {int(last['late']):,}"),
        ("runs", str(args.runs)),
        ("floor (orjson.loads only)", f"{floor_rate:,.0f} ev/s"),
        ("replay, 1 thread", f"{single_rate:,.0f} ev/s  ({single_rate / floor_rate:.3f} "
                              "of the floor)"),
        ("  of its own run's floor", f"{statistics.median(paired):.3f} (median of per-run "
                                     "ratios: " + ", ".join(f"{x:.3f}" for x in paired) + ")"),
        (f"replay, --jobs {args.jobs}", f"{multi_rate:,.0f} ev/s  ({multi_rate / floor_rate:.3f} "
                                        "of the floor)"),
        (f"speed-up of --jobs {args.jobs}", f"{statistics.median(speedups):.2f}x (median of "
                                            "per-run ratios: "
                                            + ", ".join(f"{x:.2f}" for x in speedups) + ")"),
        ("decisions", ", ".join(f"{d:,}" for d in sorted(decisions))
         + ("" if len(decisions) == 1 else "  (DIFFER BETWEEN RUNS)")),
        ("1 thread peak RSS (median/max)", f"{peak:,.0f} / {peak_max:,.0f} MiB  "
                                            f"(after imports+policy {base:,.0f} MiB)"),
        ("1 thread VmHWM (median)", f"{hwm:,.0f} MiB  (/proc/self/status cross-check)"),
        (f"--jobs {args.jobs} peak RSS", f"{multi_parent:,.0f} MiB"),
        ("floor peak RSS", f"{floor_peak:,.0f} MiB"),
        ("state per user, held / stored", f"{held_per_user:,.0f} / {stored_per_user:,.0f} "
                                          f"bytes ({int(st['users']):,} users; held: the "
                                          "engine's RSS growth over one partition of "
                                          "the log, with the lines read in; stored: the "
                                          "table's JSON)"),
        ("targets", verdicts),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    print(f"{'metric':<{width}} | value")
    print(f"{'-' * width}-+-{'-' * 40}")
    for k, v in rows:
        print(f"{k:<{width}} | {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
