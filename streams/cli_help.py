"""What `closure-monitor --help` and each command's `--help` say, and the parser
classes that say it: descriptions and examples kept as written, every option's
default shown the same way, and a command's errors under that command's usage.
The options themselves are declared with their commands (`streams.cli`,
`streams.cli_live`).
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PROG = "closure-monitor"
# Exit status 1: replay or backtest read lines and rejected every one (`main` returns
# 2 for unusable arguments, policy, files or broker, argparse too).
ALL_REJECTED = 1
# Exit status 1 of explain: the log (or the worker) has no such user.
NO_SUCH_USER = 1


def version() -> str:
    """The installed package's version ("unknown" when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(PROG)
    except PackageNotFoundError:
        return "unknown"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (examples keep their lines), and the
    default of every option that takes a value at the end of its help, in one form:
    "(default: X)", or "(default: X; env NAME)" where an environment variable
    stands in for the flag. A help that names its default itself is left as it is."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 30,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, width)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # Never at a hyphen: "--strict-order" and "closure-monitor" stay whole.
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("(default: " in text or "(required" in text or not action.option_strings
                or action.nargs == 0 or action.default in (None, "", argparse.SUPPRESS)):
            return text
        if isinstance(action.default, float):
            return f"{text} (default: {action.default:g})"  # 600, not 600.0
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """One command's parser. Its errors, argparse's and the `UsageError`s the command
    raises after parsing (`main` calls `args.usage_error`), come under this command's
    usage, not the top-level one; an option listed in `needed` is shown as required
    although its environment variable may give it, so the command checks it itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.needed: list[argparse.Action] = []
        self.set_defaults(usage_error=self.error)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        # The top-level parser hands a command the rest of the line: what the command
        # does not know is its error (argparse would report it under the top-level usage).
        parsed, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra

    @contextmanager
    def _needed_shown(self) -> Iterator[None]:
        for action in self.needed:
            action.required = True
        try:
            yield
        finally:
            for action in self.needed:
                action.required = False

    def format_usage(self) -> str:
        with self._needed_shown():
            return super().format_usage()

    def format_help(self) -> str:
        with self._needed_shown():
            return super().format_help()


@dataclass(frozen=True)
class Command:
    summary: str  # its line in the top-level help
    description: str
    epilog: str  # examples and exit status


COMMANDS = {
    "replay": Command(
        "decide over recorded event logs: decisions JSONL and a summary",
        """\
Decide over recorded event logs exactly as the live worker would, and write the
decisions as JSON lines (to stdout unless --output names a file). A log is JSONL
of repayment, application and credit_report events, gzipped or not; several logs
are merged in event time, as the worker merges its input topics. A summary
goes to stderr: lines read, applied, duplicate, rejected (by reason) and late,
and the decisions by action and reason. A rejected line never stops the run.""",
        f"""\
examples:
  {PROG} replay events.jsonl.gz --output decisions.jsonl
  {PROG} replay events.jsonl --dead-letter rejected.jsonl
  {PROG} replay repayments.jsonl applications.jsonl reports.jsonl
  zcat events.jsonl.gz | {PROG} replay - --policy candidate.yaml
  # what was decided for one user, and why:
  {PROG} replay events.jsonl | grep '"user_id":"u000041"'

exit status:
  0    done; rejected lines are counted in the summary (--dead-letter keeps them)
  {ALL_REJECTED}    every line of the logs was rejected: is it a {PROG} event log?
  2    unusable arguments, policy, log or output (one line says which)
  130  interrupted"""),
    "backtest": Command(
        "a policy against a baseline on the same logs: what would change",
        """\
Try a policy on recorded logs before it goes live. The policy under test
(--policy) and a baseline (--baseline: the shipped default unless named) decide
over the same logs in one pass, each exactly as the worker would under it. The
report gives, for every action and reason, the decisions under each policy and
the difference, how many users' decisions differ and how their final status
moves, with examples of such users. With --report DIR, the same report is also
written as a page to open in a browser, from disk and with no network: the
decisions per day by action under each policy, the users whose decisions differ
by reason and by final status, the days from warning to action, and the tables.""",
        f"""\
examples:
  {PROG} backtest events.jsonl.gz --policy candidate.yaml
  {PROG} backtest events.jsonl.gz --policy candidate.yaml --baseline current.yaml
  {PROG} backtest events.jsonl.gz --policy candidate.yaml --json > report.json
  # the page, and its numbers as JSON: report/index.html, report/report.json
  {PROG} backtest events.jsonl.gz --policy candidate.yaml --report report

exit status:
  0    done; rejected lines are counted in the report
  {ALL_REJECTED}    every line of the logs was rejected: is it a {PROG} event log?
  2    unusable arguments, policy, log or report folder (one line says which)
  130  interrupted"""),
    "explain": Command(
        "why a user stands where they stand, from a log or a running worker",
        """\
