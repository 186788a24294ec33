"""conf/grafana-dashboard.json queries only metrics that gateway/ops/metrics.py defines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gateway.ops.metrics import metric_names

DASHBOARD = Path(__file__).resolve().parent.parent / "conf" / "grafana-dashboard.json"
_METRIC = re.compile(r"\bsealgate_[a-z0-9_]+")


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_dashboard_is_json_with_panels_that_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"] and all(p.get("targets") for p in dashboard["panels"])


def test_every_metric_the_dashboard_queries_is_defined() -> None:
    used = {name for query in queries(json.loads(DASHBOARD.read_text()))
            for name in _METRIC.findall(query)}
    assert used and used - metric_names() == set()


def test_the_dashboard_shows_every_metric_defined() -> None:
    used = {name for query in queries(json.loads(DASHBOARD.read_text()))
            for name in _METRIC.findall(query)}
    shown = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in used}
    defined = {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in metric_names()}
    assert defined - shown == set()
