"""The Grafana dashboard of the fraud-scoring service, as code: writes fraudscore.json next to it.

    python deploy/grafana/dashboard.py            # regenerate deploy/grafana/fraudscore.json
    python deploy/grafana/dashboard.py --check    # exit 1 if the checked-in JSON is out of date

Plain JSON (Grafana's dashboard model, schemaVersion 39), no dependency: import the file in
Grafana (Dashboards -> New -> Import) or provision it from a folder (README, "Dashboards and alert
rules"). The data source is a variable, so one file serves every Prometheus. Every query names
only metrics fraudscore/ops/metrics.py exports (tests/unit/test_dashboards.py checks it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("fraudscore.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
SCORING = '"/fraud_score|/fraud_score/batch|/v1/fraud-score"'
RATE = "$__rate_interval"
LATENCY = f"rate(fraud_http_request_duration_seconds_bucket{{route=~{SCORING}}}[{RATE}])"


def target(expr: str, legend: str = "", ref: str = "A", **extra) -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref, **extra}


def panel(title: str, targets: list[dict], *, kind: str = "timeseries", unit: str = "short",
          w: int = 12, h: int = 8, description: str = "", thresholds: tuple[tuple[str, float], ...] = (),
          options: dict | None = None, custom: dict | None = None) -> dict:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for c, v in thresholds]
    defaults: dict = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if thresholds and kind == "timeseries":
        defaults["custom"] = {"thresholdsStyle": {"mode": "line+area"}}
    if custom:
        defaults.setdefault("custom", {}).update(custom)
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": {"w": w, "h": h}, "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options or {}}


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"w": 24, "h": 1}, "panels": []}


SECTIONS: list[tuple[str, list[dict]]] = [
    ("Traffic and latency", [
        panel("Requests per second by route and status", [
            target(f"sum by (route, status) (rate(fraud_http_requests_total[{RATE}]))",
                   "{{route}} {{status}}"),
        ], unit="reqps", description="Every answer of the edge, by route template ('other': not a route)."),
        panel("Latency p50 / p99 by scoring route", [
            target(f"histogram_quantile(0.99, sum by (route, le) ({LATENCY}))", "p99 {{route}}"),
            target(f"histogram_quantile(0.5, sum by (route, le) ({LATENCY}))", "p50 {{route}}"),
        ], unit="s", thresholds=(("orange", 0.15), ("red", 0.2)),
           description="Alert rules: p99 above 150 ms warns, above 200 ms is critical."),
        panel("Errors: 5xx and 4xx share of answers", [
            target(f'sum(rate(fraud_http_requests_total{{status=~"5.."}}[{RATE}])) '
                   f"/ sum(rate(fraud_http_requests_total[{RATE}]))", "5xx"),
            target(f'sum(rate(fraud_http_requests_total{{status=~"4.."}}[{RATE}])) '
                   f"/ sum(rate(fraud_http_requests_total[{RATE}]))", "4xx"),
        ], unit="percentunit", thresholds=(("red", 0.01),)),
        panel("Overloaded workers (shedding with 503)", [
            target("sum(fraud_overloaded)", "workers shedding"),
        ]),
    ]),
    ("Decisions and scores", [
        panel("Decisions per second", [
            target(f"sum by (decision) (rate(fraud_decisions_total[{RATE}]))", "{{decision}}"),
        ], unit="ops"),
        panel("Score distribution (0-100)", [
            target(f"sum by (le) (increase(fraud_score_bucket[{RATE}]))", "{{le}}", format="heatmap"),
        ], kind="heatmap", options={"calculate": False, "yAxis": {"unit": "short"},
                                    "cellGap": 1, "color": {"scheme": "Oranges", "mode": "scheme"}},
           description="Scores per bucket of the score histogram: drift shows here first."),
        panel("Review and block share", [
            target(f'sum(rate(fraud_decisions_total{{decision="review"}}[{RATE}])) '
                   f"/ sum(rate(fraud_decisions_total[{RATE}]))", "review"),
            target(f'sum(rate(fraud_decisions_total{{decision="block"}}[{RATE}])) '
                   f"/ sum(rate(fraud_decisions_total[{RATE}]))", "block"),
        ], unit="percentunit"),
        panel("Thresholds in force", [
            target("max by (model_version) (fraud_block_threshold)", "block {{model_version}}"),
            target("max by (model_version) (fraud_review_threshold)", "review {{model_version}}"),
        ], description="Scores at or above the block threshold are blocked; target-rate mode moves it."),
    ]),
    ("Drift", [
        panel("PSI per feature", [
            target("max by (feature) (fraud_drift_psi)", "{{feature}}"),
            target("max(fraud_score_psi)", "score"),
        ], thresholds=(("orange", 0.1), ("red", 0.25)),
           description="Population stability index vs training: < 0.1 stable, 0.1-0.25 moderate, "
                       "> 0.25 major."),
        panel("Feature values outside the training range", [
            target(f"sum by (feature) (rate(fraud_feature_out_of_range_total[{RATE}]))", "{{feature}}"),
        ], unit="ops"),
    ]),
    ("Alert delivery", [
        panel("Alert outbox: depth and oldest pending", [
            target("max(fraud_alerts_outbox_depth)", "pending alerts"),
            target("max(fraud_alerts_oldest_pending_seconds)", "oldest pending (s)"),
        ], thresholds=(("red", 300),),
           description="Alert rule: an alert pending over 5 minutes is critical."),
        panel("Alerts sent, failed and dead-lettered", [
            target(f"sum by (destination) (rate(fraud_alerts_sent_total[{RATE}]))", "sent {{destination}}"),
            target(f"sum by (destination) (rate(fraud_alerts_failed_total[{RATE}]))",
                   "failed {{destination}}"),
            target(f"sum by (destination) (increase(fraud_alerts_dead_lettered_total[{RATE}]))",
                   "dead-lettered {{destination}}"),
        ]),
    ]),
    ("Rate limits and rejections", [
        panel("Rate-limited requests (429) by kind", [
            target(f"sum by (kind) (rate(fraud_rate_limited_total[{RATE}]))", "{{kind}}"),
            target(f"sum(rate(fraud_rate_limit_errors_total[{RATE}]))", "limiter storage errors"),
        ], unit="reqps", description="key: over a key's rate; auth_failures: an address that kept failing."),
        panel("Requests refused at the edge by reason", [
            target(f"sum by (reason) (rate(fraud_requests_rejected_total[{RATE}]))", "{{reason}}"),
        ], unit="reqps"),
    ]),
    ("Model and decision log", [
        panel("Model version in service", [
            target("max by (model_version) (fraud_model_ready)", "{{model_version}}", instant=True),
        ], kind="stat", w=8, options={"reduceOptions": {"calcs": ["lastNotNull"]},
                                      "textMode": "value_and_name", "colorMode": "background"},
           thresholds=(("green", 1),),
           description="1: loaded and serving; 0: the worker could not load it (503)."),
        panel("Traffic share by model version", [
            target(f"sum by (model_version) (rate(fraud_decisions_total[{RATE}]))", "{{model_version}}"),
        ], unit="ops", w=8),
        panel("Model inference p99", [
            target(f"histogram_quantile(0.99, sum by (model_version, le) "
                   f"(rate(fraud_model_inference_seconds_bucket[{RATE}])))", "{{model_version}}"),
        ], unit="s", w=8),
        panel("Decision log: backlog and oldest unwritten", [
            target("sum(fraud_decision_log_buffered)", "buffered"),
            target("max(fraud_decision_log_oldest_unwritten_seconds)", "oldest unwritten (s)"),
        ]),
        panel("Decision log: dropped and write errors", [
            target(f"sum by (reason) (increase(fraud_decision_log_dropped_total[{RATE}]))",
                   "dropped {{reason}}"),
            target(f"sum(increase(fraud_decision_log_write_errors_total[{RATE}]))", "write errors"),
        ]),
    ]),
]


def dashboard() -> dict:
    panels, y, next_id = [], 0, 1
    for title, items in SECTIONS:
        r = row(title)
        r["id"] = next_id
        r["gridPos"].update(x=0, y=y)
        panels.append(r)
        next_id, y, x, line_h = next_id + 1, y + 1, 0, 0
        for p in items:
            w, h = p["gridPos"]["w"], p["gridPos"]["h"]
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            p["id"], p["gridPos"] = next_id, {"x": x, "y": y, "w": w, "h": h}
            next_id, x, line_h = next_id + 1, x + w, max(line_h, h)
            panels.append(p)
        y += line_h
    return {
        "uid": "fraudscore", "title": "Fraud scoring", "tags": ["fraudscore"], "schemaVersion": 39,
        "editable": True, "graphTooltip": 1, "refresh": "30s", "timezone": "utc",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if sys.argv[1:] == ["--check"]:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} is out of date: run python {Path(__file__).as_posix()}")
    else:
        OUT.write_text(text)
