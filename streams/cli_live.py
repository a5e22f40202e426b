"""The commands that talk to Kafka: worker, dev, produce, record."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streams.errors import ConfigError, MonitorError, UsageError

ENV = "CLOSURE_MONITOR_"


def _env(name: str, default: Any) -> Any:
    return os.environ.get(ENV + name, default)


def _int_env(name: str, default: int) -> int:
    value = _env(name, default)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{ENV}{name}={value!r}: not an integer") from None


def add_commands(sub: Any, policy_flags: Callable[..., None],
                 seconds: Callable[[str], float]) -> None:
    from streams.cli_help import add_command

    w = add_command(sub, "worker")
    _broker_flag(w)
    # Live, an event waits for no lateness unless told (app.DEFAULT_LATENESS).
    policy_flags(w, lateness_default=None,
                 lateness_help="allowed lateness, in seconds of event time: how long an "
                               "event waits for the other inputs to reach its time (default: "
                               "0: it waits only for them; 600 with --strict-order)")
    w.add_argument("--store", choices=("memory", "rocksdb"), default=_env("STORE", "memory"),
                   help="where the table of users' states is kept, backed by its "
                        "changelog topic either way (default: memory; env "
                        "CLOSURE_MONITOR_STORE)")
    w.add_argument("--data-dir", default=_env("DATA_DIR", "closure-monitor-data"),
                   metavar="DIR",
                   help="where RocksDB keeps state (default: closure-monitor-data; env "
                        "CLOSURE_MONITOR_DATA_DIR)")
    w.add_argument("--web-host", default=_env("WEB_HOST", "127.0.0.1"), metavar="HOST",
                   help="address of the /metrics web server; 0.0.0.0 for every interface "
                        "(default: 127.0.0.1; env CLOSURE_MONITOR_WEB_HOST)")
    w.add_argument("--web-port", type=int, default=None, metavar="PORT",
                   help="port of the /metrics web server (default: 6066; env "
                        "CLOSURE_MONITOR_WEB_PORT)")
    w.add_argument("--advertised-url", default=_env("ADVERTISED_URL", None), metavar="URL",
                   help="how the other workers of the group reach this one's web server, to "
                        "pass on a request for a user this one does not hold (default: "
                        "http://WEB_HOST:WEB_PORT, the host's name for 0.0.0.0; env "
                        "CLOSURE_MONITOR_ADVERTISED_URL)")
    w.add_argument("--api-token-file", default=_env("API_TOKEN_FILE", None), metavar="FILE",
                   help="a file holding the bearer token that the user endpoint "
                        "(/users/{user_id}: a user's explanation, JSON or a page) asks "
                        "for; without it the endpoint is off (default: off; env "
                        "CLOSURE_MONITOR_API_TOKEN_FILE)")
    _partitions_flag(w)
    w.add_argument("--replication-factor", type=int, default=None, metavar="N",
                   help="replicas of every topic the worker creates, its changelog "
                        "included; set 3 on a production cluster (default: 1; env "
                        "CLOSURE_MONITOR_REPLICATION_FACTOR)")
    w.add_argument("--app-id", default=_env("APP_ID", "closure-monitor"), metavar="NAME",
                   help="consumer group and prefix of the changelog and tick topics "
                        "(default: closure-monitor; env CLOSURE_MONITOR_APP_ID)")
    _prefix_flag(w)
    w.add_argument("--idle-timeout", type=seconds, default=None, metavar="SECONDS",
                   help="how long an input must be caught up with the broker before it "
                        "stops holding the watermark back (default: 0, as Kafka Streams' "
                        "max.task.idle.ms: never wait for a silent input; 2 with "
                        "--strict-order)")
    w.add_argument("--strict-order", action="store_true",
                   default=_env("STRICT_ORDER", "") not in ("", "0"),
                   help="event-time order as replay has it: a lateness of 600 s and an "
                        "idle timeout of 2 s unless set, so that live equals replay for "
                        "any disorder within the lateness; events then wait that long "
                        "for their decisions (env CLOSURE_MONITOR_STRICT_ORDER=1 sets it)")
    w.add_argument("--fetch-max-wait", type=float, default=None, metavar="SECONDS",
                   help="longest a fetch waits for records (default: 0.5, Kafka's; 0.05 "
                        "with --tansu)")
    w.add_argument("--state-cache", type=int, default=None, metavar="N",
                   help="no effect, kept so that earlier command lines run: the engine "
                        "holds every user of its partitions (about 1 KB each) and stores "
                        "them in the table (env CLOSURE_MONITOR_STATE_CACHE)")
    w.add_argument("--input-buffer", type=int, default=None, metavar="N",
                   help="records of one input partition held (not yet applied and "
                        "acknowledged) before its fetching pauses while another input "
                        "holds the watermark back (default: 5000; env "
                        "CLOSURE_MONITOR_INPUT_BUFFER)")
    w.add_argument("--tansu", action="store_true",
                   default=_env("TANSU", "") not in ("", "0"),
                   help="the embedded development broker's workarounds, never for Kafka "
                        "(env CLOSURE_MONITOR_TANSU=1 sets it)")
    w.add_argument("--fast-rebalance", action="store_true",
                   default=_env("FAST_REBALANCE", "") not in ("", "0"),
                   help="short group session timeouts, for a broker on this machine "
                        "(env CLOSURE_MONITOR_FAST_REBALANCE=1 sets it)")
    w.add_argument("--loglevel", default=_env("LOGLEVEL", "warning"), metavar="LEVEL",
                   help="the worker's log level: debug, info, warning, error or critical "
                        "(default: warning; env CLOSURE_MONITOR_LOGLEVEL)")
    w.set_defaults(run=_worker)

    d = add_command(sub, "dev")
    d.add_argument("--users", type=int, default=3000, metavar="N",
                   help="borrowers in the synthetic log")
    d.add_argument("--days", type=int, default=180, metavar="N",
                   help="days of events in the synthetic log")
    d.add_argument("--rate", type=float, default=300.0, metavar="EVENTS",
                   help="events sent a second")
    d.add_argument("--web-port", type=int, default=6066, metavar="PORT",
                   help="port of the worker's /metrics web server (default: 6066, or a "
                        "free port if that one is taken)")
    d.add_argument("--partitions", type=int, default=4, metavar="N",
                   help="partitions of every topic")
    d.add_argument("--seed", type=int, default=1, metavar="N",
                   help="random seed of the synthetic log")
    d.add_argument("--keep", action="store_true",
                   help="keep the temporary folder of the logs (the broker's, the "
                        "worker's, the synthetic events) at exit; it is kept anyway when "
                        "something failed")
    d.set_defaults(run=_dev)

    p = add_command(sub, "produce")
    p.add_argument("logs", nargs="+", metavar="LOG",
                   help="a recorded event log: JSONL, gzipped or not; - reads stdin")
    _broker_flag(p)
    _prefix_flag(p)
    p.add_argument("--rate", type=float, default=None, metavar="LINES",
                   help="lines sent a second (default: as fast as the broker takes them)")
    p.set_defaults(run=_produce)

    o = add_command(sub, "override")
    o.add_argument("user", metavar="USER", help="the user id, as events carry it")
    o.add_argument("--action", required=True, choices=("restore", "hold", "release"),
                   help="restore the user now; hold automatic action until --until (an "
                        "appeal under review); release a hold (required)")
    o.add_argument("--reason", required=True, metavar="TEXT",
                   help="why, for the audit trail and the decision's message; 1 to 500 "
                        "characters (required)")
    o.add_argument("--by", required=True, metavar="OPERATOR", dest="operator",
                   help="who: the operator named in the audit trail and the decision; 1 to "
                        "128 characters (required)")
    until = o.add_mutually_exclusive_group()
    until.add_argument("--until", metavar="TIME",
                       help="end of the hold, RFC 3339 (2026-07-01T00:00:00Z); required for "
                            "a hold, optional for a restore (restore, then hold), none for a "
                            "release (default: none)")
    until.add_argument("--days", type=float, metavar="N",
                       help="end of the hold, N days after --at (instead of --until)")
    o.add_argument("--at", metavar="TIME",
                   help="the override's event time, RFC 3339 (default: now)")
    o.add_argument("--event-id", metavar="ID",
                   help="the override's event id; the same id sent twice counts once "
                        "(default: a new one)")
    _broker_flag(o)
    _prefix_flag(o)
    o.set_defaults(run=_override)

    ro = add_command(sub, "rollout")
    ro.add_argument("policy_file", metavar="POLICY", help="the new policy, a YAML file")
    ro.add_argument("--at", required=True, metavar="TIME",
                    help="the event time it takes effect, RFC 3339 with an offset "
                         "(2026-07-01T00:00:00Z): events and deadlines from then on are "
                         "decided under it (required)")
    ro.add_argument("--by", required=True, metavar="NAME", dest="published_by",
                    help="who publishes it, for the record (required)")
    ro.add_argument("--region", metavar="REGION",
                    help="apply it to the users of one region only (events carry the "
                         "user's region); the others keep theirs (default: every user of "
                         "no region with a policy of its own)")
    ro.add_argument("--id", metavar="ID", dest="policy_id",
                    help="the record's id; publishing the same id again changes nothing "
                         "(default: VERSION@TIME)")
    _broker_flag(ro)
    _prefix_flag(ro)
    ro.set_defaults(run=_rollout)

    r = add_command(sub, "record")
    _broker_flag(r)
    _prefix_flag(r)
    r.add_argument("--output", "-o", default="-", metavar="FILE",
                   help="write the log to FILE, gzipped if it ends in .gz; - is stdout")
    r.add_argument("--topic", action="append", dest="topic_names", metavar="TOPIC",
                   help="record this topic instead; repeat for more (default: the four "
                        "input topics)")
    r.add_argument("--follow", "-f", action="store_true",
                   help="keep recording new records until Ctrl-C")
    r.set_defaults(run=_record)


def _broker_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default=_env("BROKER", "kafka://127.0.0.1:9092"), metavar="URL",
                   help="Kafka bootstrap URL, kafka://HOST:PORT (several separated by ;) "
                        "(default: kafka://127.0.0.1:9092; env CLOSURE_MONITOR_BROKER)")
    s = p.add_argument_group("reaching the broker over TLS and SASL (default: plain)")
    s.add_argument("--broker-ca", default=_env("BROKER_CA", None), metavar="FILE",
                   help="the CA certificate (PEM) that signed the broker's: connect over "
                        "TLS (env CLOSURE_MONITOR_BROKER_CA)")
    s.add_argument("--broker-cert", default=_env("BROKER_CERT", None), metavar="FILE",
                   help="this client's certificate (PEM), for a broker that asks for one: "
                        "connect over TLS (env CLOSURE_MONITOR_BROKER_CERT)")
    s.add_argument("--broker-key", default=_env("BROKER_KEY", None), metavar="FILE",
                   help="the private key of --broker-cert (PEM) (env "
                        "CLOSURE_MONITOR_BROKER_KEY)")
    s.add_argument("--sasl-mechanism", default=_env("SASL_MECHANISM", None),
                   metavar="NAME",
                   help="SASL authentication: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, over "
                        "TLS when a CA or certificate is given (env "
                        "CLOSURE_MONITOR_SASL_MECHANISM)")
    s.add_argument("--sasl-username", default=_env("SASL_USERNAME", None), metavar="NAME",
                   help="the SASL user (env CLOSURE_MONITOR_SASL_USERNAME)")
    s.add_argument("--sasl-password-file", default=_env("SASL_PASSWORD_FILE", None),
                   metavar="FILE",
                   help="a file holding the SASL password (env "
                        "CLOSURE_MONITOR_SASL_PASSWORD_FILE)")


def _use_security(args: argparse.Namespace) -> Any:
    """The broker flags' TLS and SASL, in force for every client from now on."""
    from streams import security

    password = (security.read_password(args.sasl_password_file)
                if args.sasl_password_file else None)
    chosen = security.BrokerSecurity(
        ca_file=args.broker_ca, cert_file=args.broker_cert, key_file=args.broker_key,
        sasl_mechanism=args.sasl_mechanism, sasl_username=args.sasl_username,
        sasl_password=password)
    security.use(chosen)
    return chosen


