"""The worker on the real (embedded) broker: live equals replay, failover, broker
stall, conservation, dead letters, and the commands around it."""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from streams.events import EVENT_TYPES
from streams.kafka import Topics, free_port, partition_for, port_open
from tests.helpers import final_states
from tests.live.helpers import CLI, Expected, Live, TopicReader, Worker, wait_for

pytestmark = pytest.mark.broker


def check_decisions(reader: TopicReader, topics: Topics, expected: Expected,
                    exact: bool) -> int:
    """Every decision equals replay's for the same id, none missing; returns re-emissions."""
    seen: dict[str, dict] = {}
    repeats = 0
    for record, value in zip(reader.records[topics.decisions], reader.values(topics.decisions),
                             strict=True):
        assert record.key == value["user_id"].encode()
        did = value["decision_id"]
        assert did in expected.decisions, f"a decision replay does not make: {value}"
        assert value == expected.decisions[did]
        if did in seen:
            repeats += 1
        seen[did] = value
    assert set(seen) == set(expected.decisions)
    if exact:
        assert repeats == 0
    return repeats


def check_dead_letters(reader: TopicReader, topics: Topics, expected: Expected,
                       exact: bool) -> None:
    """Every bad record is dead-lettered with its reason (once, unless a worker died:
    then a record may be dead-lettered again, recognisable by its source offset)."""
    letters = reader.values(topics.dead_letter)
    unique = {(d["topic"], d["partition"], d["offset"]): d for d in letters}
    if exact:
        assert len(unique) == len(letters)
    assert Counter(d["reason"] for d in unique.values()) == expected.rejected
    for letter in letters:
        assert letter["topic"] in topics.sources
        assert letter["partition"] in range(4) and letter["offset"] >= 0
        assert letter["detail"]
        assert "value" in letter or "value_base64" in letter


async def run_to_completion(live: Live, expected: Expected, sent: int,
                            exact: bool = True) -> int:
    topics = live.topics
    try:
        await live.wait_committed(sent)
    except AssertionError as exc:
        # Say whether the decisions are complete even so (commit stalled) or not.
        async with TopicReader(live.broker, topics.decisions) as reader:
            await reader.drain()
            ids = {v["decision_id"] for v in reader.values(topics.decisions)}
        raise AssertionError(f"{len(ids & set(expected.decisions))} of "
                             f"{len(expected.decisions)} decisions made; {exc}") from None
    async with TopicReader(live.broker, topics.decisions, topics.dead_letter) as reader:
        await reader.until(lambda: len(reader.records[topics.dead_letter])
                           >= sum(expected.rejected.values())
                           and len({orjson.loads(r.value)["decision_id"]
                                    for r in reader.records[topics.decisions]})
                           >= len(expected.decisions), 60, "every decision and dead letter")
        await reader.drain()
        check_dead_letters(reader, topics, expected, exact)
        return check_decisions(reader, topics, expected, exact)


def check_conservation(summary: dict[str, int], expected: Expected) -> None:
    assert summary["read"] == expected.read
    assert summary["applied"] == expected.applied
    assert summary["duplicates"] == expected.duplicates
    assert summary["rejected"] == sum(expected.rejected.values())


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
async def test_live_equals_replay_while_the_worker_runs(live: Live, live_log: Path,
                                                        store: str) -> None:
    expected = Expected.of(live_log)
    assert expected.late == 0 and expected.rejected and expected.duplicates
    await live.create_topics()
    worker = live.start_worker(store=store)
    await live.wait_web(worker)
    sent = await live.produce_lines(live_log)
    assert sent == expected.read
    await run_to_completion(live, expected, sent)
    # The worker's /metrics says the same: every record applied, duplicate or rejected.
    outcomes = Counter[str]()
    decisions = 0
    for family in scrape(worker.web_port):
        for sample in family.samples:
            assert "user_id" not in sample.labels
            if sample.name == "closure_monitor_events_total":
                outcomes[sample.labels["outcome"]] += int(sample.value)
            elif sample.name == "closure_monitor_decisions_total":
                decisions += int(sample.value)
    assert outcomes == {"applied": expected.applied, "duplicate": expected.duplicates,
                        "rejected": sum(expected.rejected.values())}
    assert decisions == len(expected.decisions)
    assert worker.stop() == 0
    check_conservation(worker.summary(), expected)


