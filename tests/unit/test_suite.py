"""The test suite itself: its fast part (`-m "not broker and not prometheus"`) is
collected without Faust imported and is all but tests/live/, where every test is a
broker test; the broker fixtures import nothing of the broker's or Kafka's when
their file is read."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.helpers import ROOT

FAST = ("-m", "not broker and not prometheus")

# Collects the suite in a fresh interpreter (pytest.main with these arguments, in
# collect-only mode), then says which tests it selected and which the markers
# deselected, with their markers, and whether Faust was imported meanwhile.
COLLECT = """
import json, sys
import pytest

def described(items):
    return [(item.nodeid, sorted({m.name for m in item.iter_markers()})) for item in items]

class Collected:
    selected, deselected = [], []

    def pytest_deselected(self, items):
        Collected.deselected += described(items)

    def pytest_collection_finish(self, session):
        Collected.selected = described(session.items)

code = pytest.main([*sys.argv[1:], "--collect-only", "-q", "-p", "no:cacheprovider"],
                   plugins=[Collected()])
print(json.dumps({"code": int(code), "faust": "faust" in sys.modules,
                  "selected": Collected.selected, "deselected": Collected.deselected}))
"""


def test_the_fast_suite_is_collected_without_faust_and_is_all_but_tests_live() -> None:
    """The fast suite holds no broker or prometheus test; the broker tests (every test
    marked broker, prometheus ones included) are those of tests/live/."""
    run = subprocess.run([sys.executable, "-c", COLLECT, *FAST], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    found: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    assert found["code"] == 0, run.stdout[-3000:]
    assert not found["faust"], "collecting the fast suite imported Faust"
    selected, deselected = found["selected"], found["deselected"]
    assert len(selected) > 500 and deselected
    assert {nodeid.split("/")[1] for nodeid, _ in selected} == {"unit", "shell", "deploy"}
    assert not [nodeid for nodeid, marks in selected if {"broker", "prometheus"} & set(marks)]
    for nodeid, marks in deselected:
        assert nodeid.startswith("tests/live/") and "broker" in marks, (nodeid, marks)


def test_the_broker_fixtures_import_no_broker_module_when_read() -> None:
    check = ("import sys, tests.live.conftest; "
             "print(sorted(m for m in ('faust', 'aiokafka', 'streams.kafka', 'tests.live.helpers')"
             " if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