def _prefix_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic-prefix", default=_env("TOPIC_PREFIX", ""), metavar="PREFIX",
                   help="prefix to every topic name (default: none; env "
                        "CLOSURE_MONITOR_TOPIC_PREFIX)")


def _partitions_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partitions", type=int, default=None, metavar="N",
                   help="partitions of every topic the worker creates (default: 8; env "
                        "CLOSURE_MONITOR_PARTITIONS)")


def _count(value: int | None, flag: str, env: str, default: int) -> int:
    """A count of at least 1: the flag's value, else its environment variable, else
    the default. A bad value is named as it was given: flag or variable."""
    if value is not None:
        if value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
        return value
    count = _int_env(env, default)
    if count < 1:
        raise ConfigError(f"{ENV}{env}={count}: must be at least 1 (as {flag})")
    return count


def _settings(args: argparse.Namespace) -> Any:
    from streams.settings import (
        DEFAULT_FETCH_MAX_WAIT,
        DEFAULT_IDLE_TIMEOUT,
        DEFAULT_INPUT_BUFFER,
        DEFAULT_LATENESS,
        STRICT_IDLE_TIMEOUT,
        STRICT_LATENESS,
        TANSU_FETCH_MAX_WAIT,
        Settings,
    )

    partitions = _count(args.partitions, "--partitions", "PARTITIONS", 8)
    replication = _count(args.replication_factor, "--replication-factor",
                         "REPLICATION_FACTOR", 1)
    if args.web_port is not None:
        web_port = args.web_port
        if not 0 < web_port < 65536:
            raise UsageError(f"--web-port {web_port}: not a port number")
    else:
        web_port = _int_env("WEB_PORT", 6066)
        if not 0 < web_port < 65536:
            raise ConfigError(f"{ENV}WEB_PORT={web_port}: not a port number")
    fetch_max_wait = args.fetch_max_wait
    if fetch_max_wait is None:
        fetch_max_wait = TANSU_FETCH_MAX_WAIT if args.tansu else DEFAULT_FETCH_MAX_WAIT
    if not 0 < fetch_max_wait <= 60:
        raise UsageError(f"--fetch-max-wait {fetch_max_wait:g}: not in (0, 60] seconds")
    if args.state_cache is not None or _env("STATE_CACHE", ""):
        _count(args.state_cache, "--state-cache", "STATE_CACHE", 1)  # still refused when bad
        print("closure-monitor: --state-cache (CLOSURE_MONITOR_STATE_CACHE) has no effect: "
              "the engine holds every user's state (about 1 KB each)", file=sys.stderr)
    input_buffer = _count(args.input_buffer, "--input-buffer", "INPUT_BUFFER",
                          DEFAULT_INPUT_BUFFER)
    return Settings(broker=args.broker, store=args.store, data_dir=args.data_dir,
                    web_host=args.web_host, web_port=web_port, partitions=partitions,
                    replication_factor=replication,
                    app_id=args.app_id, topic_prefix=args.topic_prefix,
                    lateness=(args.lateness if args.lateness is not None
                              else STRICT_LATENESS if args.strict_order
                              else DEFAULT_LATENESS),
                    idle_timeout=(args.idle_timeout if args.idle_timeout is not None
                                  else STRICT_IDLE_TIMEOUT if args.strict_order
                                  else DEFAULT_IDLE_TIMEOUT),
                    fetch_max_wait=fetch_max_wait,
                    input_buffer=input_buffer,
                    tansu=args.tansu, fast_group=args.fast_rebalance or args.tansu,
                    loglevel=args.loglevel, api_token=_api_token(args.api_token_file),
                    advertised_url=args.advertised_url)