def scrape(port: int) -> list:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return list(text_string_to_metric_families(response.read().decode()))


async def on_a_backlog(live: Live, live_log: Path, *flags: str, tansu: bool = True
                       ) -> tuple[Expected, int, Worker]:
    """The log loaded topic by topic (all of one topic, then the next), then a worker."""
    expected = Expected.of(live_log)
    await live.create_topics()
    summary = await live.produce_topic_by_topic(live_log)
    assert summary.sent == expected.read
    return expected, summary.sent, live.start_worker(*flags, tansu=tansu)


async def test_live_equals_replay_from_a_backlog_loaded_topic_by_topic(
        live: Live, live_log: Path) -> None:
    expected, sent, worker = await on_a_backlog(live, live_log)
    await run_to_completion(live, expected, sent)
    assert worker.stop() == 0
    check_conservation(worker.summary(), expected)


async def test_back_pressure_pauses_inputs_and_loses_nothing(live: Live,
                                                              live_log: Path) -> None:
    """A backlog loaded topic by topic with a tiny --input-buffer: inputs ahead of the
    one holding the watermark pause (counted in /metrics) and resume, and the
    decisions and counts are still replay's."""
    expected, sent, worker = await on_a_backlog(live, live_log, "--input-buffer", "20")
    await live.wait_web(worker)
    await run_to_completion(live, expected, sent)
    pauses = {sample.labels["event_type"]: sample.value
              for family in scrape(worker.web_port) for sample in family.samples
              if sample.name == "closure_monitor_input_pauses_total"}
    assert worker.stop() == 0
    check_conservation(worker.summary(), expected)
    assert set(pauses) == set(EVENT_TYPES)  # every input's label, paused or not
    assert sum(pauses.values()) > 0


async def test_production_changelog_batches_hold_every_final_state(
        live: Live, live_log: Path) -> None:
    """With production settings the worker builds its changelog record batches itself
    (app.changelog_batches): read back, the changelog's last record for each user is
    the final state replay computes, and every user has one."""
    # (streams.progress imports Faust: imported here, not when the fast suite collects
    # this file.)
    from streams.progress import PROGRESS_KEY, decode_progress, progress_key

    expected, sent, worker = await on_a_backlog(live, live_log, tansu=False)
    await run_to_completion(live, expected, sent)
    assert worker.stop() == 0
    changelog = f"{live.app_id}-state-changelog"
    async with TopicReader(live.broker, changelog) as reader:
        await reader.drain()
        records = reader.records[changelog]
    last = {r.key: r.value for r in records if not r.key.startswith(PROGRESS_KEY)}
    assert len(records) > len(last)  # users written more than once: later records win
    assert last == final_states(live_log) and last
    for r in records:  # each at its user's partition, where a restore looks for it
        if r.key.startswith(PROGRESS_KEY):  # each partition's own, at that partition
            assert r.key == progress_key(r.partition)
        else:
            assert r.partition == partition_for(r.key, live.partitions)
    # The last progress record of each partition: every record of its inputs done.
    progress = {r.partition: decode_progress(r.value) for r in records
                if r.key.startswith(PROGRESS_KEY)}
    assert set(progress) == set(range(live.partitions))
    # every record, once run to completion
    committed = await live.committed_offsets(live.topics.sources)
    for p, inputs in progress.items():
        assert set(inputs) == set(live.topics.sources)
        for topic, done in inputs.items():
            assert done.below == committed[topic, p] and not done.ahead


