"""The `closure-monitor` command: parse arguments once, then call the right loop.

What its help says is in `streams.cli_help`; the commands that talk to Kafka are in
`streams.cli_live`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import IO, TYPE_CHECKING, Any

import orjson

from streams.cli_help import ALL_REJECTED, NO_SUCH_USER, add_command, top_parser
from streams.errors import ConfigError, MonitorError, UsageError
from streams.events import format_time
from streams.policy import load_policy
from streams.replay import DEFAULT_LATENESS, compiled, summary_lines

if TYPE_CHECKING:
    from streams.metrics import Metrics
    from streams.tally import Tally


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UsageError as exc:
        args.usage_error(str(exc))  # the command's usage, then the message; exits 2
        raise  # not reached
    except MonitorError as exc:
        print(f"closure-monitor: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # downstream closed the pipe (| head): not an error
        return 0


def _parser() -> argparse.ArgumentParser:
    p, sub = top_parser()

    r = add_command(sub, "replay")
    _logs_argument(r)
    _policy_flags(r)
    r.add_argument("--output", "-o", metavar="FILE",
                   help="write the decisions to FILE, gzipped if it ends in .gz "
                        "(default: stdout)")
    r.add_argument("--dead-letter", metavar="FILE",
                   help="write every rejected line here, with its reason, source and line "
                        "number (default: not kept)")
    r.add_argument("--metrics", metavar="FILE",
                   help="write the worker's Prometheus metrics after the run here, in the "
                        "text format; the run then uses one process (default: not written)")
    r.add_argument("--policy-history", metavar="FILE",
                   help="the policy records rolled out live (closure-monitor record --topic "
                        "credit.policies): each switches the policy at its event time, as "
                        "in the workers; the run then uses one thread (default: --policy "
                        "throughout)")
    _jobs_flag(r)
    _state_cache_flag(r)
    r.set_defaults(run=_replay)

    b = add_command(sub, "backtest")
    _logs_argument(b)
    _policy_flags(b, policy_help="the policy under test, a YAML file (required; env "
                                 "CLOSURE_MONITOR_POLICY may name it instead)")
    b.needed += [a for a in b._actions if a.dest == "policy"]
    b.add_argument("--baseline", metavar="FILE",
                   help="the policy to compare with, a YAML file (default: the shipped "
                        "default policy)")
    b.add_argument("--json", action="store_true",
                   help="print the report as JSON instead of a table")
    b.add_argument("--report", metavar="DIR",
                   help="also write DIR/index.html, a page of plots and tables that opens "
                        "from disk with no network, and DIR/report.json, what --json prints "
                        "(default: not written)")
    _jobs_flag(b)
    _state_cache_flag(b)
    b.set_defaults(run=_backtest)

    e = add_command(sub, "explain")
    e.add_argument("user", metavar="USER", help="the user id, as events carry it")
    e.add_argument("logs", nargs="*", metavar="LOG",
                   help="recorded event logs to replay (JSONL, gzipped or not; - reads "
                        "stdin); none with --worker")
    _policy_flags(e)
    e.add_argument("--worker", metavar="URL",
                   help="ask a running worker instead of replaying logs: its web address, "
                        "such as http://127.0.0.1:6066 (default: not used)")
    e.add_argument("--token-file", default=os.environ.get("CLOSURE_MONITOR_API_TOKEN_FILE"),
                   metavar="FILE",
                   help="with --worker: a file holding the bearer token the worker's "
                        "--api-token-file names (default: none; env "
                        "CLOSURE_MONITOR_API_TOKEN_FILE)")
    e.add_argument("--policy-history", metavar="FILE",
                   help="with logs: the policy records rolled out live, as replay takes "
                        "them; the user is explained under the policy then in force for "
                        "them (default: --policy throughout)")
    e.add_argument("--format", choices=("text", "json", "html"), default="text",
                   help="text for a terminal, the JSON the worker serves, or the HTML page")
    e.add_argument("--output", "-o", metavar="FILE",
                   help="write the explanation to FILE (default: stdout)")
    _jobs_flag(e)
    e.set_defaults(run=_explain)

    g = add_command(sub, "generate")
    g.add_argument("--output", "-o", default="-", metavar="FILE",
                   help="write the log to FILE, gzipped if it ends in .gz; - is stdout")
    g.add_argument("--users", type=_at_least_one, default=10_000, metavar="N",
                   help="borrowers in the population")
    g.add_argument("--days", type=_at_least_one, default=180, metavar="N",
                   help="days of events, from --start")
    g.add_argument("--start", type=_day, default="2026-01-01", metavar="YYYY-MM-DD",
                   help="the first day")
    g.add_argument("--seed", type=int, default=1, metavar="N",
                   help="random seed: the same seed gives the same log")
    g.add_argument("--malformed-share", type=_share, default=0.002, metavar="FRACTION",
                   help="share of lines written malformed, in [0, 1)")
    g.add_argument("--duplicate-share", type=_share, default=0.01, metavar="FRACTION",
                   help="share of events written twice, in [0, 1)")
    g.add_argument("--override-share", type=_share, default=0.0, metavar="FRACTION",
                   help="share of users given an operator's override (a hold, some ended "
                        "by a release or a restore), in [0, 1); closed users get them ten "
                        "times as often, and a few name no user")
    g.set_defaults(run=_generate)

    from streams.cli_live import add_commands

    add_commands(sub, _policy_flags, seconds)
    return p


def _logs_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="a recorded event log: JSONL, gzipped or not; - reads stdin")


def _policy_flags(p: argparse.ArgumentParser, *,
                  policy_help: str = "the risk policy, a YAML file (default: the shipped "
                                     "default policy; env CLOSURE_MONITOR_POLICY)",
                  lateness_default: float | None = DEFAULT_LATENESS,
                  lateness_help: str = "allowed lateness, in seconds of event time: how "
                                       "far one input's events may run behind another's "
                                       "and still be applied in order") -> None:
    p.add_argument("--policy", default=os.environ.get("CLOSURE_MONITOR_POLICY"),
                   metavar="FILE", help=policy_help)
    p.add_argument("--lateness", type=seconds, default=lateness_default, metavar="SECONDS",
                   help=lateness_help)


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


def _share(text: str) -> float:
    """An argparse type: a fraction in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in [0, 1)")
    return value


