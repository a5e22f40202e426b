"""The command line as its users read it, through the console script: the help of the
tool and of every command, the version, a command's errors under its own usage, and
one line when the broker cannot be reached."""

from __future__ import annotations

import os
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from streams.kafka import free_port
from tests.helpers import CLI, ROOT, usage_error

COMMANDS = ("replay", "backtest", "generate", "worker", "dev", "produce", "record")
EVENT = (b'{"event_id": "c-1", "event_type": "credit_report", "user_id": "u1", '
         b'"occurred_at": "2026-01-05T10:00:00Z", "bureau": "b", "credit_score": 640}\n')


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script with none of the caller's CLOSURE_MONITOR_ variables, and `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLOSURE_MONITOR_")}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**clean, "COLUMNS": "80", **env})


def words(text: str) -> str:
    """Text with its line wrapping undone."""
    return " ".join(text.split())


def option_helps(help_text: str) -> dict[str, str]:
    """Each entry of a help's lists of arguments and options ("--policy FILE", "LOG")
    -> its help, unwrapped."""
    entries: dict[str, str] = {}
    current: str | None = None
    listing = False
    for line in help_text.splitlines():
        if not line.startswith(" "):
            listing, current = line in ("positional arguments:", "options:"), None
        elif listing and not line.startswith("   "):
            name, _, rest = line.strip().partition("  ")
            current = name
            entries[current] = rest.strip()
        elif listing and current is not None:
            entries[current] = f"{entries[current]} {line.strip()}".strip()
    return entries


def test_the_tool_says_what_it_does_and_groups_its_commands() -> None:
    done = run("--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("usage: closure-monitor [-h] [--version] COMMAND ...\n"), text
    assert "parse arguments once" not in text
    assert "credit-line monitor" in words(text)
    groups = re.findall(r"^(\S[^\n]*):\n((?:  \S[^\n]*\n)+)", text, re.MULTILINE)
    listed = {title: [line.split()[0] for line in block.splitlines()]
              for title, block in groups}
    assert listed["decide over recorded logs (no broker needed)"] == [
        "replay", "backtest", "generate"]
    assert listed["one user's line"] == ["explain", "override"]
    assert listed["the policy"] == ["rollout"]
    assert listed["run live on Kafka"] == ["worker", "dev"]
    assert listed["move events between logs and Kafka"] == ["produce", "record"]
    examples = listed["examples"]
    assert examples and all(word == "closure-monitor" for word in examples)
    assert "  1    replay or backtest rejected every line of its logs" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_is_a_user_guide(command: str) -> None:
    """A description, examples of the command, the exit status, and every option with
    help text; each that takes a value gives its default (or says it is required) in
    one form: "(default: ...)"."""
    done = run(command, "--help")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"usage: closure-monitor {command} "), text
    description = text.split("\n\n")[1]
    assert len(words(description)) > 150 and not description.startswith(" "), description
    examples = text.split("\nexamples:\n")[1].split("\n\n")[0].splitlines()
    assert any(f"closure-monitor {command}" in line for line in examples), examples
    assert "\nexit status:" in text
    helps = option_helps(text)
    options = {name: h for name, h in helps.items() if name.startswith("-")}
    assert "-h, --help" in options and len(options) > 1, helps
    for name, help_ in helps.items():
        assert help_, f"{command} {name}: no help"
        takes_value = name.startswith("--") and " " in name.split(",")[0]
        if takes_value and not help_.startswith("no effect"):
            assert "(default: " in help_ or "(required" in help_, f"{command} {name}: {help_}"
        assert "(default " not in help_ and "; default " not in help_, help_  # one form


def test_the_version_is_the_package_s() -> None:
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"closure-monitor {version('closure-monitor')}\n"
    assert re.fullmatch(r"closure-monitor \d+\.\d+\.\d+.*\n", done.stdout)