async def test_rocksdb_worker_restarts_on_its_store(live: Live, live_log: Path,
                                                    tmp_path: Path) -> None:
    """A clean stop and a restart on the same RocksDB directory: the worker gets its
    users back (local store, then the changelog past the offsets the store kept)
    and carries on; the decisions equal replay's."""
    expected = Expected.of(live_log)
    await live.create_topics()
    data = str(tmp_path / "store")  # not "rocksdb": the cwd would shadow the module
    lines = _lines(live_log)
    half = len(lines) // 2
    # A cache of 8 decoded states over 4 partitions: most reads go to the store.
    first = live.start_worker("--data-dir", data, "--state-cache", "8", store="rocksdb")
    await live.wait_web(first)
    sent = (await live.produce(lines[:half])).sent
    await live.wait_committed(sent)
    assert first.stop() == 0
    second = live.start_worker("--data-dir", data, "--state-cache", "8", store="rocksdb")
    await live.wait_web(second)
    sent += (await live.produce(lines[half:])).sent
    await run_to_completion(live, expected, sent, exact=False)
    assert second.stop() == 0
    assert "users restored" in second.output()
    # What the first worker finished, the second skipped: each record counted once.
    check_conservation(summed(first, second), expected)


async def test_failover_survivor_restores_state_and_decides_the_same(
        live: Live, live_log: Path) -> None:
    expected = Expected.of(live_log)
    await live.create_topics()
    # The survivor keeps few decoded states: it restores more users than it caches.
    first, second = live.start_worker(), live.start_worker("--state-cache", "8")
    await live.wait_web(first)
    await live.wait_web(second)
    lines = _lines(live_log)
    producing = asyncio.create_task(live.produce(lines, rate=len(lines) / 20))
    topics = live.topics
    async with TopicReader(live.broker, topics.decisions) as reader:
        # Both workers are deciding (each owns partitions) before one dies.
        await reader.until_count(topics.decisions, len(expected.decisions) // 3, 90,
                                 "a third of the decisions")
    victim = first
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    summary = await producing
    repeats = await run_to_completion(live, expected, summary.sent, exact=False)
    survivor_log = second.output()
    assert second.stop() == 0
    # The survivor took the victim's partitions over with their users' state.
    assert "users restored" in survivor_log
    print(f"failover: {repeats} decisions re-emitted with their original ids")


async def test_scale_out_and_in_while_producing(live: Live, live_log: Path) -> None:
    """Two rebalances mid-stream: a second worker joins, then leaves cleanly. Records
    fetched in one consumer generation and handed over in the next are read again
    from the committed offsets; the decisions still equal replay's."""
    expected = Expected.of(live_log)
    await live.create_topics()
    first = live.start_worker()
    await live.wait_web(first)
    lines = _lines(live_log)
    producing = asyncio.create_task(live.produce(lines, rate=len(lines) / 30))
    topics = live.topics
    async with TopicReader(live.broker, topics.decisions) as reader:
        await reader.until_count(topics.decisions, len(expected.decisions) // 5, 90,
                                 "a fifth of the decisions")
        second = live.start_worker()
        await live.wait_web(second)

        async def second_applies() -> bool:
            return any(s.name == "closure_monitor_events_total" and s.value > 0
                       for family in scrape(second.web_port) for s in family.samples)

        # The newcomer owns partitions once it applies records; then it leaves.
        await wait_for(second_applies, 90, "the second worker to apply records")
    assert not producing.done(), "the log was all sent before the scale-in"
    assert second.stop() == 0
    assert second.summary()["read"] > 0
    summary = await producing
    await run_to_completion(live, expected, summary.sent, exact=False)
    assert first.stop() == 0
    # Records read again after each rebalance were skipped where a previous owner had
    # finished them, and counted by one worker otherwise: between them the two
    # workers counted every record once.
    check_conservation(summed(first, second), expected)
    assert skipped(first) + skipped(second) > 0


