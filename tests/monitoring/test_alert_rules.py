"""The alert rules in deploy/monitoring, checked and unit-tested with promtool, and held to the code and docs.

deploy/monitoring/alerts.rules.yaml (a plain Prometheus rule file) is the one source of the rules;
alerts.yaml is the same groups wrapped in a PrometheusRule for the Prometheus Operator, and must equal
it. After editing the rules, rewrite the PrometheusRule from them:

    .venv/bin/python -m tests.monitoring.test_alert_rules --write

promtool comes with the Debian package `prometheus` (`apt-get install -y --no-install-recommends
prometheus`; .ci/run installs it): the tests fail, never skip, without it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.monitoring.names import REPO, defined_metrics, metric_names, operations_anchors, promtool

MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "alerts.rules.yaml"
PROMETHEUS_RULE = MONITORING / "alerts.yaml"
RULE_TESTS = MONITORING / "alerts.test.yaml"
# Every runbook_url is this base plus an anchor of a heading of docs/operations.md.
RUNBOOK_BASE = "https://github.com/covidtest/platform/blob/main/docs/operations.md#"
SEVERITIES = {"page", "ticket"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
DURATION = re.compile(r"^(0|([0-9]+(ms|s|m|h|d|w|y))+)$")

PROMETHEUS_RULE_HEADER = """\
# GENERATED from alerts.rules.yaml, the source of the rules: edit that file, then run
#   .venv/bin/python -m tests.monitoring.test_alert_rules --write
# (tests/monitoring fails while this file's spec.groups differ from the rule file's groups).
# A Prometheus Operator PrometheusRule, deliberately NOT in the kustomize overlays: its CRD exists only
# where the operator is installed. Apply it by hand (docs/operations.md, "Alerts and dashboards"):
#   kubectl apply -n covidtest -f deploy/monitoring/alerts.yaml
# If your Prometheus selects rules by label (kube-prometheus-stack: `release: <its release name>`), add
# that label with `kubectl label`, or in a copy of this file.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: covidtest-alerts
  labels:
    app.kubernetes.io/part-of: covidtest