def _api_token(path: str | None) -> str | None:
    """The bearer token in the file named, or None when none is named."""
    if not path:
        return None
    from streams.explain import read_token

    return read_token(path, "--api-token-file")


def _worker(args: argparse.Namespace) -> int:
    from streams.policy import load_policy
    from streams.worker import run_worker

    policy = load_policy(args.policy)
    settings = _settings(args)
    settings.policy = policy
    settings.security = _use_security(args)
    return run_worker(settings, policy)


def _produce(args: argparse.Namespace) -> int:
    from streams.kafka import Topics
    from streams.transfer import log_lines, produce

    for path in args.logs:
        if path != "-" and not os.path.isfile(path):
            raise ConfigError(f"{path}: no such log file")
    _use_security(args)
    if args.rate is not None and not 0 < args.rate < math.inf:
        raise UsageError(f"--rate {args.rate:g}: must be a positive number of lines a second")
    started = time.monotonic()
    summary = asyncio.run(produce(args.broker, log_lines(args.logs), Topics(args.topic_prefix),
                                  rate=args.rate))
    elapsed = time.monotonic() - started
    topics = ", ".join(f"{t} {n:,}" for t, n in sorted(summary.by_topic.items()))
    print(f"produced {summary.sent:,} records in {elapsed:.1f} s ({topics}); "
          f"{summary.unroutable:,} without a readable event type", file=sys.stderr)
    return 0


