"""docs/runbook.md against the chart's alerts: every alert links to its own
section, every section says what the alert means, how to confirm it (with
`check` on the node) and what to do, and no section is left for an alert the
chart does not ship. Run with test_chart.py, whose helpers it uses."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from test_chart import ROOT, live_metrics, metric_names, one, referenced_metrics, render  # noqa: F401 (a fixture)

sys.path.insert(0, os.path.join(ROOT, "tests"))
from readme import FENCE, anchors  # noqa: E402 (the link check's own heading rule)

RUNBOOK = os.path.join("docs", "runbook.md")
LEAD_INS = ["**What it means.**", "**Confirm.**", "**What to do.**"]


def default_base():
    """The project's source URL, as the image's label has it, and the runbook in it."""
    label = re.search(r'org\.opencontainers\.image\.source="([^"]+)"', open(os.path.join(ROOT, "Dockerfile")).read())
    return label.group(1) + "/blob/main/docs/runbook.md"


def alerts(*sets):
    rule = one(render("monitors-values.yaml", sets=sets), "PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}


def sections():
    """The runbook's `##` sections: {heading: the lines under it}."""
    found, current, inside = {}, None, False
    for line in open(os.path.join(ROOT, RUNBOOK)).read().split("\n"):
        if FENCE.match(line):
            inside = not inside
        if not inside and line.startswith("## "):
            current = line[3:].strip()
            assert current not in found, f"two sections named {current}"
            found[current] = []
        elif current:
            found[current].append(line)
    return found


def parts(lines):
    """A section's text split at its lead-ins, {lead-in: text}, in the order found."""
    found, current = {}, None
    for line in lines:
        lead = next((l for l in LEAD_INS if line.startswith(l)), None)
        if lead:
            assert lead not in found, f"{lead} twice"
            current = lead
            found[current] = []
        if current:
            found[current].append(line)
    return {k: "\n".join(v) for k, v in found.items()}


def queries():
    """Each query of the runbook's ```promql blocks; indented lines continue the one above."""
    found, lang = [], None
    for line in open(os.path.join(ROOT, RUNBOOK)).read().split("\n"):
        m = FENCE.match(line)
        if m:
            lang = m.group(2) if lang is None else None
        elif lang == "promql" and line.strip():
            if line.startswith(" ") and found:
                found[-1] += "\n" + line
            else:
                found.append(line)
    return found


def test_the_default_runbook_is_the_projects_own():
    values = yaml.safe_load(open(os.path.join(ROOT, "chart", "values.yaml")))
    assert values["prometheusRule"]["runbookUrl"] == default_base()
    assert default_base() == "https://github.com/random-refresher/random-refresher/blob/main/docs/runbook.md"


def test_every_alert_links_to_its_own_section_of_the_runbook():
    shipped = alerts()
    assert len(shipped) == 9, sorted(shipped)
    headings = anchors(RUNBOOK)
    for name, rule in shipped.items():
        url = rule["annotations"].get("runbook_url")
        assert url == default_base() + "#" + name.lower(), (name, url)
        assert name.lower() in headings, f"{RUNBOOK} has no heading for {name}"
        assert name in sections(), f"{RUNBOOK}: the heading for {name} is not `## {name}`"


def test_the_runbook_has_a_section_for_each_alert_and_no_other():
    assert set(sections()) == set(alerts())


def test_each_section_says_what_it_means_how_to_confirm_and_what_to_do():
    for name, lines in sections().items():
        found = parts(lines)
        assert list(found) == LEAD_INS, f"{name}: lead-ins {list(found)}"
        for lead, text in found.items():
            assert len(text.strip()) > len(lead) + 40, f"{name}: {lead} says next to nothing"
        confirm = found["**Confirm.**"]
        assert "```promql" in confirm, f"{name}: no PromQL in Confirm"
        assert re.search(r"random-refresher check --source \S+ --blocks \d+", confirm), \
            f"{name}: no `check` command in Confirm"


def test_the_runbook_url_value_changes_every_url():
    shipped = alerts("prometheusRule.runbookUrl=https://example.invalid/rb.md")
    assert {r["annotations"]["runbook_url"] for r in shipped.values()} == \
        {"https://example.invalid/rb.md#" + name.lower() for name in shipped}
    p = render(sets=["prometheusRule.enabled=true", "prometheusRule.runbookUrl="], check=False)
    assert p.returncode != 0 and "/prometheusRule/runbookUrl" in p.stderr, p.stderr


def test_the_runbooks_queries_are_promql_on_exported_metrics(live_metrics, tmp_path):
    exported = metric_names(live_metrics)
    # Exported only with --quarantine-hwrng (tests/quarantine.rs reads them),
    # and once a whole window is assessed (the fixture's daemon reads less).
    exported |= {"random_refresher_hwrng_quarantined", "random_refresher_hwrng_quarantine_marker_errors_total",
                 "random_refresher_min_entropy_estimator_per_symbol"}
    shipped = alerts()
    kube_state = set().union(*(referenced_metrics(r["expr"]) for r in shipped.values())) - exported
    found = queries()
    assert len(found) >= len(shipped), found
    for q in found:
        missing = referenced_metrics(q) - exported - kube_state
        assert not missing, f"{RUNBOOK}: {q!r} names metrics the daemon does not export: {missing}"
    rules = [{"record": f"runbook:query_{i}", "expr": q} for i, q in enumerate(found)]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "runbook", "rules": rules}]}))
    promtool = os.environ.get("RR_PROMTOOL") or shutil.which("promtool") or pytest.fail("no promtool")
    p = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
