"""The operators' artefacts as the tests read them (tests/deploy checks them, and
tests/live/test_prometheus.py runs them): their paths, the metrics the worker
exports (`EXPORTED_METRICS`, which tests/unit/test_metrics.py holds the worker's
/metrics to), and the Grafana dashboard's queries.

Several panels read recording rules (`closure_monitor:...`), so a live test
must load deploy/prometheus/alerts.yml into the Prometheus it queries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "closure-monitor.json"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
COMPOSE = ROOT / "docker-compose.yml"
GRAFANA_DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

SCRAPE_JOB = "closure-monitor"

EVENT_TYPES = frozenset({"repayment", "application", "credit_report", "override",
                         "unknown"})
OUTCOMES = frozenset({"applied", "duplicate", "rejected"})
ACTIONS = frozenset({"warn", "downgrade", "close", "restore", "hold", "release"})
API_OUTCOMES = frozenset({"ok", "not_found", "bad_request", "unauthorized", "forwarded",
                          "unavailable"})
REASONS = frozenset(
    {
        "OVERDUE",
        "REPEATED_LATENESS",
        "SCORE_BELOW_MIN",
        "SCORE_DROP",
        "MULTI_LENDER",
        "APPLICATION_BURST",
        "EXTERNAL_DELINQUENCY",
        "OVER_LEVERAGE",
        "DORMANT",
        "CURED",
        "DATA_CORRECTION",
        "OVERRIDE",
        "APPEAL_HOLD",
    }
)
ANY = None  # a label whose values are not a fixed set here

# What the worker exports on /metrics, by exposition name: kind, and each
# label with its allowed values (ANY: not pinned down here). The worker's
# metrics module is to be checked against this.
EXPORTED_METRICS: dict[str, tuple[str, dict[str, frozenset[str] | None]]] = {
    "closure_monitor_events_total": ("counter", {"event_type": EVENT_TYPES, "outcome": OUTCOMES}),
    "closure_monitor_late_events_total": ("counter", {"event_type": EVENT_TYPES}),
    "closure_monitor_decisions_total": ("counter", {"action": ACTIONS, "reason": REASONS}),
    "closure_monitor_dead_letters_total": ("counter", {"reason": ANY}),
    "closure_monitor_event_lag_seconds": ("histogram", {}),
    "closure_monitor_step_seconds": ("histogram", {}),
    "closure_monitor_users": ("gauge", {}),
    "closure_monitor_pending_deadlines": ("gauge", {}),
    "closure_monitor_watermark_timestamp_seconds": ("gauge", {"partition": ANY}),
    "closure_monitor_policy_info": ("gauge", {"version": ANY}),
    "closure_monitor_consumer_lag": ("gauge", {"topic": ANY, "partition": ANY}),
    "closure_monitor_buffered_events": ("gauge", {"partition": ANY}),
    "closure_monitor_input_pauses_total": ("counter", {"event_type": EVENT_TYPES}),
    "closure_monitor_policy_records_total": ("counter", {"outcome": frozenset({"accepted",
                                                                          "refused"})}),
    "closure_monitor_api_requests_total": ("counter", {"endpoint": frozenset({"users"}),
                                                       "outcome": API_OUTCOMES}),
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def dashboard_panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel of the dashboard, including those nested in collapsed rows."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    return list(_walk(dashboard.get("panels", [])))


def _walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        if panel.get("type") != "row":
            yield panel
        yield from _walk(panel.get("panels", []))


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL expr) for every target of every panel, in order."""
    return [
        (panel.get("title", ""), target["expr"])
        for panel in dashboard_panels(path)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