def override_record(args: argparse.Namespace, now: float) -> bytes:
    """The override event the arguments describe (schema v1, JSON), checked by the
    engine's own decoder: UsageError with its reason when it would be dead-lettered."""
    import uuid
    from datetime import datetime

    import orjson

    from streams import _engine
    from streams.events import format_time

    at = args.at or format_time(now)
    record: dict[str, Any] = {
        "event_id": args.event_id or f"ovr-{uuid.uuid4().hex}",
        "event_type": "override", "user_id": args.user, "occurred_at": at,
        "schema_version": 1, "action": args.action, "operator": args.operator,
        "reason": args.reason,
    }
    if args.days is not None:
        if not 0 < args.days <= 3650:
            raise UsageError(f"--days {args.days:g}: not in (0, 3650]")
        try:
            start = datetime.fromisoformat(at).timestamp() if args.at else now
        except ValueError:
            raise UsageError(f"--at {at!r}: not an RFC 3339 date-time") from None
        record["until"] = format_time(start + args.days * 86_400)
    elif args.until is not None:
        record["until"] = args.until
    raw = orjson.dumps(record)
    decoded = _engine.decode_fields(raw)
    if decoded[0] == "rejected":
        raise UsageError(decoded[2])
    return raw


def _override(args: argparse.Namespace) -> int:
    from streams.kafka import Topics
    from streams.transfer import produce

    raw = override_record(args, time.time())
    _use_security(args)
    topics = Topics(args.topic_prefix)
    summary = asyncio.run(produce(args.broker, [raw], topics))
    if summary.sent != 1:
        raise ConfigError(f"{topics.overrides}: the override was not sent")
    sys.stdout.buffer.write(raw + b"\n")
    sys.stdout.flush()
    print(f"sent to {topics.overrides}; its decision names it in trigger_event_id, and an "
          f"override of a user the monitor does not know goes to {topics.dead_letter}",
          file=sys.stderr)
    return 0


