"""The dashboard (deploy/grafana/) and the alert rules (deploy/prometheus/rules.yml) query only
metrics the service exports, with labels those metrics have."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from fraudscore.ops import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "fraudscore.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
# Metrics added on other branches (alert delivery, drift and thresholds) at the time of writing:
# queried here before they exist in fraudscore/ops/metrics.py. Empty it when those branches merge
# (test_pending_metrics_are_not_exported_yet says which to drop).
PENDING_METRICS: dict[str, tuple[str, ...]] = {}  # the drift, threshold and readiness gauges landed
# Labels Prometheus itself adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def exported() -> dict[str, set[str]]:
    """Every series name the service exports -> its label names: a counter ``x`` is ``x_total``,
    a histogram ``x`` is ``x_bucket`` (with ``le``), ``x_sum`` and ``x_count``."""
    out: dict[str, set[str]] = {}
    for value in list(vars(metrics).values()):
        if callable(value) and hasattr(value, "cache_info"):  # a metric made on first use (lru_cache)
            try:
                value = value()
            except TypeError:  # takes arguments: not a metric factory
                continue
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, set(value._labelnames)
        if value._type == "counter":
            out[f"{name}_total"] = labels
        elif value._type == "histogram":
            out.update({f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels})
        else:
            out[name] = labels
    return out


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every selector in a PromQL expression."""
    found: list[tuple[str, set[str]]] = []

    def visit(node, *_):
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers}
            found.append((node.name, labels))

    # Grafana's interval variables are not PromQL
    promql_parser.walk(promql_parser.parse(re.sub(r"\$__\w+", "5m", expr)), visit)
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def rule_queries() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r["record"], r["expr"]) for g in groups for r in g["rules"]]


def _check(queries: list[tuple[str, str]]) -> None:
    known = {**exported(), **{k: set(v) for k, v in PENDING_METRICS.items()}}
    problems = []
    for title, expr in queries:
        found = selectors(expr)
        if not found:
            problems.append(f"{title}: no metric in {expr!r}")
        for name, labels in found:
            if name not in known:
                problems.append(f"{title}: {name} is not exported by fraudscore/ops/metrics.py")
            elif unknown := labels - known[name] - TARGET_LABELS:
                problems.append(f"{title}: {name} has no label(s) {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def test_the_exported_names_are_what_prometheus_shows():
    names = exported()
    assert names["fraud_http_requests_total"] == {"route", "method", "status"}
    assert names["fraud_http_request_duration_seconds_bucket"] == {"route", "le"}
    assert "fraud_score_bucket" in names and "fraud_decision_log_buffered" in names


def test_dashboard_queries_name_only_exported_metrics():
    queries = dashboard_queries()
    assert len(queries) >= 20
    _check(queries)


def test_rule_queries_name_only_exported_metrics():
    queries = rule_queries()
    assert len(queries) >= 10
    _check(queries)


def test_a_wrong_name_or_label_is_caught():
    with pytest.raises(AssertionError, match="fraud_http_request_total is not exported"):
        _check([("typo", "rate(fraud_http_request_total[5m])")])
    with pytest.raises(AssertionError, match=r"no label\(s\) \['path'\]"):
        _check([("label", 'rate(fraud_http_requests_total{path="/x"}[5m])')])


def test_pending_metrics_are_not_exported_yet():
    landed = sorted(set(PENDING_METRICS) & set(exported()))
    assert not landed, f"now exported: remove {landed} from PENDING_METRICS"


def test_dashboard_covers_what_operators_watch():
    board = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Traffic and latency", "Decisions and scores", "Drift", "Alert delivery",
                    "Rate limits and rejections", "Model and decision log"]
    text = json.dumps(board)
    for metric in ("fraud_http_request_duration_seconds_bucket", "fraud_score_bucket", "fraud_drift_psi",
                   "fraud_alerts_oldest_pending_seconds", "fraud_rate_limited_total", "fraud_model_ready"):
        assert metric in text
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"] if p["type"] != "row")


def test_checked_in_dashboard_is_what_the_script_writes():
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "grafana" / "dashboard.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
