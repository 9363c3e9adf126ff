"""What the alert and dashboard tests share: the metric names the code defines, the metric names a PromQL
expression uses, and the anchors of docs/operations.md.

Defined names are read from the source with `ast` (every metric constructor under services/ whose name is
a string literal) and turned into the names Prometheus sees: prometheus_client exposes a counter as
`<name>_total` (it strips a `_total` the code wrote and adds it back), a histogram as `_bucket`, `_sum`
and `_count`. The project's own LoopCounter and LoopHistogram collect as CounterMetricFamily and
HistogramMetricFamily, so the same suffixes apply. A renamed metric thus breaks the tests.
"""

from __future__ import annotations

import ast
import re
import shutil
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "services"
OPERATIONS_MD = REPO / "docs" / "operations.md"

COUNTERS = {"Counter", "LoopCounter", "CounterMetricFamily"}
GAUGES = {"Gauge", "GaugeMetricFamily", "Enum", "StateSetMetricFamily"}
HISTOGRAMS = {"Histogram", "LoopHistogram", "HistogramMetricFamily"}
SUMMARIES = {"Summary", "SummaryMetricFamily"}
INFOS = {"Info", "InfoMetricFamily"}
CONSTRUCTORS = COUNTERS | GAUGES | HISTOGRAMS | SUMMARIES | INFOS

# PromQL words that look like names but are not metrics (functions are recognised by their "(").
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}


def _exposed(kind: str, name: str) -> set[str]:
    # prometheus_client's own Counter, Histogram and Summary also expose `_created`; the families the
    # project's collectors yield do not.
    created = {f"{name.removesuffix('_total')}_created"} if kind in {"Counter", "Histogram", "Summary"} else set()
    if kind in COUNTERS:
        return {f"{name.removesuffix('_total')}_total"} | created
    if kind in HISTOGRAMS:
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"} | created
    if kind in SUMMARIES:
        return {name, f"{name}_sum", f"{name}_count"} | created
    if kind in INFOS:
        return {f"{name}_info"}
    return {name}


def defined_metrics() -> dict[str, str]:
    """Every metric name the services expose → where the code defines it (path:line, kind)."""
    names: dict[str, str] = {}
    for path in sorted(SERVICES.rglob("*.py")):
        if path.relative_to(SERVICES).parts[0] == "gen":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kind = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if kind not in CONSTRUCTORS:
                continue
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                continue  # e.g. LoopCounter.collect's CounterMetricFamily(self._name, …): defined elsewhere
            where = f"{path.relative_to(REPO)}:{node.lineno} ({kind})"
            for exposed in _exposed(kind, arg.value):
                names.setdefault(exposed, where)
    return names


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords, labels or durations)."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w$.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def parentheses_balanced(expr: str) -> bool:
    depth = 0
    for char in _strip_strings(expr):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def operations_anchors(path: Path = OPERATIONS_MD) -> set[str]:
    """The anchors of every heading of docs/operations.md (outside code blocks; repeats get -1, -2, …)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            anchor = github_anchor(match.group(1))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed or not on PATH: the alert rules are checked and unit-tested with it. "
            "Install the Debian package `prometheus` (apt-get install -y --no-install-recommends prometheus; "
            "stop the prometheus daemon it may start) and run the tests again.",
            pytrace=False,
        )
    return path
