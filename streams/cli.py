"""The `closure-monitor` command: parse arguments once, then call the right loop."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

import orjson

from streams.errors import ConfigError, MonitorError
from streams.policy import load_policy
from streams.replay import DEFAULT_LATENESS, replay, summary_lines

if TYPE_CHECKING:
    from streams.metrics import Metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except MonitorError as exc:
        print(f"closure-monitor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # downstream closed the pipe (| head): not an error
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="closure-monitor", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("replay", help="decide over recorded JSONL logs (.gz too; - for stdin)")
    r.add_argument("logs", nargs="+", metavar="LOG")
    _policy_flags(r)
    r.add_argument("--output", "-o", help="decisions JSONL here instead of stdout")
    r.add_argument("--dead-letter", help="rejected lines, with reason and line number, here")
    r.add_argument("--metrics", metavar="FILE",
                   help="the worker's Prometheus metrics after the run, in the text format, "
                        "here (the run then uses one process)")
    _jobs_flag(r)
    _state_cache_flag(r)
    r.set_defaults(run=_replay)

    b = sub.add_parser("backtest", help="a policy against a baseline on the same log")
    b.add_argument("logs", nargs="+", metavar="LOG")
    _policy_flags(b)
    b.add_argument("--baseline", help="baseline policy file (default: the shipped default)")
    b.add_argument("--json", action="store_true", help="machine-readable report")
    _jobs_flag(b)
    _state_cache_flag(b)
    b.set_defaults(run=_backtest)

    g = sub.add_parser("generate", help="a realistic synthetic event log")
    g.add_argument("--output", "-o", default="-", help="file (.gz to compress); - for stdout")
    g.add_argument("--users", type=int, default=10_000)
    g.add_argument("--days", type=int, default=180)
    g.add_argument("--start", default="2026-01-01", help="first day, YYYY-MM-DD")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--malformed-share", type=float, default=0.002)
    g.add_argument("--duplicate-share", type=float, default=0.01)
    g.set_defaults(run=_generate)

    from streams.cli_live import add_commands

    add_commands(sub, _policy_flags, seconds)
    return p


def _policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", default=os.environ.get("CLOSURE_MONITOR_POLICY"),
                   help="policy file (default: the shipped default; env CLOSURE_MONITOR_POLICY)")
    p.add_argument("--lateness", type=seconds, default=DEFAULT_LATENESS,
                   help=f"allowed lateness in seconds of event time (default {DEFAULT_LATENESS:g})")


def default_jobs() -> int:
    """One process per available core, at most 8 (every process decodes every line)."""
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, at least 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds >= 0")
    return value


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _jobs_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=_at_least_one, default=default_jobs(), metavar="N",
                   help="processes to split the users over; the output is the same for any "
                        "N (default: one per core, at most 8; stdin is read by one)")


def _state_cache_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-cache", type=_at_least_one, default=None, metavar="N",
                   help="user states kept decoded in each process, the others as compact "
                        "bytes (about 2 KB a user in all instead of 4.2, at about half the "
                        "speed): for logs of more users than memory holds; the output is "
                        "the same (default: all decoded)")


def _open_out(path: str | None) -> IO[bytes]:
    if path is None or path == "-":
        return sys.stdout.buffer
    try:
        if path.endswith(".gz"):
            import gzip

            return gzip.open(path, "wb")  # type: ignore[return-value]
        return open(path, "wb")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from exc


def _check_logs(paths: Sequence[str]) -> None:
    for path in paths:
        if path != "-" and not os.path.isfile(path):
            raise ConfigError(f"{path}: no such log file")
    if list(paths).count("-") > 1:
        raise ConfigError("stdin (-) can be read once only")


def progress_meter(label: str) -> Callable[[int], None] | None:
    """A one-line progress display on a terminal; nothing when stderr is a file or pipe."""
    if not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def show(n: int) -> None:
        rate = n / max(time.monotonic() - started, 1e-9)
        print(f"\r{label} {n:>12,} lines  {rate:>10,.0f}/s", end="", file=sys.stderr, flush=True)

    return show


def _replay(args: argparse.Namespace) -> int:
    _check_logs(args.logs)
    metrics = _metrics_for(args.metrics)
    policy = load_policy(args.policy)
    out = _open_out(args.output)
    dead = _open_out(args.dead_letter) if args.dead_letter else None
    write = out.write
    started = time.monotonic()
    try:
        tally = replay(policy, args.logs, lateness=args.lateness,
                       on_decision=lambda d: _write(write, d.to_json()),
                       on_reject=(lambda r: _write(dead.write, r.to_json())) if dead else None,
                       progress=progress_meter("replay"), metrics=metrics,
                       jobs=args.jobs, state_cache=args.state_cache)
    finally:
        out.flush()
        if out is not sys.stdout.buffer:
            out.close()
        if dead is not None:
            dead.close()
    elapsed = time.monotonic() - started
    if metrics is not None:
        try:
            metrics.write(args.metrics)
        except OSError as exc:
            raise ConfigError(f"{args.metrics}: cannot write: {exc.strerror}") from exc
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for line in summary_lines(tally):
        print(line, file=sys.stderr)
    print(f"policy {policy.version}; {tally.read / max(elapsed, 1e-9):,.0f} events/s",
          file=sys.stderr)
    return 0


def _metrics_for(path: str | None) -> Metrics | None:
    """A fresh `Metrics` for `--metrics`, once the file is known to be writable."""
    if path is None:
        return None
    from streams.metrics import Metrics

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise ConfigError(f"{path}: cannot write metrics there")
    return Metrics()


def _write(write: Callable[[bytes], object], record: bytes) -> None:
    write(record + b"\n")


def _backtest(args: argparse.Namespace) -> int:
    from streams.backtest import backtest

    _check_logs(args.logs)
    if args.policy is None:
        raise ConfigError("--policy: backtest needs the policy to try")
    policy, baseline = load_policy(args.policy), load_policy(args.baseline)
    report = backtest(policy, baseline, args.logs, lateness=args.lateness,
                      progress=progress_meter("backtest"), jobs=args.jobs,
                      state_cache=args.state_cache)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(report.table())
    return 0


def _generate(args: argparse.Namespace) -> int:
    from streams.generate import generate_log

    if args.users < 1 or args.days < 1:
        raise ConfigError("--users and --days must be at least 1")
    for name in ("malformed_share", "duplicate_share"):
        if not 0 <= getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be in [0, 1)")
    out = _open_out(args.output)
    try:
        summary = generate_log(out, seed=args.seed, users=args.users, days=args.days,
                               start=args.start, malformed_share=args.malformed_share,
                               duplicate_share=args.duplicate_share,
                               progress=progress_meter("generate"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"generated {summary.lines:,} lines: {summary.events:,} events of {summary.users:,} "
          f"users, {summary.duplicates:,} duplicates, {summary.malformed:,} malformed",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