spec:
"""


def load(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rules() -> list[dict]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def prometheus_rule_text() -> str:
    """alerts.yaml as generated from alerts.rules.yaml: the header, then the rule file's groups (its
    leading comment dropped, comments inside kept) indented under spec."""
    lines = RULES.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(f"  {line}\n" if line.strip() else "\n" for line in lines[start:])
    return PROMETHEUS_RULE_HEADER + body


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120)


# --- promtool -------------------------------------------------------------------------------------------


def test_promtool_checks_the_rules():
    result = run("check", "rules", RULES.name)
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"


def test_promtool_unit_tests_pass():
    result = run("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


# --- one source ------------------------------------------------------------------------------------------


def test_prometheus_rule_has_exactly_the_rule_files_groups():
    resource = load(PROMETHEUS_RULE)
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["name"] == "covidtest-alerts"
    assert "namespace" not in resource["metadata"], "applied with -n, so the same file serves dev and prod"
    assert set(resource) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(resource["spec"]) == {"groups"}
    assert resource["spec"]["groups"] == load(RULES)["groups"], (
        "deploy/monitoring/alerts.yaml differs from alerts.rules.yaml (the source): run "
        "`.venv/bin/python -m tests.monitoring.test_alert_rules --write`"
    )


def test_prometheus_rule_is_the_generated_file():
    """Also the text (header, comments): a hand edit of alerts.yaml is overwritten by the next --write."""
    assert PROMETHEUS_RULE.read_text(encoding="utf-8") == prometheus_rule_text(), (
        "deploy/monitoring/alerts.yaml was edited by hand or is stale: edit alerts.rules.yaml and run "
        "`.venv/bin/python -m tests.monitoring.test_alert_rules --write`"
    )


def test_monitoring_is_not_in_the_overlays():
    """The PrometheusRule CRD may not exist in a cluster: kustomize must never render it."""
    for kustomization in (REPO / "deploy").rglob("kustomization.yaml"):
        spec = load(kustomization) or {}
        for key in ("resources", "components", "bases"):
            for entry in spec.get(key) or []:
                assert "monitoring" not in str(entry), f"{kustomization.relative_to(REPO)} {key}: {entry}"


# --- every alert ------------------------------------------------------------------------------------------


def test_there_are_alerts_and_only_alerts():
    assert alerts(), "no alert rules"
    assert all("alert" in rule for rule in rules()), "recording rules belong in a file of their own"
    names = {rule["alert"] for rule in alerts()}
    assert {
        "RelayStalled",
        "RelayBacklogOld",
        "RelaySigningBlocked",
        "PartnerFeedLag",
        "SigningCertificateExpiresSoon",
        "VerifyErrors",
        "VerifyStatusUnchecked",
        "DependencyDown",
        "BackgroundTaskEnded",
        "IntakeErrors",
        "TrustListStale",
        "CheckpointBundleStale",
        "GatewayErrors",
        "RetentionJobStalled",
    } <= names


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: "-".join([rule["alert"], *rule["labels"].values()]))
def test_alert_has_what_an_operator_needs(rule):
    assert rule["expr"].strip()
    assert "for" in rule and DURATION.match(str(rule["for"])), "every alert states `for` (0m: at once)"
    assert rule["labels"].get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert ANNOTATIONS <= set(annotations), f"missing {ANNOTATIONS - set(annotations)}"
    assert all(str(annotations[a]).strip() for a in ANNOTATIONS)
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_BASE), f"{url} is not {RUNBOOK_BASE}<anchor>"
    anchor = url.removeprefix(RUNBOOK_BASE)
    assert anchor in operations_anchors(), f"docs/operations.md has no heading with the anchor #{anchor}"


def test_alerts_of_one_name_differ_in_their_labels():
    seen = set()
    for rule in alerts():
        key = (rule["alert"], tuple(sorted(rule["labels"].items())))
        assert key not in seen, f"two rules {key}: Alertmanager could not tell them apart"
        seen.add(key)


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: "-".join([rule["alert"], *rule["labels"].values()]))
def test_alert_uses_only_metrics_the_code_defines(rule):
    defined = defined_metrics()
    used = metric_names(rule["expr"])
    assert used, f"no metric found in {rule['expr']!r}"
    unknown = sorted(used - set(defined))
    assert not unknown, f"{rule['alert']} uses metrics no code under services/ defines: {unknown}"


def test_every_alert_fires_in_a_case_and_stays_silent_in_another():
    firing: dict[str, list[dict]] = {}
    silent: set[str] = set()
    for case in load(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts") or []
            if not expected:
                silent.add(check["alertname"])
            for alert in expected:
                assert "exp_annotations" in alert, f"{case['name']}: every expected alert asserts its annotations"
                firing.setdefault(check["alertname"], []).append(alert["exp_labels"])
    for rule in alerts():
        name, labels = rule["alert"], rule["labels"]
        assert any(labels.items() <= got.items() for got in firing.get(name, [])), (
            f"no case in alerts.test.yaml where {name} {labels} fires"
        )
        assert name in silent, f"no case in alerts.test.yaml where {name} stays silent"


def test_operations_guide_lists_every_alert():
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("\n## Alerts and dashboards\n", 1)
    assert len(section) == 2, "docs/operations.md has no section `## Alerts and dashboards`"
    body = section[1].split("\n## ", 1)[0]
    for name in sorted({rule["alert"] for rule in alerts()}):
        assert f"`{name}`" in body, f"docs/operations.md, Alerts and dashboards, does not list {name}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PROMETHEUS_RULE.write_text(prometheus_rule_text(), encoding="utf-8")
        print(f"wrote {PROMETHEUS_RULE.relative_to(REPO)} from {RULES.relative_to(REPO)}")
    else:
        sys.exit(f"usage: python -m tests.monitoring.test_alert_rules --write   (rewrites {PROMETHEUS_RULE.name})")
