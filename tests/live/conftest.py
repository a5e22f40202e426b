"""The fixtures of the broker tests: the embedded Tansu broker (one per session), a
generated log, and one test's topics, group and workers on that broker.

Only the broker tests (tests/live/) see these fixtures. They import the broker's
and the Kafka client's modules when a test first asks for them, not when this
file is read: collecting the fast suite (`pytest -m "not broker and not
prometheus and not browser"`) reads it too.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from streams.kafka import EmbeddedBroker
    from tests.live.helpers import Live


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The embedded Tansu broker, one per test session; tests use their own topics."""
    from streams.kafka import EmbeddedBroker

    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=str(log)) as broker:
        yield broker


@pytest.fixture(scope="session")
def live_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated log with corrections, duplicates and malformed lines."""
    path = tmp_path_factory.mktemp("logs") / "live.jsonl"
    subprocess.run([sys.executable, "-m", "streams.cli", "generate", "--users", "300",
                    "--days", "150", "--seed", "5", "--malformed-share", "0.01",
                    "--output", str(path)], check=True, capture_output=True)
    return path


@pytest.fixture
def live(kafka: EmbeddedBroker, tmp_path: Path) -> Iterator[Live]:
    """One test's topics, consumer group and workers; workers left running are killed."""
    from tests.live.helpers import Live

    setup = Live(kafka, tmp_path)
    yield setup
    for worker in setup.workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
