"""The Grafana dashboard's queries, for tests that check or run them.

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