def _rollout(args: argparse.Namespace) -> int:
    import yaml

    from streams import rollout
    from streams.kafka import Topics
    from streams.policy import load_policy

    policy = load_policy(args.policy_file)  # the file's own checks, each one line
    with open(args.policy_file, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    scope = f"@{args.region}" if args.region else ""
    policy_id = args.policy_id or f"{policy.version}@{args.at}{scope}"
    raw = rollout.record(document, policy_id, args.at, args.published_by, region=args.region)
    try:
        checked = rollout.parse(raw)  # what every worker will check
    except rollout.RefusedPolicy as exc:
        raise UsageError(str(exc)) from None
    _use_security(args)
    topics = Topics(args.topic_prefix)
    partitions = asyncio.run(rollout.publish(args.broker, topics.policies, raw))
    sys.stdout.buffer.write(raw + b"\n")
    sys.stdout.flush()
    late = checked.effective_at < time.time()
    print(f"policy {policy.version} sent to {topics.policies} ({partitions} partitions): "
          f"in force from {args.at}"
          + ("; that time has passed: a partition already past it switches when the record "
             "reaches it, and may then decide events since then unlike a replay"
             if late else ""), file=sys.stderr)
    return 0


def _record(args: argparse.Namespace) -> int:
    from streams.cli import _open_out
    from streams.kafka import Topics, check_broker
    from streams.transfer import record

    names = args.topic_names or list(Topics(args.topic_prefix).inputs)
    _use_security(args)
    # An unreachable broker leaves an earlier file of that name as it was.
    asyncio.run(check_broker(args.broker))
    out = _open_out(args.output)
    try:
        count = asyncio.run(record(args.broker, names, out, follow=args.follow))
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"recorded {count:,} records from {', '.join(names)}", file=sys.stderr)
    return 0


# -- dev -------------------------------------------------------------------------

# `dev` shows a decision a line, in columns: when (event time, to the minute), whose,
# the action, the status it moved from and to, why (every reason's code; the codes
# that do not fit are counted, "+1"), and the first reason's message. A user id
# longer than its column pushes the rest of that line along (the synthetic ids of
# `dev` are 7 characters).
_ROW = ("{time:<16}  {user:<10}  {action:<9}  {before:<10} -> {after:<10}  "
        "{reasons:<26}  {message}")
_REASONS_WIDTH = 26


def header() -> str:
    """The names of `describe`'s columns, for the line above the first decision."""
    return _ROW.format(time="EVENT TIME", user="USER", action="ACTION", before="BEFORE",
                       after="AFTER", reasons="REASONS", message="MESSAGE")


