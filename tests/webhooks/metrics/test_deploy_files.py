"""deploy/'s Prometheus scrape job, alert rules and Grafana dashboard: well-formed, and built only on names /metrics
exposes. `promtool check rules` runs too when Prometheus' promtool is on PATH; the YAML is read here either way."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from .conftest import exposed_names

pytestmark = pytest.mark.django_db

DEPLOY = Path(settings.BASE_DIR) / "deploy"
RULES = DEPLOY / "prometheus-alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
SCRAPE = DEPLOY / "prometheus-scrape.yml"
PROMETHEUS_OWN = {"up"}  # series Prometheus records for every target
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: its identifiers, less functions, keywords and label names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges ([5m], [$__rate_interval])
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    expr = re.sub(r"\boffset\s+\w+", " ", expr)
    expr = re.sub(r"(?<![A-Za-z_:])\d[\w.+-]*", " ", expr)  # numbers and durations (1e-9, 0.95, 5m)
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function
        if match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def test_the_expression_reader():
    assert metric_names(
        'sum by (le, action) (rate(x_bucket{status=~"5..|error"}[5m])) / ignoring(a) y > 4 * z offset 1h and 1e-9'
    ) == {"x_bucket", "y", "z"}
    assert metric_names("time() - max(worker_last_heartbeat_timestamp_seconds)") == {
        "worker_last_heartbeat_timestamp_seconds"
    }


@pytest.fixture
def exposed(client, settings):
    settings.METRICS_TOKEN = "deploy-files-test"
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer deploy-files-test")
    assert response.status_code == 200
    return exposed_names(response.content.decode()) | PROMETHEUS_OWN


def alert_rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_alert_rules_are_well_formed_and_read_what_metrics_exposes(exposed):
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]

    assert len(names) == len(set(names))
    # The four: the queue older than 5 minutes, the worker's heartbeat, Customer.io 5xx and 429, refusals.
    assert {
        "WebhookQueueOlderThan5Minutes",
        "WebhookWorkerHeartbeatStale",
        "CustomerIOErrors",
        "CustomerIORateLimited",
        "RefusedWebhookRequestsSpiking",
    } <= set(names)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        read = metric_names(rule["expr"])
        assert read, rule["alert"]
        assert read <= exposed, (rule["alert"], read - exposed)
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_the_queue_alert_fires_past_five_minutes():
    rule = next(rule for rule in alert_rules() if rule["alert"] == "WebhookQueueOlderThan5Minutes")
    assert rule["expr"] == "max(webhook_oldest_waiting_seconds) > 300"


@pytest.mark.skipif(not shutil.which("promtool"), reason="Prometheus' promtool is not on PATH (the YAML is read above)")
def test_promtool_accepts_the_rules():
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_queries_read_what_metrics_exposes(exposed):
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert [item["name"] for item in dashboard["__inputs"]] == ["DS_PROMETHEUS"]

    read = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"] == datasource
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names <= exposed, (panel["title"], names - exposed)
            read |= names
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    # Every metric the site exposes has a place on the dashboard (histograms through their buckets; not the
    # client's own process metrics and counters' `_created`, which a single process adds outside multiprocess mode).
    ours = {
        name
        for name in exposed - PROMETHEUS_OWN
        if not name.endswith(("_sum", "_count", "_created")) and not name.startswith(("process_", "python_"))
    }
    assert ours <= read, ours - read


def test_the_scrape_job_sends_the_token_from_a_file():
    job = yaml.safe_load(SCRAPE.read_text())["scrape_configs"][0]

    assert job["job_name"] == "wpfusion-site"
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert "credentials_file" in job["authorization"] and "credentials" not in job["authorization"]
    # The alert rules name the job.
    assert f'job="{job["job_name"]}"' in RULES.read_text()
