"""A real Prometheus scrapes a worker on the embedded broker: the project's scrape
config and recording rules, every exported metric present with its contracted
labels, and every Grafana panel query answering with data.

Needs the Debian package `prometheus` (the server binary, not only promtool).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.kafka import free_port
from tests.deployment import (
    ALERTS,
    EXPORTED_METRICS,
    PROMETHEUS_CONFIG,
    SCRAPE_JOB,
    dashboard_queries,
)
from tests.live.helpers import Live, wait_for

pytestmark = [pytest.mark.prometheus, pytest.mark.broker]

# Rates need two scrapes in their window and recording rules an evaluation or two:
# with 1 s intervals a few seconds suffice; this is the most a query may take.
SETTLE = 60.0


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def get(self, path: str, **params: str) -> Any:
        """The `data` of a JSON API answer (asserting its status is success)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", (expr, data)
        return list(data["result"])

    def ready(self) -> bool:
        assert self.process.poll() is None, f"Prometheus exited:\n{self.output()}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def target_up(self, target: str) -> bool:
        active = self.get("/api/v1/targets", state="active")["activeTargets"]
        return any(t["labels"].get("instance") == target and t["health"] == "up"
                   for t in active)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def scrape_config(target: str) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, changed only where a test must: the target,
    1 s intervals and the rules file's absolute path."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    assert config["rule_files"] == [ALERTS.name]
    config["rule_files"] = [str(ALERTS)]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == SCRAPE_JOB]
    job["static_configs"] = [{"targets": [target]}]
    return config


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    """Starts Prometheus scraping one target; stopped at teardown."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found on PATH: apt-get install -y prometheus")
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(scrape_config(target)), encoding="utf-8")
        port = free_port()
        log = tmp_path / "prometheus.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [binary, f"--config.file={config}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        server = Prometheus(process, f"http://127.0.0.1:{port}", log)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _finite(sample: dict[str, Any]) -> bool:
    return math.isfinite(float(sample["value"][1]))


async def _until_answered(prom: Prometheus, exprs: list[str], timeout: float,
                          accept: Callable[[list[dict[str, Any]]], bool]) -> list[str]:
    """Polls the queries until `accept` holds for each; returns those that never did."""
    pending = list(dict.fromkeys(exprs))
    deadline = time.monotonic() + timeout
    while pending:
        pending = [expr for expr in pending if not accept(prom.query(expr))]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    return pending


async def test_prometheus_scrapes_the_worker_and_every_panel_has_data(
        live: Live, live_log: Path, prometheus: Callable[[str], Prometheus]) -> None:
    await live.create_topics()
    worker = live.start_worker()
    await live.wait_web(worker)
    target = f"127.0.0.1:{worker.web_port}"
    prom = prometheus(target)

    async def ready() -> bool:
        return prom.ready()
    await wait_for(ready, 60, "Prometheus to be ready", poll=0.3)

    async def up() -> bool:
        return prom.target_up(target)
    await wait_for(up, 30, f"the scrape target {target} to be up", poll=0.3)

    # Produced only once Prometheus scrapes: the window of every rate() then holds
    # samples from before and after the work, so rates and quantiles are real numbers.
    sent = await live.produce_lines(live_log)
    await live.wait_committed(sent)

    async def all_counted() -> bool:
        got = prom.query(f'sum(closure_monitor_events_total{{instance="{target}"}})')
        return bool(got) and float(got[0]["value"][1]) == sent
    await wait_for(all_counted, SETTLE, f"Prometheus to count all {sent} input records",
                   poll=1.0)

    # Every exported metric is there, with exactly its contracted labels.
    names = {name: [f"{name}_bucket", f"{name}_count"] if kind == "histogram" else [name]
             for name, (kind, _) in EXPORTED_METRICS.items()}
    missing = await _until_answered(prom, [n for ns in names.values() for n in ns], SETTLE,
                                    bool)
    assert not missing, f"metrics the worker exports but Prometheus does not have: {missing}"
    problems = []
    for name, (_, labels) in EXPORTED_METRICS.items():
        for series_name in names[name]:
            for sample in prom.query(series_name):
                metric = dict(sample["metric"])
                metric.pop("__name__")
                if series_name.endswith("_bucket"):
                    assert metric.pop("le")
                assert (metric.pop("job"), metric.pop("instance")) == (SCRAPE_JOB, target)
                if set(metric) != set(labels):
                    problems.append(f"{series_name}: labels {sorted(metric)}, "
                                    f"expected {sorted(labels)}")
                for label, allowed in labels.items():
                    if allowed is not None and metric.get(label) not in allowed:
                        problems.append(f"{series_name}: {label}={metric.get(label)!r}")
    assert not problems, "\n".join(problems)

    # No series anywhere is labelled by user.
    assert "user_id" not in prom.get("/api/v1/labels")
    assert prom.query('{user_id=~".+"}') == []

    # Consumer lag and watermarks are per partition (one worker owns them all).
    partitions = {str(p) for p in range(live.partitions)}
    lag = prom.query("closure_monitor_consumer_lag")
    assert {(s["metric"]["topic"], s["metric"]["partition"]) for s in lag} \
        == {(t, p) for t in live.topics.sources for p in partitions}
    marks = prom.query("closure_monitor_watermark_timestamp_seconds")
    assert {s["metric"]["partition"] for s in marks} == partitions
    assert len(marks) == len(partitions)

    # Every panel query of the dashboard answers, with a number (not NaN).
    queries = dashboard_queries()
    empty = await _until_answered(prom, [expr for _, expr in queries], SETTLE,
                                  lambda result: any(_finite(s) for s in result))
    titles = {expr: title for title, expr in queries}
    assert not empty, "dashboard queries without data after {:g} s:\n{}".format(
        SETTLE, "\n".join(f"  {titles[expr]!r}: {expr}" for expr in empty))

    # The rules loaded and evaluate without errors.
    rules = [rule for group in prom.get("/api/v1/rules")["groups"] for rule in group["rules"]]
    assert rules
    broken = [(rule["name"], rule.get("lastError")) for rule in rules
              if rule["health"] != "ok"]
    assert not broken, broken

    assert worker.stop() == 0