Explain one user: their status and limit, every rule's observed value against
its tiers, the notices running and when each would act, the decision that set
the status, what would lift each restriction, and the decisions so far with
their reasons. From recorded logs, the logs are replayed exactly as replay does
and the user is explained as the logs leave them; with --worker, the running
worker that holds the user answers (any worker of the group: it asks the one
that owns the user's partition). Written for customer service:
docs/customer-service.md explains every line.""",
        f"""\
examples:
  {PROG} explain u000041 events.jsonl.gz
  {PROG} explain u000041 events.jsonl.gz --format html --output u000041.html
  {PROG} explain u000041 --worker http://127.0.0.1:6066 --token-file api.token
  {PROG} explain u000041 --worker http://127.0.0.1:6066 --token-file api.token --format json

exit status:
  0    explained
  {NO_SUCH_USER}    no such user in the logs or on the worker
  2    unusable arguments, user id, policy, log, token or worker (one line says which)
  130  interrupted"""),
    "override": Command(
        "an operator restores a user, or holds or releases automatic action",
        """\
An operator's override, sent to credit.overrides for the workers to apply in
event time like any event (a replay of the recorded topics gives the same
result). restore gives the user their full line back now (a restore decision,
reason OVERRIDE); with --until (or --days) automatic action is also held until
then. hold keeps automatic warnings, downgrades and closures off the user until
--until, as while an appeal is reviewed (a hold decision, reason APPEAL_HOLD;
restores in the user's favour still happen; notices running are withdrawn and
start afresh, with a warning, when the hold ends). release ends a hold now.
Every override names its operator (--by) and reason: they are in its decisions
and, with the record itself, in the audit trail. The record is checked before
it is sent, and printed on stdout. An override of a user the monitor has no
events of is refused by the worker and dead-lettered (unknown_user).""",
        f"""\
examples:
  {PROG} override u000041 --action hold --days 14 --by agent-17 \\
      --reason "appeal 5521: fraud flag disputed"
  {PROG} override u000041 --action restore --by lead-3 --reason "appeal 5521 upheld"
  {PROG} override u000041 --action release --by agent-17 --reason "appeal withdrawn"

exit status: 0 sent; 2 unusable arguments (the record would be refused: one line
says why), or the broker cannot be reached"""),
    "rollout": Command(
        "put a new policy in force on the running workers at one event time",
        """\
Roll a new policy out live. The policy file is checked as a worker checks it; a
record naming it and the event time it takes effect (--at) goes to every
partition of credit.policies, which the workers read in event-time order with the
events: every partition switches at that event time (deadlines before it under
the old policy, events and deadlines from it on under the new), so that a replay
given the same records (replay --policy-history) decides the same. A worker that
refuses a record (a policy that fails validation) keeps the policy in force,
dead-letters the record (policy_refused), logs it and counts it
(closure_monitor_policy_records_total). The record is printed on stdout: keep it,
it is the policy history. Publish ahead of time: a partition already past --at
when the record reaches it switches then.""",
        f"""\
examples:
  {PROG} rollout stricter.yaml --at 2026-07-01T00:00:00Z --by risk-7
  {PROG} record --topic credit.policies --output policies.jsonl
  {PROG} replay events.jsonl.gz --policy-history policies.jsonl

exit status: 0 sent; 2 unusable arguments or policy (one line says why), no
policies topic yet (start a worker), or the broker cannot be reached"""),
    "generate": Command(
        "write a realistic synthetic event log",
        """\
Write a realistic synthetic event log: a population of borrowers (most pay on
time; some pay late, stop paying, borrow from many lenders, apply in bursts,
lose score, or have an on-time payment recorded late), their repayments,
applications and credit-report changes day by day, with duplicate and malformed
lines mixed in as real logs have them. The same arguments give the same bytes.
A log to try replay, backtest or produce with, without real data.""",
        f"""\
examples:
  {PROG} generate --output events.jsonl
  {PROG} generate --users 200000 --days 365 --seed 7 --output events.jsonl.gz
  {PROG} generate --users 100 --days 30 | {PROG} replay -

exit status: 0 written; 2 unusable arguments or output (one line says which)"""),
    "worker": Command(
        "the stream processor: decide live on the input topics",
        """\
The stream processor (a Faust worker). It creates the topics it needs, reads the
input topics (credit.repayments, credit.applications, credit.report-changes and
the operators' credit.overrides), applies each user's events in event-time order
under the policy, keeps each user's state in a table backed by a changelog topic, and
publishes decisions to credit.decisions and rejected records, with their reason,
to credit.dead-letter. Prometheus metrics are served at
http://WEB_HOST:WEB_PORT/metrics; with --api-token-file, a user's explanation at
/users/USER_ID (JSON, or a page for customer service), for a bearer token.
Policy records on credit.policies (closure-monitor rollout) switch the policy at
their event time. Workers with the same --app-id share the
partitions between them. Each setting can come from the environment instead of
a flag (the variable is named in its help), as in a container.""",
        f"""\
examples:
  {PROG} worker --broker kafka://kafka:9092 --policy /etc/{PROG}/policy.yaml
  {PROG} worker --broker kafka://kafka:9092 --store rocksdb \\
      --data-dir /var/lib/{PROG} --web-host 0.0.0.0
  CLOSURE_MONITOR_BROKER=kafka://kafka:9092 {PROG} worker --strict-order

exit status: 0 stopped (Ctrl-C or SIGTERM); 2 unusable arguments, policy, port
or broker, before it starts (one line says which); other non-zero: it failed"""),
    "dev": Command(
        "try it all on one machine: embedded broker, worker, producer",
        """\
Everything on one machine with no set-up: an embedded Kafka-compatible broker
(Tansu), a worker, and a producer that sends a synthetic log at --rate events a
second. Each decision is shown on stdout as it is made, one line each under a
line naming the columns: event time, user, action, status before -> after, the
reasons' codes and the first reason's message. The worker's metrics are served
on --web-port. Ctrl-C (or SIGTERM) stops the producer, lets the worker finish
the events sent (a second Ctrl-C stops it at once), shows its last decisions,
then its summary (events read, applied, duplicate, rejected and late; decisions
by action) and the count of decisions shown. The broker's and the worker's logs
are in a temporary folder, named at start, removed at exit unless --keep or a
failure.""",
        f"""\
examples:
  {PROG} dev
  {PROG} dev --users 500 --rate 50 --web-port 7066
  {PROG} dev --keep > decisions.txt

exit status: 0 stopped with Ctrl-C or SIGTERM; 1 the worker or the producer
failed (the logs are kept); 2 unusable arguments, or the worker did not start
(the reason is shown)"""),
    "produce": Command(
        "send recorded logs to the input topics",
        """\
Send recorded logs to the input topics: each line to its event type's topic
(credit.repayments, credit.applications, credit.report-changes or
credit.overrides), keyed by its
user_id, with Kafka's default partitioner. A line whose event type cannot be read
goes to the repayments topic as it is, for the worker to dead-letter. A summary
goes to stderr.""",
        f"""\
examples:
  {PROG} produce events.jsonl.gz --broker kafka://kafka:9092
  {PROG} produce events.jsonl.gz --rate 500
  CLOSURE_MONITOR_BROKER=kafka://kafka:9092 {PROG} produce events.jsonl

exit status: 0 sent; 2 unusable arguments or log, or the broker cannot be
reached (one line says which)"""),
    "record": Command(
        "write the input topics into a log that replay reads",
        """\
Write the input topics into a JSONL log that replay, backtest and produce read:
every record from the beginning to the topics' current end (with --follow, until
Ctrl-C), merged across partitions into event-time order. A summary goes to
stderr.""",
        f"""\
examples:
  {PROG} record --broker kafka://kafka:9092 --output recorded.jsonl.gz
  # the decisions the worker published, as they are:
  {PROG} record --topic credit.decisions --output decisions.jsonl
  {PROG} record --follow | grep '"user_id":"u000041"'

exit status: 0 written; 2 unusable arguments or output, or the broker cannot be
reached (one line says which)"""),
}

GROUPS = (
    ("decide over recorded logs (no broker needed)", ("replay", "backtest", "generate")),
    ("one user's line", ("explain", "override")),
    ("the policy", ("rollout",)),
    ("run live on Kafka", ("worker", "dev")),
    ("move events between logs and Kafka", ("produce", "record")),
)

DESCRIPTION = """\
Real-time credit-line monitor. Repayment, application and credit-report events
go in; graded, explained decisions come out: warn, downgrade, close or restore
a user's credit line, each with its reasons and the version of the policy that
made it. The live worker and the commands on recorded logs run the same
decision code, so a backtest says exactly what the worker would do.""" + "".join(
    f"\n\n{title}:\n" + "\n".join(f"  {name:<10}  {COMMANDS[name].summary}" for name in names)
    for title, names in GROUPS)

EPILOG = f"""\
examples:
  {PROG} generate --users 1000 --output events.jsonl
  {PROG} replay events.jsonl --output decisions.jsonl
  {PROG} backtest events.jsonl --policy candidate.yaml
  {PROG} dev
  {PROG} worker --broker kafka://kafka:9092 --policy policy.yaml

'{PROG} COMMAND --help' shows a command's options, their defaults and examples.

exit status:
  0    success
  {ALL_REJECTED}    replay or backtest rejected every line of its logs
  2    unusable arguments, environment, policy, files or broker (one line
       says which)
  130  interrupted"""


def add_command(sub: Any, name: str) -> CommandParser:
    """The parser of command `name`, with its help, among `top_parser`'s commands."""
    command = COMMANDS[name]
    parser: CommandParser = sub.add_parser(name, description=command.description,
                                           epilog=command.epilog)
    return parser


def top_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The top-level parser, and its commands' action for `add_command`."""
    parser = argparse.ArgumentParser(prog=PROG, usage="%(prog)s [-h] [--version] COMMAND ...",
                                     description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    # The commands are listed, by group, in the description.
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", prog=PROG,
                                parser_class=CommandParser, help=argparse.SUPPRESS)
    return parser, sub
