"""The `closure-monitor` command: parse arguments once, then call the right loop."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import IO, TYPE_CHECKING

import orjson

from streams.errors import ConfigError, MonitorError
from streams.policy import load_policy
from streams.replay import DEFAULT_LATENESS, compiled, summary_lines

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
    """One per available core, at most 8."""
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
                   help="threads to split the users over; "
                        "the output is the same for any N (default: one per core, at most 8)")


def _state_cache_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-cache", type=_at_least_one, default=None, metavar="N",
                   help="no effect, kept so that earlier command lines run: the engine "
                        "holds every user's state in about 1 KB, less than the 2.1 KB a "
                        "user this bounded cache of the earlier Python engine held")


def _state_cache_notice(args: argparse.Namespace) -> None:
    """`--state-cache` is accepted and ignored: say so once, on stderr."""
    if args.state_cache is not None:
        print("closure-monitor: --state-cache has no effect: the engine holds every "
              "user's state (about 1 KB each)", file=sys.stderr)


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


def _check_logs(paths: Sequence[str], outputs: Sequence[tuple[str, str | None]] = ()) -> None:
    """The logs exist; no output (flag, path) is a log or another output's file,
    which opening it for writing would erase, before anything is opened."""
    for path in paths:
        if path == "-":
            continue
        if os.path.isdir(path):
            raise ConfigError(f"{path}: is a directory, not a log file")
        if not os.path.exists(path):  # a pipe such as <(zcat ...) exists and is read once
            raise ConfigError(f"{path}: no such log file")
    if list(paths).count("-") > 1:
        raise ConfigError("stdin (-) can be read once only")
    named = [(flag, path) for flag, path in outputs if path is not None and path != "-"]
    for n, (flag, path) in enumerate(named):
        for log in paths:
            if log != "-" and _same_file(path, log):
                raise ConfigError(f"{flag} {path}: is the log being read; writing it would "
                                  "erase it")
        for other_flag, other in named[:n]:
            if _same_file(path, other):
                raise ConfigError(f"{flag} {path}: is also {other_flag}'s file")
        if not _writable(path):
            raise ConfigError(f"{flag} {path}: cannot write there")
        if flag == "--metrics" and os.path.exists(path) and not os.path.isfile(path):
            # Written whole, by replacing the file: a device such as /dev/null would go.
            raise ConfigError(f"{flag} {path}: must be a regular file (it is replaced "
                              "whole when written)")


def _writable(path: str) -> bool:
    """Whether `path` can be opened for writing: an existing file (or device, such as
    /dev/null) that is writable, or a new file in a writable folder."""
    if os.path.isdir(path):
        return False
    if os.path.exists(path):
        return os.access(path, os.W_OK)
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.isdir(folder) and os.access(folder, os.W_OK)


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one regular file (existing or not); devices such as
    /dev/null may take any number of writers."""
    try:
        if os.path.samefile(a, b):
            return os.path.isfile(a)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


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
    _check_logs(args.logs, [("--output", args.output), ("--dead-letter", args.dead_letter),
                            ("--metrics", args.metrics)])
    metrics = _metrics_for(args.metrics)
    policy = load_policy(args.policy)
    out = _open_out(args.output)
    dead = _open_out(args.dead_letter) if args.dead_letter else None
    write_all = _writer_of_batches(out, args.output or "stdout")
    put_all = _writer_of_batches(dead, args.dead_letter) if dead is not None else None
    _state_cache_notice(args)
    started = time.monotonic()
    try:
        tally = compiled([policy], args.logs, lateness=args.lateness,
                         on_decisions=[write_all], on_reject=put_all,
                         progress=progress_meter("replay"), jobs=args.jobs,
                         metrics=metrics)[0]
    finally:
        _close(out, args.output or "stdout")
        if dead is not None:
            _close(dead, args.dead_letter)
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
    """A fresh `Metrics` for `--metrics` (`_check_logs` has checked the file's place)."""
    if path is None:
        return None
    from streams.metrics import Metrics

    return Metrics()


@contextmanager
def _writing(name: str) -> Iterator[None]:
    """A failed write to output `name` (a full disk) is one line; a closed pipe
    (| head) is left to `main`, which ends quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise ConfigError(f"{name}: cannot write: {exc.strerror or exc}") from None


def _writer_of_batches(handle: IO[bytes], name: str) -> Callable[[list[bytes]], None]:
    """Records, each with its newline, to `handle`, a batch at a time."""
    write = handle.write

    def put(records: list[bytes]) -> None:
        with _writing(name):
            write(b"\n".join(records) + b"\n")

    return put


def _close(handle: IO[bytes], name: str) -> None:
    """Flush (and close, unless stdout) an output."""
    with _writing(name):
        handle.flush()
        if handle is not sys.stdout.buffer:
            handle.close()


def _backtest(args: argparse.Namespace) -> int:
    from streams.backtest import backtest

    _check_logs(args.logs)
    if args.policy is None:
        raise ConfigError("--policy: backtest needs the policy to try")
    policy, baseline = load_policy(args.policy), load_policy(args.baseline)
    _state_cache_notice(args)
    report = backtest(policy, baseline, args.logs, lateness=args.lateness,
                      progress=progress_meter("backtest"), jobs=args.jobs)
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
    try:
        first = date.fromisoformat(args.start)
    except ValueError as exc:
        raise ConfigError(f"--start {args.start}: not a YYYY-MM-DD date ({exc})") from None
    # Event dates run from 1000 to 8999 (the schemas), loans a year past the last day.
    if not (first.year >= 1000 and first.toordinal() + args.days + 400
            <= date(8999, 12, 31).toordinal()):
        raise ConfigError(f"--start {args.start} with --days {args.days}: the log must stay "
                          "within the years 1000 to 8999")
    _check_logs([], [("--output", args.output)])
    out = _open_out(args.output)
    name = "stdout" if args.output == "-" else args.output
    try:
        with _writing(name):
            summary = generate_log(out, seed=args.seed, users=args.users, days=args.days,
                                   start=args.start, malformed_share=args.malformed_share,
                                   duplicate_share=args.duplicate_share,
                                   progress=progress_meter("generate"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    finally:
        _close(out, name)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"generated {summary.lines:,} lines: {summary.events:,} events of {summary.users:,} "
          f"users, {summary.duplicates:,} duplicates, {summary.malformed:,} malformed",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
