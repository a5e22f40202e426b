"""The worker's command line: flags to Settings, and bad values refused with one line."""

from __future__ import annotations

import os

import pytest

from streams.app import DEFAULT_IDLE_TIMEOUT
from streams.cli import _parser, main
from streams.cli_live import _settings
from streams.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLOSURE_MONITOR_"):
            monkeypatch.delenv(name)


def settings(*argv: str):  # type: ignore[no-untyped-def]
    return _settings(_parser().parse_args(["worker", *argv]))


def test_defaults() -> None:
    s = settings()
    assert (s.idle_timeout, s.lateness, s.partitions, s.web_port) == (
        DEFAULT_IDLE_TIMEOUT, 600.0, 8, 6066)


def test_zero_idle_timeout_is_kept() -> None:
    # Kafka Streams' max.task.idle.ms default: an input caught up with the broker never
    # holds the watermark. Zero is a value, not "unset".
    assert settings("--idle-timeout", "0").idle_timeout == 0.0
    assert settings("--lateness", "0", "--idle-timeout", "0.25").lateness == 0.0


@pytest.mark.parametrize("argv", [
    ["--idle-timeout", "-1"], ["--idle-timeout", "nan"], ["--idle-timeout", "soon"],
    ["--lateness", "-600"], ["--lateness", "inf"],
])
def test_bad_seconds_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["worker", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert argv[0] in err and "seconds" in err


@pytest.mark.parametrize("argv, message", [
    (["--partitions", "0"], "--partitions"),
    (["--web-port", "0"], "--web-port 0"),
])
def test_zero_counts_are_refused_not_defaulted(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(*argv)


def test_each_event_type_has_its_own_input_topic_behind_the_prefix() -> None:
    from streams.events import EVENT_TYPES
    from streams.kafka import Topics

    topics = Topics("t.")
    assert [topics.for_type(t) for t in EVENT_TYPES] == list(topics.inputs)
    assert topics.for_type("credit_report") == "t.credit.report-changes"
    assert len(set(topics.all())) == 5 and all(n.startswith("t.") for n in topics.all())
    with pytest.raises(KeyError):
        topics.for_type("decision")
