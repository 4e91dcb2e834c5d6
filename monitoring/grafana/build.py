# ruff: noqa: E501  (PromQL expressions read best whole, one per line)
"""Writes monitoring/grafana/movierec.json, the Grafana dashboard of the same panels as the page
(monitoring/dashboard/dashboard.js), for users who run Grafana against this Prometheus.

    .venv/bin/python monitoring/grafana/build.py

Import it in Grafana (Dashboards > Import) and pick the Prometheus data source.
"""

from __future__ import annotations

import json
from pathlib import Path

PANELS = [
    ("Availability as the site logs it", "percentunit", [
        ("1 - movierec:site_errors:ratio_rate5m", "live {{server}}"),
        ('movierec_site_availability_ratio{window="1h"}', "lake 1h {{server}}"),
        ("vector(0.999)", "objective 99.9%"),
    ]),
    ("Latency", "s", [
        ("histogram_quantile(0.5, sum by (le) (rate(movierec_site_request_latency_seconds_bucket[5m])))", "site p50"),
        ("histogram_quantile(0.99, sum by (le) (rate(movierec_site_request_latency_seconds_bucket[5m])))", "site p99"),
        ("histogram_quantile(0.99, sum by (le) (rate(movierec_recommend_latency_seconds_bucket[5m])))", "service p99"),
    ]),
    ("Request lines per second, by outcome", "reqps", [
        ("sum by (outcome) (rate(movierec_site_requests_total[5m]))", "{{outcome}}"),
    ]),
    ("Fallback share of answers", "percentunit", [
        ('sum(rate(movierec_site_fallback_answers_total[5m])) / sum(rate(movierec_site_requests_total{outcome=~"up|slow"}[5m]))', "site log"),
        ('sum by (variant) (rate(movierec_fallback_answers_total[5m])) / sum by (variant) (rate(movierec_recommend_requests_total{status="200"}[5m]))', "service {{variant}}"),
    ]),
    ("Online metric: minutes watched from our lists per answer", "none", [
        ('movierec_online_list_minutes_per_answer{period="hour"}', "{{model_version}} {{variant}}"),
    ]),
    ("Drift (PSI of the latest batch)", "none", [
        ("movierec_drift_statistic", "{{signal}}"),
        ("vector(0.25)", "threshold"),
    ]),
    ("Ingest lag", "s", [("movierec_ingest_lag_seconds", "oldest line waiting")]),
    ("Model version served (age)", "s", [
        ("time() - movierec_serving_model_created_timestamp_seconds", "{{version}}"),
    ]),
    ("Restarts (per 5 min)", "none", [
        ("increase(movierec_worker_replacements_total[5m])", "workers replaced"),
        ("increase(movierec_supervised_restarts_total[5m]) > 0", "restarted {{program}}"),
    ]),
]  # fmt: skip


def dashboard() -> dict[str, object]:
    panels = []
    for number, (title, unit, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": number + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (number % 2), "y": 8 * (number // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(65 + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "title": "movierec operations",
        "uid": "movierec-ops",
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["movierec"],
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}
            ]
        },
        "panels": panels,
    }


if __name__ == "__main__":
    target = Path(__file__).with_name("movierec.json")
    target.write_text(json.dumps(dashboard(), indent=1) + "\n")
    print(f"wrote {target}")
