"""The worker's command line: flags to Settings, and bad values refused with one line."""

from __future__ import annotations

import os

import pytest

from streams.cli import _parser, main
from streams.cli_live import _settings
from streams.errors import ConfigError
from streams.settings import DEFAULT_IDLE_TIMEOUT


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
        DEFAULT_IDLE_TIMEOUT, 0.0, 8, 6066)
    assert DEFAULT_IDLE_TIMEOUT == 0.0  # Kafka Streams' max.task.idle.ms default


def test_strict_order_waits_as_replay_does_unless_told_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    strict = settings("--strict-order")
    assert (strict.lateness, strict.idle_timeout) == (600.0, 2.0)
    assert settings("--strict-order", "--lateness", "60").lateness == 60.0
    assert settings("--strict-order", "--idle-timeout", "0.5").idle_timeout == 0.5
    monkeypatch.setenv("CLOSURE_MONITOR_STRICT_ORDER", "1")
    assert _settings(_parser().parse_args(["worker"])).lateness == 600.0


def test_the_replication_factor_reaches_every_topic_the_worker_creates(
        monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]) -> None:
    """Flag or environment; Faust declares the changelog with it, and `prepare`
    creates the input, decision, dead-letter and tick topics with it."""
    import asyncio

    from streams import worker
    from streams.app import build_app
    from streams.policy import load_policy

    assert settings().replication_factor == 1
    monkeypatch.setenv("CLOSURE_MONITOR_REPLICATION_FACTOR", "2")
    assert settings().replication_factor == 2
    s = settings("--replication-factor", "3", "--data-dir", str(tmp_path))
    assert s.replication_factor == 3
    app, _ = build_app(s, load_policy())
    declared: list[tuple[str, object]] = []

    class Producer:
        async def create_topic(self, topic: str, replication: int, **kw: object) -> None:
            declared.append((topic, replication))

    async def producer() -> Producer:
        return Producer()

    changelog = app.tables["state"].changelog_topic
    changelog._get_producer = producer
    asyncio.run(changelog.declare())  # as Faust declares it at start
    assert declared == [(changelog.get_topic_name(), 3)]
    created: list[tuple[tuple[str, ...], int]] = []

    async def ensure_topics(url: str, names: tuple[str, ...], partitions: int, **kw: object
                            ) -> None:
        created.append((names, kw["replication_factor"]))  # type: ignore[arg-type]

    async def check_broker(url: str) -> None:
        return None

    monkeypatch.setattr(worker, "ensure_topics", ensure_topics)
    monkeypatch.setattr(worker, "check_broker", check_broker)
    asyncio.run(worker.prepare(s))
    assert created == [((*s.topics.all(), s.ticks_topic), 3)]


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
    (["--replication-factor", "0"], "--replication-factor 0"),
    (["--state-cache", "0"], "--state-cache 0"),
])
def test_zero_counts_are_refused_not_defaulted(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(*argv)


def test_a_state_cache_is_accepted_and_said_to_do_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert settings() == settings("--state-cache", "8")
    assert capsys.readouterr().err.count("--state-cache") == 1
    monkeypatch.setenv("CLOSURE_MONITOR_STATE_CACHE", "8")
    settings()
    assert "has no effect" in capsys.readouterr().err


def test_each_event_type_has_its_own_input_topic_behind_the_prefix() -> None:
    from streams.events import EVENT_TYPES
    from streams.kafka import Topics

    topics = Topics("t.")
    assert [topics.for_type(t) for t in EVENT_TYPES] == list(topics.inputs)
    assert topics.for_type("credit_report") == "t.credit.report-changes"
    assert len(set(topics.all())) == 7 and all(n.startswith("t.") for n in topics.all())
    with pytest.raises(KeyError):
        topics.for_type("decision")


def test_a_topic_the_broker_refuses_is_named_with_its_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Apache Kafka refuses more replicas than it has brokers (the embedded broker
    accepts any count, so the admin client is stood in for here): the error names
    the topic and the broker's reason, and the missing topic is never described
    (a metadata request can auto-create it with the broker's defaults)."""
    import asyncio
    from types import SimpleNamespace

    from streams import kafka
    from streams.errors import BrokerError

    requested: list[int] = []

    class Admin:
        def __init__(self, **kw: object) -> None:
            pass

        async def start(self) -> None:
            return None

        async def close(self) -> None:
            return None

        async def list_topics(self) -> list[str]:
            return ["t.credit.repayments"]

        async def create_topics(self, topics: list[object]) -> object:
            requested.extend(t.replication_factor for t in topics)  # type: ignore[attr-defined]
            return SimpleNamespace(topic_errors=[
                ("t.credit.applications", 36, "Topic with this name already exists."),
                ("t.credit.decisions", 38, "Replication factor: 3 larger than available "
                                           "brokers: 1.")])

        async def describe_topics(self, names: list[str]) -> list[object]:
            raise AssertionError(f"described {names}")

    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", Admin)
    with pytest.raises(BrokerError) as exc:
        asyncio.run(kafka.ensure_topics("kafka://k:9092", kafka.Topics("t.").all(), 8,
                                        replication_factor=3))
    assert str(exc.value) == (
        "topic t.credit.decisions could not be created on kafka://k:9092 "
        "(InvalidReplicationFactorError: Replication factor: 3 larger than available "
        "brokers: 1.)")
    assert requested == [3, 3, 3, 3, 3, 3]  # every missing topic, none that exists
