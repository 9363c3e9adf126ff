"""The Grafana dashboards in deploy/monitoring/dashboards: valid, self-contained, and over metrics the code
defines.

Each is a dashboard JSON (schemaVersion 39) importable as is: a `datasource` template variable of type
prometheus that every panel and target uses, unique panel ids, and PromQL whose metric names the services
define (the same scan as the alert tests). The expressions are also parsed by promtool (Grafana's
`$__rate_interval` and friends replaced by a duration), so a syntax error fails here, not on a screen.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.names import REPO, defined_metrics, metric_names, parentheses_balanced, promtool

DASHBOARDS = REPO / "deploy" / "monitoring" / "dashboards"
EXPECTED = {"overview.json", "result-svc.json", "publish-svc.json", "verify-svc.json", "gateway.json"}
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"timeseries", "stat", "row"}
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def panels(board: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in board.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def exprs(board: dict) -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} / {target.get('refId')}", target.get("expr", ""))
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


ids = [path.name for path in dashboard_files()]


def test_every_dashboard_is_there():
    assert {path.name for path in dashboard_files()} == EXPECTED


@pytest.mark.parametrize("path", dashboard_files(), ids=ids)
def test_dashboard_is_valid_json_of_the_expected_shape(path):
    board = load(path)
    assert board["schemaVersion"] == 39
    assert board.get("uid") and len(board["uid"]) <= 40, "a stable uid (at most 40 characters)"
    assert board.get("title", "").startswith("covidtest / ")
    assert "covidtest" in board.get("tags", [])
    assert "id" not in board or board["id"] is None, "no instance id: the dashboard is imported, not exported"
    assert board["panels"], "no panels"


def test_dashboard_uids_and_titles_are_unique():
    boards = [load(path) for path in dashboard_files()]
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)


@pytest.mark.parametrize("path", dashboard_files(), ids=ids)
def test_dashboard_has_a_prometheus_datasource_variable_that_every_panel_uses(path):
    board = load(path)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables.get("datasource", {}).get("type") == "datasource"
    assert variables["datasource"].get("query") == "prometheus"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel.get("datasource") == DATASOURCE, f"{panel['title']}: datasource {panel.get('datasource')}"
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    text = path.read_text(encoding="utf-8")
    assert '"uid": "prometheus"' not in text and "DS_PROMETHEUS" not in text, "a fixed data source"


@pytest.mark.parametrize("path", dashboard_files(), ids=ids)
def test_panel_ids_are_unique_and_panels_are_of_known_types(path):
    board = load(path)
    panel_ids = [panel["id"] for panel in panels(board)]
    assert all(isinstance(i, int) for i in panel_ids)
    assert len(panel_ids) == len(set(panel_ids)), f"duplicate panel ids in {path.name}"
    for panel in panels(board):
        assert panel["type"] in PANEL_TYPES, f"{panel['title']}: type {panel['type']}"
        assert panel.get("title"), f"panel {panel['id']} has no title"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel.get("targets"), f"{panel['title']} has no query"
            ref_ids = [t.get("refId") for t in panel["targets"]]
            assert all(ref_ids) and len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.parametrize("path", dashboard_files(), ids=ids)
def test_every_query_is_promql_over_metrics_the_code_defines(path):
    defined = defined_metrics()
    for where, expr in exprs(load(path)):
        assert expr.strip(), f"{path.name}: {where} has an empty expr"
        assert parentheses_balanced(expr), f"{path.name}: {where}: unbalanced parentheses in {expr!r}"
        used = metric_names(expr)
        assert used, f"{path.name}: {where}: no metric in {expr!r}"
        unknown = sorted(used - set(defined))
        assert not unknown, f"{path.name}: {where} uses metrics no code under services/ defines: {unknown}"


def test_promtool_parses_every_query(tmp_path):
    """Each expression as a recording rule, with Grafana's range variables replaced by 5m."""
    rules = []
    for path in dashboard_files():
        for where, expr in exprs(load(path)):
            rules.append({"record": f"dashboard_query_{len(rules)}", "expr": GRAFANA_RANGES.sub("5m", expr)})
            assert "$" not in rules[-1]["expr"], f"{path.name}: {where}: a template variable promtool cannot parse"
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool(), "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"promtool rejects a dashboard query:\n{result.stdout}{result.stderr}"