@pytest.mark.parametrize("argv, message", [
    (["replay", "log.jsonl", "--bogus"], "unrecognized arguments: --bogus"),
    (["replay", "-", "-"], "stdin (-) can be read once only"),
    (["generate", "--users", "0"], "argument --users: '0' is not a whole number"),
    (["generate", "--malformed-share", "1"], "argument --malformed-share: '1' is not a "
                                             "fraction in [0, 1)"),
    (["worker", "--partitions", "0"], "--partitions 0: must be at least 1"),
    (["worker", "--web-port", "70000"], "--web-port 70000: not a port number"),
    (["dev", "--rate", "0"], "--rate, --users and --days must be positive"),
    (["produce", "log.jsonl", "--rate", "-5"], "--rate -5: must be a positive number"),
    (["record", "--follow", "now"], "unrecognized arguments: now"),
])
def test_a_command_s_argument_errors_come_under_its_own_usage(argv: list[str], message: str,
                                                              tmp_path: Path) -> None:
    """argparse's own errors and the ones the command finds after parsing alike; an
    error in what the arguments name (a file, the environment, a broker) stays one
    line (tests/unit/test_replay.py)."""
    (tmp_path / "log.jsonl").write_bytes(EVENT)
    done = subprocess.run([CLI, *argv], capture_output=True, timeout=120, cwd=tmp_path)
    usage_error(done, argv[0], message)
    assert "usage: closure-monitor [-h]" not in done.stderr.decode()


def test_backtest_shows_its_policy_as_required(tmp_path: Path) -> None:
    """The policy under test must be named: the usage says so, and a backtest without
    it is refused under that usage; CLOSURE_MONITOR_POLICY may still name it."""
    log = tmp_path / "log.jsonl"
    log.write_bytes(EVENT)
    text = run("backtest", "--help").stdout
    usage = words(text.split("\n\n")[0])
    assert " --policy FILE " in usage and "[--policy" not in usage, usage
    assert option_helps(text)["--policy FILE"].startswith("the policy under test")
    assert "(required" in option_helps(text)["--policy FILE"]
    done = run("backtest", str(log))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("usage: closure-monitor backtest [-h] --policy FILE "), lines
    assert lines[-1] == "closure-monitor backtest: error: --policy: backtest needs the policy " \
                        "to try", lines
    policy = str(ROOT / "deploy/policies/default.yaml")
    done = run("backtest", str(log), "--json", CLOSURE_MONITOR_POLICY=policy)
    assert done.returncode == 0, done.stderr
    assert '"policy": "2026.11-default"' in done.stdout


@pytest.mark.parametrize("command", ["produce", "record", "worker"])
def test_the_default_broker_is_named(command: str) -> None:
    helps = option_helps(run(command, "--help").stdout)
    assert helps["--broker URL"].endswith(
        "(default: kafka://127.0.0.1:9092; env CLOSURE_MONITOR_BROKER)"), helps["--broker URL"]


@pytest.mark.parametrize("command", ["produce", "record", "worker"])
def test_an_unreachable_broker_is_one_line(command: str, tmp_path: Path) -> None:
    """Nothing listens on the port: one line names the broker, and nothing else is
    printed (aiokafka's connection log, "Unclosed AIOKafkaProducer", tracebacks).
    ResourceWarnings are shown, as they would be in development."""
    log = tmp_path / "log.jsonl"
    log.write_bytes(EVENT)
    port = free_port()
    url = f"kafka://127.0.0.1:{port}"
    argv = {"produce": ["produce", str(log)], "record": ["record", "-o", str(log)],
            "worker": ["worker", "--web-port", str(free_port())]}[command]
    done = run(*argv, "--broker", url, PYTHONWARNINGS="default::ResourceWarning")
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"closure-monitor: cannot reach the Kafka broker at {url}: no "
                           f"connection could be made to 127.0.0.1:{port}; is it running, "
                           "and is that its address?\n")
    assert done.stdout == ""
    assert log.read_bytes() == EVENT  # record's output is opened once the broker answers