def _codes(reasons: list[dict[str, Any]]) -> str:
    """The reasons' codes, comma-separated, within the column: those that do not fit
    are counted ("EXTERNAL_DELINQUENCY +1")."""
    codes = [reason["code"] for reason in reasons]
    text, shown = ",".join(codes), len(codes)
    while len(text) > _REASONS_WIDTH and shown > 1:
        shown -= 1
        text = f"{','.join(codes[:shown])} +{len(codes) - shown}"
    return text


def describe(decision: dict[str, Any]) -> str:
    """One readable line per decision, in the columns `header` names, for people
    watching `dev`: a user's decisions read in order down the page."""
    reasons = decision["reasons"]
    message = reasons[0]["message"]
    if decision.get("effective_at") and decision["effective_at"] != decision["event_time"]:
        message += f"; takes effect {decision['effective_at'][:10]} unless cured"
    if decision.get("supersedes"):
        message += f"; supersedes {decision['supersedes']}"
    return _ROW.format(time=decision["event_time"][:16].replace("T", " "),
                       user=decision["user_id"], action=decision["action"],
                       before=decision["status_before"], after=decision["status_after"],
                       reasons=_codes(reasons), message=message)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _dev(args: argparse.Namespace) -> int:
    import shutil

    from streams.generate import generate_log
    from streams.kafka import EmbeddedBroker, Topics, free_port, port_open, stop_process
    from streams.worker import check_port

    if not 0 < args.rate < math.inf or args.users < 1 or args.days < 1:
        raise UsageError("--rate, --users and --days must be positive")
    web_port = args.web_port
    try:
        check_port("127.0.0.1", web_port)
    except MonitorError:
        web_port = free_port()
    # SIGTERM stops dev as Ctrl-C does, wherever it is: the broker and the worker run
    # in sessions of their own, and only dev stops them.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    folder = tempfile.mkdtemp(prefix="closure-monitor-dev-")
    log_path = os.path.join(folder, "events.jsonl")
    worker_log_path = os.path.join(folder, "worker.log")
    broker: EmbeddedBroker | None = None
    worker: subprocess.Popen[bytes] | None = None
    run: _DevRun | None = None
    failed = True  # until it ends as asked (a signal) or the run says otherwise
    try:
        print(f"generating {args.users:,} synthetic users over {args.days} days "
              "(--users, --days) ...", file=sys.stderr)
        with open(log_path, "wb") as out:
            summary = generate_log(out, seed=args.seed, users=args.users, days=args.days)
        broker = EmbeddedBroker(log_path=os.path.join(folder, "broker.log"))
        broker.start()  # (stopped at exit even if interrupted while it starts)
        print(f"embedded broker (Tansu) on {broker.bootstrap}", file=sys.stderr)
        topics = Topics()
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--broker", broker.url,
               "--partitions", str(args.partitions), "--web-port", str(web_port), "--tansu",
               "--app-id", "closure-monitor-dev", "--data-dir", os.path.join(folder, "data")]
        with open(worker_log_path, "wb") as worker_log:
            worker = subprocess.Popen(cmd, stdout=worker_log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", web_port):
            if worker.poll() is not None:
                with open(worker_log_path, "rb") as f:
                    tail = f.read()[-2000:]
                raise MonitorError("the worker exited at startup:\n"
                                   + tail.decode("utf-8", "replace"))
            if time.monotonic() > deadline:
                raise MonitorError("the worker did not start within 60 s")
            time.sleep(0.1)
        print(f"worker up: metrics on http://127.0.0.1:{web_port}/metrics (--web-port)\n"
              f"producing {summary.lines:,} events at {args.rate:g}/s (--rate); "
              "Ctrl-C stops\n"
              f"logs in {folder}, "
              + ("kept at exit (--keep)" if args.keep
                 else "removed at exit unless --keep or a failure"), file=sys.stderr)
        run = asyncio.run(_dev_loop(broker.url, topics, args.partitions, log_path,
                                    summary.lines, args.rate, worker, worker_log_path,
                                    web_port))
        failed = run.problem is not None
    except KeyboardInterrupt:
        failed = False  # stopped before the decisions were shown: nothing to report
        print(file=sys.stderr)
    finally:
        # Cleaning up is not to be interrupted: it would leave the broker running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if worker is not None:
                stop_process(worker, 60)  # it has exited unless dev was stopped early
            if broker is not None:
                broker.stop()
            if run is not None:
                _report(run)
            if args.keep or failed:
                print(f"logs kept in {folder} (worker.log, broker.log)", file=sys.stderr)
            else:
                shutil.rmtree(folder, ignore_errors=True)
                print(f"removed {folder} with its logs (--keep keeps them)",
                      file=sys.stderr)
            print("stopped", file=sys.stderr, flush=True)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    return 1 if run is not None and run.problem is not None else 0


@dataclass
class _DevRun:
    """What `dev` saw: the events sent, the decisions shown, whether the worker had
    finished every event sent when it was told to stop, its summary and its count of
    decisions, and what went wrong if anything did."""

    sent: int = 0
    shown: int = 0
    finished: bool = False
    summary: list[str] = field(default_factory=list)
    decisions: int | None = None
    problem: str | None = None


def _report(run: _DevRun) -> None:
    """The worker's summary (it prints it to its log at exit) and the decisions shown."""
    out = sys.stderr
    if run.summary:
        print("the worker's summary:", file=out)
        for line in run.summary:
            print(f"  {line}", file=out)
        if any(re.search(r"; late [1-9]", line) for line in run.summary):
            print("  (late: applied after later events of another input had gone first, "
                  "as the worker's default order does without waiting; `worker "
                  "--strict-order` waits instead: docs/design.md)", file=out)
    if run.decisions is None:
        print(f"{run.shown:,} decisions shown (the worker printed no summary: see its log)",
              file=out)
    elif run.decisions == run.shown:
        print(f"{run.shown:,} decisions shown, every decision the worker made", file=out)
    elif run.shown > run.decisions and not run.finished:
        # The worker counts a record once its state is stored (`shell._confirm`): it
        # stopped with records decided and not yet stored, which a restart decides
        # again (same decision ids).
        print(f"{run.shown:,} decisions shown; the worker's summary counts "
              f"{run.decisions:,}: it stopped before it had finished the events of the "
              "others", file=out)
    else:
        print(f"{run.shown:,} decisions shown, but the worker made {run.decisions:,}",
              file=out)
    if run.problem is not None:
        print(f"closure-monitor: {run.problem}", file=out)
    out.flush()


# The lines of the worker's summary at exit (`worker.run_worker`): replay's summary
# (`replay.summary_lines`), then what it rerouted, skipped and still held.
_SUMMARY_LINES = ("events read ", "applied by type: ", "rejected by reason: ", "decisions ",
                  "  ", "rerouted ")


def worker_summary(text: str) -> list[str]:
    """The summary the worker printed last to its log (none if it printed none)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("events read ")]
    if not starts:
        return []
    summary = []
    for line in lines[starts[-1]:]:
        if not line.startswith(_SUMMARY_LINES):
            break
        summary.append(line)
    return summary


def _decisions_counted(summary: list[str]) -> int | None:
    for line in summary:
        m = re.match(r"decisions ([\d,]+):", line)
        if m:
            return int(m.group(1).replace(",", ""))
    return None


def _events_counted(web_port: int) -> int | None:
    """The records the worker has finished (applied, duplicate or rejected, their
    states stored), from its /metrics; None if it does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics",
                                    timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("closure_monitor_events_total{"))