async def test_broker_stall_loses_nothing(live: Live, live_log: Path) -> None:
    expected = Expected.of(live_log)
    await live.create_topics()
    worker = live.start_worker()
    await live.wait_web(worker)
    lines = _lines(live_log)
    half = len(lines) // 2
    first = await live.produce(lines[:half])
    topics = live.topics
    async with TopicReader(live.broker, topics.decisions) as reader:
        await reader.until_count(topics.decisions, 1, 60, "the first decisions")
    live.broker.pause()
    try:
        await asyncio.sleep(20)  # the stall itself is what is tested
    finally:
        live.broker.resume()
    second = await live.produce(lines[half:])
    await run_to_completion(live, expected, first.sent + second.sent, exact=False)
    assert worker.stop() == 0
    assert worker.process.returncode == 0
    check_conservation(worker.summary(), expected)


def summed(*workers: Worker) -> dict[str, int]:
    """The workers' shutdown counts added up."""
    summaries = [worker.summary() for worker in workers]
    return {key: sum(summary[key] for summary in summaries) for key in summaries[0]}


def skipped(worker: Worker) -> int:
    """Records the worker skipped as finished by a previous owner (its summary)."""
    m = re.search(r"skipped ([\d,]+) that a previous owner", worker.output())
    assert m, worker.output()[-3000:]
    return int(m.group(1).replace(",", ""))


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


async def test_misrouted_and_mis_keyed_records(live: Live) -> None:
    """A record in the wrong partition is sent to its user's partition; a key that is
    not the user_id is dead-lettered."""
    from aiokafka import AIOKafkaProducer

    await live.create_topics()
    worker = live.start_worker()
    await live.wait_web(worker)
    topics = live.topics
    uid = "u-misrouted"
    home = partition_for(uid.encode(), live.partitions)
    wrong = (home + 1) % live.partitions
    base = {"event_type": "credit_report", "user_id": uid, "bureau": "pboc",
            "occurred_at": "2026-03-01T10:00:00Z", "credit_score": 420}
    producer = AIOKafkaProducer(bootstrap_servers=live.broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.report_changes,
                                     orjson.dumps({**base, "event_id": "e-1"}),
                                     key=uid.encode(), partition=wrong)
        await producer.send_and_wait(topics.report_changes,
                                     orjson.dumps({**base, "event_id": "e-2"}),
                                     key=b"someone-else", partition=home)
    finally:
        await producer.stop()
    async with TopicReader(live.broker, topics.decisions, topics.dead_letter,
                           topics.report_changes) as reader:
        await reader.until(lambda: len(reader.records[topics.decisions]) >= 1
                           and len(reader.records[topics.dead_letter]) >= 1, 60,
                           "the rerouted record's decision and the dead letter")
        decision = reader.values(topics.decisions)[0]
        assert decision["user_id"] == uid and decision["trigger_event_id"] == "e-1"
        assert reader.records[topics.decisions][0].partition == home
        letter = reader.values(topics.dead_letter)[0]
        assert letter["reason"] == "key_mismatch" and letter["partition"] == home
        copies = [r for r in reader.records[topics.report_changes]
                  if orjson.loads(r.value)["event_id"] == "e-1"]
        assert sorted(r.partition for r in copies) == sorted([wrong, home])
    assert worker.stop() == 0
    summary = worker.summary()
    assert summary == {"read": 2, "applied": 1, "duplicates": 0, "rejected": 1}


