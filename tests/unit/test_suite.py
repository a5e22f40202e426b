"""The test suite itself: its fast part (`-m "not broker and not prometheus and not
browser"`) is collected without Faust imported and is all but tests/live/, where
every test is a broker test, and tests/browser/, where every test is a browser test;
the broker and browser fixtures import nothing of the broker's, Kafka's or
Selenium's when their file is read; the README gives the fast part's command."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.helpers import ROOT

FAST = ("-m", "not broker and not prometheus and not browser")

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


def test_the_fast_suite_is_collected_without_faust_and_is_all_but_live_and_browser() -> None:
    """The fast suite holds no broker, prometheus or browser test; the broker tests
    (every test marked broker, prometheus ones included) are those of tests/live/, the
    browser tests those of tests/browser/ (the page of a worker is both)."""
    run = subprocess.run([sys.executable, "-c", COLLECT, *FAST], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    found: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    assert found["code"] == 0, run.stdout[-3000:]
    assert not found["faust"], "collecting the fast suite imported Faust"
    selected, deselected = found["selected"], found["deselected"]
    assert len(selected) > 500 and deselected
    assert {nodeid.split("/")[1] for nodeid, _ in selected} == {"unit", "shell", "deploy"}
    assert not [nodeid for nodeid, marks in selected
                if {"broker", "prometheus", "browser"} & set(marks)]
    for nodeid, marks in deselected:
        kind = nodeid.split("/")[1]
        assert ((kind == "live" and "broker" in marks)
                or (kind == "browser" and "browser" in marks)), (nodeid, marks)
    assert {nodeid.split("/")[1] for nodeid, _ in deselected} == {"live", "browser"}


def test_the_readme_gives_the_fast_suite_s_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f'.venv/bin/pytest -m "{FAST[1]}"' in " ".join(readme.split())


def test_the_broker_and_browser_fixtures_import_no_broker_or_browser_module_when_read(
        ) -> None:
    check = ("import sys, tests.live.conftest, tests.browser.conftest; "
             "print(sorted(m for m in ('faust', 'aiokafka', 'streams.kafka', 'tests.live.helpers',"
             " 'selenium') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