# How long `dev`, stopping, waits for the worker to finish the events sent before it
# tells the worker to stop anyway.
FINISH_TIMEOUT = 60.0


async def _dev_loop(url: str, topics: Any, partitions: int, log_path: str, lines: int,
                    rate: float, worker: subprocess.Popen[bytes], worker_log: str,
                    web_port: int) -> _DevRun:
    """Produce the log at `rate` and show the decisions as they come, until a signal
    (or the worker or the producer fails). Then stop the producer, let the worker
    finish the events sent (its /metrics counts them), stop it (SIGTERM: it prints
    its summary), and show the decisions to the end of their topic. A second signal
    stops the worker without waiting for it to finish; a third kills it."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.kafka import bootstrap, start_client
    from streams.settings import TANSU_AIOKAFKA_PRODUCER
    from streams.transfer import log_lines, produce

    run = _DevRun()
    stop, hurry, killed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
        elif not hurry.is_set():
            hurry.set()
        elif worker.poll() is None:
            worker.kill()
            killed.set()
            print("killed the worker", file=sys.stderr, flush=True)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    # The decisions topic is new (the worker created it on this new broker): read it
    # from its first offset, positioned before the first event is sent, so that no
    # decision goes by unshown (a consumer at "latest" misses those made before it
    # first fetched; and Tansu answers "latest" with the newest batch's base offset
    # + 1, not the high-water mark).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap(url), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await start_client(consumer, url, consumer.stop)
    tps = [TopicPartition(topics.decisions, p) for p in range(partitions)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)

    def show(batch: dict[Any, list[Any]]) -> None:
        shown = []
        for records in batch.values():
            for rec in records:
                try:
                    shown.append(describe(orjson.loads(rec.value)))
                except Exception:
                    shown.append(f"(not a decision: {rec.topic}[{rec.partition}] offset "
                                 f"{rec.offset})")
        if shown:
            sys.stdout.write("\n".join(shown) + "\n")
            sys.stdout.flush()
            run.shown += len(shown)

    print(header(), flush=True)
    producing = asyncio.create_task(produce(url, log_lines([log_path]), topics, rate=rate,
                                            producer_settings=TANSU_AIOKAFKA_PRODUCER,
                                            stop=stop))
    try:
        all_sent = False
        while not stop.is_set():
            if worker.poll() is not None:
                run.problem = f"the worker exited by itself, with status {worker.returncode}"
                break
            show(await consumer.getmany(timeout_ms=250))
            if producing.done() and not all_sent and not stop.is_set():
                if producing.exception() is not None:
                    run.problem = f"the producer failed: {producing.exception()}"
                    break
                all_sent = True
                print(f"all {producing.result().sent:,} events sent; Ctrl-C stops",
                      file=sys.stderr, flush=True)
        # Stopping: the producer, then the worker once it has finished the events sent
        # (decided them and stored their states: its summary counts them all).
        stop.set()
        with contextlib.suppress(Exception):
            run.sent = (await producing).sent
        if worker.poll() is None and run.problem is None:
            print(f"stopping: {run.sent:,} of {lines:,} events sent; the worker finishes "
                  "them (Ctrl-C again stops it now)", file=sys.stderr, flush=True)
            deadline = time.monotonic() + FINISH_TIMEOUT
            while not hurry.is_set() and worker.poll() is None:
                show(await consumer.getmany(timeout_ms=250))
                counted = await asyncio.to_thread(_events_counted, web_port)
                if counted is not None and counted >= run.sent:
                    run.finished = True
                    break
                if time.monotonic() > deadline:
                    print(f"the worker had not finished them within {FINISH_TIMEOUT:g} s",
                          file=sys.stderr, flush=True)
                    break
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while worker.poll() is None:
            show(await consumer.getmany(timeout_ms=250))
            if time.monotonic() > deadline and worker.poll() is None:
                worker.kill()
                killed.set()
                run.problem = "the worker did not stop within 60 s of SIGTERM: killed"
        if worker.returncode != 0 and not killed.is_set() and run.problem is None:
            run.problem = f"the worker stopped with status {worker.returncode}"
        with open(worker_log, encoding="utf-8", errors="replace") as f:
            run.summary = worker_summary(f.read())
        run.decisions = _decisions_counted(run.summary)
        await _read_to_end(consumer, tps, show, lambda: run.shown, run.decisions)
        if run.problem is None and run.decisions is not None and (
                run.shown < run.decisions or (run.finished and run.shown != run.decisions)):
            run.problem = "dev showed another count of decisions than the worker made"
    finally:
        stop.set()
        if not producing.done():
            producing.cancel()
        await consumer.stop()
    return run


async def _read_to_end(consumer: Any, tps: list[Any], show: Callable[[Any], None],
                       shown: Callable[[], int], expected: int | None,
                       idle: float = 1.0, timeout: float = 30.0) -> None:
    """Once the worker has exited, show the decisions to the end of their topic: every
    partition's position at the high-water mark its fetches report (not ListOffsets,
    wrong on Tansu) for `idle` seconds, and as many decisions shown as the worker
    counted (when its summary says); at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    caught_up_since: float | None = None
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        show(batch)
        at_end = True
        for tp in tps:
            hw = consumer.highwater(tp)
            at_end = at_end and hw is not None and await consumer.position(tp) >= hw
        if batch or not at_end or (expected is not None and shown() < expected):
            caught_up_since = None
        elif caught_up_since is None:
            caught_up_since = time.monotonic()
        elif time.monotonic() - caught_up_since >= idle:
            return