async def test_produce_and_record_round_trip(live: Live, live_log: Path, tmp_path: Path) -> None:
    await live.create_topics()
    produced = subprocess.run([*CLI, "produce", str(live_log), "--broker", live.broker.url,
                               "--topic-prefix", live.prefix], capture_output=True, text=True,
                              timeout=120)
    assert produced.returncode == 0, produced.stderr
    lines = _lines(live_log)
    assert f"produced {len(lines):,} records" in produced.stderr
    out = tmp_path / "recorded.jsonl"
    recorded = subprocess.run([*CLI, "record", "--broker", live.broker.url, "--topic-prefix",
                               live.prefix, "--output", str(out)], capture_output=True,
                              text=True, timeout=120)
    assert recorded.returncode == 0, recorded.stderr
    assert Counter(_lines(out)) == Counter(lines)
    # The recorded log decides like the original (the reader orders by event time).
    assert Expected.of(out).decisions == Expected.of(live_log).decisions


async def test_worker_creates_its_tick_topic_with_a_short_retention(live: Live) -> None:
    """Ticks are read once, right after they are sent: their topic keeps an hour."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.settings import TICKS_TOPIC_CONFIG, Settings
    from streams.worker import prepare

    settings = Settings(broker=live.broker.url, topic_prefix=live.prefix, app_id=live.app_id,
                        partitions=live.partitions)
    await prepare(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=live.broker.bootstrap)
    await admin.start()
    try:
        found = {}
        for name in (settings.ticks_topic, settings.topics.decisions):
            response = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)])
            found[name] = {entry[0]: entry[1] for entry in response[0].resources[0][4]}
    finally:
        await admin.close()
    assert found[settings.ticks_topic]["retention.ms"] == TICKS_TOPIC_CONFIG["retention.ms"]
    assert found[settings.topics.decisions].get("retention.ms") != "3600000"


def test_worker_refuses_an_unreachable_broker() -> None:
    dead = f"kafka://127.0.0.1:{free_port()}"
    run = subprocess.run([*CLI, "worker", "--broker", dead, "--web-port", str(free_port())],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0
    assert "cannot reach the Kafka broker" in run.stderr and dead in run.stderr


def test_worker_refuses_a_bad_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: x\nrules: 3\n")
    run = subprocess.run([*CLI, "worker", "--policy", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith("closure-monitor: ") and run.stderr.count("\n") == 1


def test_worker_names_a_web_port_in_use() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        run = subprocess.run([*CLI, "worker", "--web-port", str(port)], capture_output=True,
                             text=True, timeout=60)
    assert run.returncode == 2
    assert f"127.0.0.1:{port}" in run.stderr and "--web-port" in run.stderr


def start_dev(cwd: Path, *flags: str) -> tuple[subprocess.Popen[bytes], int]:
    """`closure-monitor dev` with these flags (a small log at a high rate); its web port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOSURE_MONITOR_")}
    proc = subprocess.Popen([*CLI, "dev", "--web-port", str(port), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            env={**env, "PYTHONUNBUFFERED": "1"})
    return proc, port


def read_stdout(proc: subprocess.Popen[bytes], lines: int, timeout: float) -> bytes:
    """Dev's stdout as soon as it holds `lines` lines (and whatever came with them),
    read from the pipe itself: `communicate` then reads the rest."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    out = b""
    try:
        while out.count(b"\n") < lines:
            assert proc.poll() is None, f"dev exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"fewer than {lines} lines in {timeout:g} s"
            if sel.select(timeout=1):
                out += os.read(fd, 65536)
    finally:
        sel.close()
    return out


def stop_dev(proc: subprocess.Popen[bytes], sig: int) -> tuple[str, str]:
    """Send the signal; the rest of stdout and all of stderr once dev has exited."""
    try:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out.decode(), err.decode()


def check_dev_output(out: str, err: str) -> int:
    """The header, the decisions in its columns, the worker's summary (of every event
    sent) and the count of decisions shown (the worker's own, and the decision
    lines'): returns that count."""
    lines = out.splitlines()
    header, *rows = lines
    assert header.split() == ["EVENT", "TIME", "USER", "ACTION", "BEFORE", "->", "AFTER",
                              "REASONS", "MESSAGE"], header
    starts = [header.index(name) for name in ("USER", "ACTION", "BEFORE", "AFTER", "REASONS",
                                              "MESSAGE")]
    arrow = header.index("->")
    for row in rows:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d  u\d{6} ", row), row
        for start in starts:  # every column starts under its name
            assert row[start - 1] == " " and row[start] != " ", (header, row)
        assert row[arrow:arrow + 2] == "->", (header, row)
        assert row.split()[3] in ("warn", "downgrade", "close", "restore"), row
    summary = re.search(r"events read ([\d,]+): applied ([\d,]+), duplicates ([\d,]+), "
                        r"rejected ([\d,]+); late ([\d,]+)\n", err)
    sent = re.search(r"stopping: ([\d,]+) of [\d,]+ events sent; the worker finishes them",
                     err)
    assert summary and sent, err
    assert summary.group(1) == sent.group(1) != "0"
    by_action = re.search(r"\n  decisions ([\d,]+): ((?:warn|downgrade|close|restore) \d)",
                          err)
    assert by_action, err
    decisions = int(by_action.group(1).replace(",", ""))
    shown = re.search(r"\n([\d,]+) decisions shown, every decision the worker made\n", err)
    assert shown, err
    assert int(shown.group(1).replace(",", "")) == decisions == len(rows)
    return decisions


def test_dev_shows_decisions_in_columns_and_the_worker_summary_on_ctrl_c(
        tmp_path: Path) -> None:
    """Ctrl-C mid-stream: the producer stops, the worker finishes what it read, and dev
    shows every decision it made (none missed at the start or at the stop), then the
    worker's summary, and removes its temporary folder."""
    # 11,051 events at 1,000 a second: stopped while the producer sends them.
    proc, port = start_dev(tmp_path, "--users", "1000", "--days", "180", "--rate", "1000")
    try:
        first = read_stdout(proc, 1 + 30, 120)  # the header and 30 decisions
        assert port_open("127.0.0.1", port)
    finally:
        out, err = stop_dev(proc, signal.SIGINT)
    assert proc.returncode == 0, err
    assert "producing 11,051 events at 1000/s (--rate)" in err
    check_dev_output(first.decode() + out, err)
    folder = re.search(r"^logs in (\S+), removed at exit unless --keep", err, re.MULTILINE)
    assert folder, err
    assert f"removed {folder.group(1)} with its logs" in err
    assert not Path(folder.group(1)).exists()
    assert err.rstrip().endswith("stopped")
    broker = re.search(r"embedded broker \(Tansu\) on 127.0.0.1:(\d+)", err)
    assert broker and not port_open("127.0.0.1", int(broker.group(1)))
    assert not port_open("127.0.0.1", port)
    assert not list(tmp_path.iterdir())  # its files are under its own temporary folder


def test_dev_stops_on_sigterm_and_keeps_its_logs_with_keep(tmp_path: Path) -> None:
    proc, _ = start_dev(tmp_path, "--users", "300", "--days", "150", "--rate", "1000",
                        "--keep")
    try:
        first = read_stdout(proc, 1 + 1, 120)
    finally:
        out, err = stop_dev(proc, signal.SIGTERM)
    folder = re.search(r"^logs kept in (\S+) \(worker.log, broker.log\)$", err, re.MULTILINE)
    assert folder, err
    try:
        assert proc.returncode == 0, err
        decisions = check_dev_output(first.decode() + out, err)
        worker_log = (Path(folder.group(1)) / "worker.log").read_text()
        assert f"decisions {decisions:,}: " in worker_log
        assert (Path(folder.group(1)) / "broker.log").exists()
    finally:
        shutil.rmtree(folder.group(1))


async def test_wait_for_reports_what_it_waited_for() -> None:
    async def never() -> bool:
        return False
    with pytest.raises(AssertionError, match="the impossible"):
        await wait_for(never, 0.3, "the impossible", poll=0.1)


@pytest.mark.parametrize(("flags", "wait_ms"), [([], 500), (["--tansu"], 50),
                                                (["--fetch-max-wait", "0.2"], 200)])
async def test_the_fetch_wait_reaches_the_kafka_consumer(flags: list[str], wait_ms: int,
                                                          tmp_path: Path) -> None:
    """Faust hard-codes a 1.5 s fetch wait; the worker's setting replaces it."""
    from streams.app import build_app
    from streams.cli import _parser
    from streams.cli_live import _settings
    from streams.policy import load_policy

    args = _parser().parse_args(["worker", "--broker", "kafka://127.0.0.1:1",
                                 "--data-dir", str(tmp_path / "data"), *flags])
    app, _ = build_app(_settings(args), load_policy())
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert consumer._fetch_max_wait_ms == wait_ms
    finally:
        await consumer.stop()


async def test_live_order_decides_an_event_once_every_input_reaches_its_time(
        live: Live) -> None:
    """The worker's default order (no lateness, no idle timeout, as Kafka Streams'
    max.task.idle.ms = 0): a report's decision goes out while another input of its
    partition keeps delivering later events, which under --strict-order would hold
    it back for the 600 s of lateness (in event time) the whole while."""
    from aiokafka import AIOKafkaProducer

    await live.create_topics()
    worker = live.start_worker(strict=False)
    await live.wait_web(worker)
    topics = live.topics
    flagged, busy = "u-flagged", "u-busy"
    home = partition_for(flagged.encode(), live.partitions)
    busy = next(f"u-busy-{i}" for i in range(1000)
                if partition_for(f"u-busy-{i}".encode(), live.partitions) == home)
    t0 = 1_772_360_000  # 2026-03-01T10:13:20Z
    stamp = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    producer = AIOKafkaProducer(bootstrap_servers=live.broker.bootstrap, linger_ms=0)
    await producer.start()
    stop = asyncio.Event()

    async def keep_applying() -> int:
        """`busy` applies for credit every 0.1 s of wall time, a second of event time
        apart, from just after the report, until told to stop (at most 120 s)."""
        n = 0
        while not stop.is_set() and n < 1200:
            n += 1
            await producer.send_and_wait(topics.applications, orjson.dumps({
                "event_id": f"a-{n}", "event_type": "application", "user_id": busy,
                "occurred_at": stamp(t0 + n), "application_id": f"app-{n}",
                "product": "cash_loan", "kind": "limit_increase",
                "requested_amount": 1000}), key=busy.encode(), partition=home)
            await asyncio.sleep(0.1)
        return n

    try:
        applying = asyncio.create_task(keep_applying())
        await producer.send_and_wait(topics.report_changes, orjson.dumps({
            "event_id": "r-1", "event_type": "credit_report", "user_id": flagged,
            "bureau": "pboc", "occurred_at": stamp(t0), "delinquent_accounts": 3}),
            key=flagged.encode(), partition=home)
        async with TopicReader(live.broker, topics.decisions) as reader:
            await reader.until(
                lambda: any(v["user_id"] == flagged for v in reader.values(topics.decisions)),
                60, "the flagged user's decision")
            assert not applying.done()  # the other input was still delivering
            decision = next(v for v in reader.values(topics.decisions)
                            if v["user_id"] == flagged)
            assert decision["trigger_event_id"] == "r-1"
            assert decision["reasons"][0]["code"] == "EXTERNAL_DELINQUENCY"
        stop.set()
        sent = await applying

        async def all_counted() -> bool:
            # (a record counts once final: its state stored and the changelog's)
            return sum(s.value for family in scrape(worker.web_port) for s in family.samples
                       if s.name == "closure_monitor_events_total") >= sent + 1
        await wait_for(all_counted, 60, f"{sent + 1} records counted by the worker")
    finally:
        stop.set()
        await producer.stop()
    assert worker.stop() == 0
    summary = worker.summary()
    assert summary["read"] == summary["applied"] == sent + 1
