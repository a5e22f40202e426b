"""The operators' artefacts: Prometheus rules, Grafana dashboard, docker-compose.

Runs promtool and docker-compose for real (Debian packages `prometheus` and
`docker-compose`), and checks that every metric the dashboard and the rules
name is one the worker exports (EXPORTED_METRICS) or a recording rule.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deployment import (
    ALERTS,
    ALERTS_TEST,
    ANY,
    COMPOSE,
    DASHBOARD,
    EXPORTED_METRICS,
    GRAFANA_DATASOURCE,
    HISTOGRAM_SUFFIXES,
    PROMETHEUS_CONFIG,
    SCRAPE_JOB,
    dashboard_panels,
    dashboard_queries,
)

TARGET_LABELS = frozenset({"job", "instance"})  # added by Prometheus at scrape time

INPUT_TOPICS = ("credit.repayments", "credit.applications", "credit.report-changes")
OUTPUT_TOPICS = ("credit.decisions", "credit.dead-letter")

REQUIRED_ALERTS = frozenset(
    {
        "ClosureMonitorWorkerDown",
        "ConsumerLagGrowing",
        "DeadLetterRateHigh",
        "ClosureRateAboveBaseline",
        "DowngradeRateAboveBaseline",
        "NoEventsIngested",
        "WatermarkStalled",
    }
)

METRIC_NAME = re.compile(r"\bclosure_monitor_[a-z0-9_]+")
RECORDED_NAME = re.compile(r"\bclosure_monitor:[a-zA-Z0-9_:]+")
SELECTOR = re.compile(r"\b(closure_monitor[_:][a-zA-Z0-9_:]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
BY_CLAUSE = re.compile(r"\bby\s*\(([^)]*)\)")


# --- helpers -----------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found on PATH: install the Debian package: apt-get install -y {package}"
        )
    return path


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, (
        f"{' '.join(cmd)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def _recording_rules() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in _rules() if "record" in rule}


def _alert_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _is_exported(name: str) -> bool:
    if name in EXPORTED_METRICS:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and EXPORTED_METRICS.get(base, ("", {}))[0] == "histogram":
            return True
    return False


def _exported_base(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in EXPORTED_METRICS:
            return name.removesuffix(suffix)
    return name


def _known_labels(name: str, recorded: dict[str, str]) -> dict[str, frozenset[str] | None]:
    """Labels a selector on `name` may match, with their allowed values."""
    if name in recorded:
        expr = recorded[name]
        by = BY_CLAUSE.search(expr)
        names = [label.strip() for label in by.group(1).split(",")] if by else []
        sources = [_known_labels(src, recorded) for src in METRIC_NAME.findall(expr)]
        labels: dict[str, frozenset[str] | None] = {}
        for label in filter(None, names):
            values = [src[label] for src in sources if label in src]
            pinned = [value for value in values if value is not None]
            labels[label] = frozenset().union(*pinned) if values and pinned == values else ANY
        return labels
    base = _exported_base(name)
    labels = {label: ANY for label in TARGET_LABELS}
    labels.update(EXPORTED_METRICS[base][1])
    if name.endswith("_bucket"):
        labels["le"] = ANY
    return labels


def _worker_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if isinstance(service.get("command"), list) and service["command"][:1] == ["worker"]
    }


def _scrape_targets() -> list[str]:
    config = _load_yaml(PROMETHEUS_CONFIG)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == SCRAPE_JOB]
    return [target for static in job["static_configs"] for target in static["targets"]]


# --- the tools themselves ----------------------------------------------------


def test_promtool_check_config(tmp_path: Path) -> None:
    # From an unrelated directory: rule_files must resolve relative to the config.
    _run([_tool("promtool", "prometheus"), "check", "config", str(PROMETHEUS_CONFIG)], tmp_path)


def test_promtool_check_rules(tmp_path: Path) -> None:
    _run([_tool("promtool", "prometheus"), "check", "rules", str(ALERTS)], tmp_path)


def test_promtool_test_rules(tmp_path: Path) -> None:
    result = _run([_tool("promtool", "prometheus"), "test", "rules", str(ALERTS_TEST)], tmp_path)
    assert "SUCCESS" in result.stdout + result.stderr


def test_docker_compose_config(tmp_path: Path) -> None:
    _run([_tool("docker-compose", "docker-compose"), "-f", str(COMPOSE), "config", "-q"], tmp_path)
    _run(
        [
            _tool("docker-compose", "docker-compose"),
            "-f",
            str(COMPOSE),
            "--profile",
            "demo",
            "config",
            "-q",
        ],
        tmp_path,
    )


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel query parses: promtool checks them as recording rules."""
    queries = dashboard_queries()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": expr}
                    for i, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    _run([_tool("promtool", "prometheus"), "check", "rules", str(path)], tmp_path)


# --- dashboard ---------------------------------------------------------------


