"""`closure-monitor worker`: checks, topic creation, then the Faust worker."""

from __future__ import annotations

import asyncio
import socket
import sys

from streams.app import build_app
from streams.errors import PortInUseError
from streams.kafka import check_broker, ensure_topics
from streams.policy import Policy
from streams.replay import summary_lines
from streams.settings import TICKS_TOPIC_CONFIG, Settings


def check_port(host: str, port: int) -> None:
    """Fail early, naming the port, rather than deep inside the web server."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"web/metrics port {host}:{port} is not available ({exc.strerror}); "
                "pass another with --web-port") from None


async def prepare(settings: Settings) -> None:
    """The broker answers, and the topics exist with the expected partition counts."""
    await check_broker(settings.broker)
    topics = settings.topics
    await ensure_topics(settings.broker, (*topics.all(), settings.ticks_topic),
                        settings.partitions,
                        configs={settings.ticks_topic: TICKS_TOPIC_CONFIG},
                        replication_factor=settings.replication_factor)


def run_worker(settings: Settings, policy: Policy) -> int:
    check_port(settings.web_host, settings.web_port)
    asyncio.run(prepare(settings))
    # Faust's worker owns the event loop from here and handles SIGTERM/SIGINT.
    import faust
    app, shell = build_app(settings, policy)
    worker = faust.Worker(app, loglevel=settings.loglevel, redirect_stdouts=False,
                          quiet=True, loop=asyncio.new_event_loop())
    # Faust's terminal spinner sets the root logger to DEBUG so that every record
    # (aiokafka logs each send at debug) can turn it: a large cost per event.
    worker.spinner = None
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = int(exc.code or 0)
    # What this worker did, in replay's words (the operator's and the tests' record).
    for line in summary_lines(shell.tally):
        print(line, file=sys.stderr)
    print(f"rerouted {shell.rerouted:,} records to their user's partition; "
          f"skipped {shell.skipped:,} that a previous owner of their partition had "
          f"finished; {shell.buffered:,} still buffered at shutdown (redelivered on "
          "restart)", file=sys.stderr, flush=True)
    for line in shell.stuck():
        print(f"  {line}", file=sys.stderr, flush=True)
    return code