def _day(text: str) -> date:
    """An argparse type: a YYYY-MM-DD date."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a YYYY-MM-DD date ({exc})") from None


def _jobs_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=_at_least_one, default=default_jobs(), metavar="N",
                   help="threads to split the users over; the output is the same for any N "
                        "(default: one per core, at most 8)")


def _state_cache_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-cache", type=_at_least_one, default=None, metavar="N",
                   help="no effect, kept so that earlier command lines run: the engine "
                        "holds every user's state (about 1 KB each) without a cache")


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
        raise UsageError("LOG: stdin (-) can be read once only")
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
    schedule = _policy_history(args.policy_history) if args.policy_history else []
    started = time.monotonic()
    try:
        tally = compiled([policy], args.logs, lateness=args.lateness,
                         on_decisions=[write_all], on_reject=put_all,
                         progress=progress_meter("replay"), jobs=args.jobs,
                         metrics=metrics, schedule=schedule)[0]
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
    return _all_rejected(tally, "the summary above gives the reasons" if args.dead_letter
                         else "the summary above gives the reasons; --dead-letter FILE keeps "
                              "each line with its own")


def _explain(args: argparse.Namespace) -> int:
    from streams.explain import (
        BadUserId,
        check_user_id,
        explain_log,
        fetch_remote,
        read_token,
        render_html,
        render_text,
    )

    try:
        check_user_id(args.user)
    except BadUserId as exc:
        raise UsageError(str(exc)) from None
    if args.worker is not None and args.logs:
        raise UsageError("give logs or --worker, not both")
    if args.worker is None and not args.logs:
        raise UsageError("give the logs to replay, or --worker URL to ask a running worker")
    if args.worker is not None:
        token = None
        if args.token_file:
            token = read_token(args.token_file, "--token-file")
        view = fetch_remote(args.worker, args.user, token)
        where = args.worker
    else:
        _check_logs(args.logs, [("--output", args.output)])
        policy = load_policy(args.policy)
        schedule = _policy_history(args.policy_history) if args.policy_history else []
        view = explain_log(args.user, args.logs, policy, lateness=args.lateness,
                           jobs=args.jobs, schedule=schedule)
        where = "the log" if len(args.logs) == 1 else "the logs"
    if view is None:
        print(f"closure-monitor: {args.user}: no such user in {where}", file=sys.stderr)
        return NO_SUCH_USER
    if args.format == "json":
        body = orjson.dumps(view, option=orjson.OPT_INDENT_2) + b"\n"
    elif args.format == "html":
        body = render_html(view).encode()
    else:
        body = render_text(view).encode()
    out = _open_out(args.output)
    try:
        out.write(body)
    finally:
        _close(out, args.output or "stdout")
    return 0


def _policy_history(path: str) -> list[tuple[float, str, Any, str | None]]:
    """The switches of a recorded policy history, each once, in time order; the
    records a worker would refuse are named on stderr and left out, as live."""
    from streams import rollout

    try:
        with open(path, "rb") as handle:
            records, refused = rollout.history(handle)
    except OSError as exc:
        raise ConfigError(f"--policy-history {path}: cannot read: {exc.strerror}") from None
    for line, reason in refused:
        print(f"closure-monitor: --policy-history {path} line {line}: refused: {reason}",
              file=sys.stderr)
    for r in records:
        scope = f" for region {r.region}" if r.region is not None else ""
        print(f"policy {r.policy.version}{scope} from {format_time(r.effective_at)} "
              f"({r.policy_id}, published by {r.published_by})", file=sys.stderr)
    return [(r.effective_at, r.policy_id, r.policy, r.region) for r in records]


def _all_rejected(tally: Tally, hint: str) -> int:
    """`ALL_REJECTED`, with a warning on stderr, when lines were read and every one was
    rejected (the wrong file, most likely); 0 otherwise, an empty log too."""
    if tally.read == 0 or sum(tally.rejected.values()) < tally.read:
        return 0
    which = "the one line" if tally.read == 1 else f"every one of the {tally.read:,} lines"
    print(f"closure-monitor: warning: {which} read was rejected: is this a closure-monitor "
          f"event log? ({hint})", file=sys.stderr)
    return ALL_REJECTED


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

    if args.policy is None:
        raise UsageError("--policy: backtest needs the policy to try")
    _check_logs(args.logs)
    policy, baseline = load_policy(args.policy), load_policy(args.baseline)
    if args.report is not None:
        from streams import report as html_report

        html_report.prepare(args.report)
        _check_logs(args.logs, [("--report", os.path.join(args.report, name))
                                for name in ("index.html", "report.json")])
    _state_cache_notice(args)
    report = backtest(policy, baseline, args.logs, lateness=args.lateness,
                      progress=progress_meter("backtest"), jobs=args.jobs)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.report is not None:
        html_report.write(args.report, report.as_dict())
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(report.table())
    return _all_rejected(report.new.tally, "replay --dead-letter FILE gives each line's "
                                           "reason")


def _generate(args: argparse.Namespace) -> int:
    from streams.generate import generate_log

    first: date = args.start
    # Event dates run from 1000 to 8999 (the schemas), loans a year past the last day.
    if not (first.year >= 1000 and first.toordinal() + args.days + 400
            <= date(8999, 12, 31).toordinal()):
        raise UsageError(f"--start {first} with --days {args.days}: the log must stay "
                         "within the years 1000 to 8999")
    _check_logs([], [("--output", args.output)])
    out = _open_out(args.output)
    name = "stdout" if args.output == "-" else args.output
    try:
        with _writing(name):
            summary = generate_log(out, seed=args.seed, users=args.users, days=args.days,
                                   start=first.isoformat(), malformed_share=args.malformed_share,
                                   duplicate_share=args.duplicate_share,
                                   override_share=args.override_share,
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