def test_dashboard_parses_and_every_panel_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "closure-monitor"
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard_panels()
    assert len(panels) >= 12
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        title = panel.get("title")
        assert title, f"panel {panel['id']} has no title"
        assert panel["type"] in {"timeseries", "stat", "table"}, title
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, title
        exprs = [target.get("expr", "").strip() for target in panel.get("targets", [])]
        assert exprs and all(exprs), f"panel {title!r}: every target needs a non-empty expr"
        # Grafana-only variables would not run against Prometheus directly.
        assert not any("$" in expr for expr in exprs), title


def test_dashboard_queries_helper_lists_every_target() -> None:
    queries = dashboard_queries()
    targets = sum(len(panel["targets"]) for panel in dashboard_panels())
    assert len(queries) == targets
    assert all(title and expr for title, expr in queries)
    exprs = " ".join(expr for _, expr in queries)
    for needle in (
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
        "closure_monitor_policy_info",
        "time() - ",
        "closure_monitor:closures:rate15m_avg7d",
        "closure_monitor_consumer_lag",
        "closure_monitor_users",
        "closure_monitor_pending_deadlines",
    ):
        assert needle in exprs, f"no panel queries {needle!r}"


def test_grafana_datasource_matches_dashboard() -> None:
    (source,) = _load_yaml(GRAFANA_DATASOURCE)["datasources"]
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


# --- metric names and labels -------------------------------------------------


@pytest.mark.parametrize("path", [DASHBOARD, ALERTS, ALERTS_TEST], ids=lambda p: p.name)
def test_every_metric_named_is_exported_or_recorded(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    recorded = _recording_rules()
    unknown = sorted({name for name in METRIC_NAME.findall(text) if not _is_exported(name)})
    assert not unknown, f"{path.name} names metrics the worker does not export: {unknown}"
    undefined = sorted(set(RECORDED_NAME.findall(text)) - set(recorded))
    assert not undefined, f"{path.name} names undefined recording rules: {undefined}"


def test_every_histogram_and_counter_is_used_somewhere() -> None:
    text = DASHBOARD.read_text(encoding="utf-8") + ALERTS.read_text(encoding="utf-8")
    used = {_exported_base(name) for name in METRIC_NAME.findall(text)}
    assert set(EXPORTED_METRICS) - used == set()


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_label_matchers_use_known_labels_and_values(source: str) -> None:
    recorded = _recording_rules()
    if source == "dashboard":
        exprs = [expr for _, expr in dashboard_queries()]
    else:
        exprs = [rule["expr"] for rule in _rules()]
    problems = []
    for expr in exprs:
        for name, body in SELECTOR.findall(expr):
            known = _known_labels(name, recorded)
            for label, op, value in MATCHER.findall(body):
                if label not in known:
                    problems.append(f"{name}: no label {label!r} in {expr!r}")
                elif op == "=" and value not in (known[label] or {value}):
                    problems.append(f"{name}: {label}={value!r} is not a known value")
    assert not problems, "\n".join(problems)


# --- alert rules ----------------------------------------------------------------


def test_alert_rules_have_severity_and_annotations() -> None:
    alerts = _alert_rules()
    missing = sorted(REQUIRED_ALERTS - set(alerts))
    assert not missing, f"missing alerts: {missing}"
    for name, rule in alerts.items():
        assert rule.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in _load_yaml(ALERTS_TEST)["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = set(_alert_rules())
    assert alerts - firing == set(), "alerts with no firing test case"
    assert alerts - quiet == set(), "alerts with no non-firing test case"


def test_rule_files_are_relative_to_the_config() -> None:
    for path in (PROMETHEUS_CONFIG, ALERTS_TEST):
        for rule_file in _load_yaml(path)["rule_files"]:
            assert not Path(rule_file).is_absolute(), rule_file
            assert (path.parent / rule_file).is_file(), rule_file


# --- docker-compose ---------------------------------------------------------------


def test_compose_workers_match_scrape_targets() -> None:
    compose = _load_yaml(COMPOSE)
    workers = _worker_services(compose)
    assert len(workers) >= 2
    from_compose = set()
    for name, service in workers.items():
        command = service["command"]
        port = command[command.index("--web-port") + 1]
        from_compose.add(f"{name}:{port}")
        published = {str(mapping).split(":")[-1] for mapping in service.get("ports", [])}
        assert port in published, f"{name} does not publish its metrics port {port}"
        assert command[command.index("--broker") + 1] == "kafka://kafka:9092", name
        assert command[command.index("--store") + 1] == "rocksdb", name
        data_dir = command[command.index("--data-dir") + 1]
        volumes = [str(volume) for volume in service.get("volumes", [])]
        assert any(volume.endswith(f":{data_dir}") for volume in volumes), name
    assert from_compose == set(_scrape_targets())


def test_compose_creates_copartitioned_topics() -> None:
    topics = _load_yaml(COMPOSE)["services"]["topics"]
    script = " ".join(map(str, topics["command"]))
    assert "kafka-topics.sh" in script and "--create" in script and "--if-not-exists" in script
    assert "--partitions 8" in script
    for topic in INPUT_TOPICS + OUTPUT_TOPICS:
        assert topic in script, topic


def test_compose_mounts_the_deploy_configs() -> None:
    services = _load_yaml(COMPOSE)["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    grafana = services["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    assert services["producer"]["profiles"] == ["demo"]
