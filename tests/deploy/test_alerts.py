"""The alert rules and their runbook: every alert has a `runbook_url` that resolves to a
heading of docs/RUNBOOK.md, every section of the runbook named after an alert belongs
to one, and every rule is scoped per cluster or says why not. (promtool checks and
unit-tests the rules themselves: scripts/check-observability.)"""

from __future__ import annotations

import re

import pytest
import yaml

from deploylib import REPO

ALERTS = REPO / "helm" / "cron-scheduler" / "files" / "prometheus" / "alerts.yml"
RUNBOOK = REPO / "docs" / "RUNBOOK.md"


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def anchors() -> set[str]:
    return {
        slug(line.lstrip("#"))
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }


def test_every_alert_links_to_its_runbook_section(rules, anchors):
    assert len(rules) >= 8
    for rule in rules:
        url = rule["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        assert page == "docs/RUNBOOK.md", f"{rule['alert']}: {url!r}"
        assert anchor == slug(rule["alert"]), f"{rule['alert']}: anchor {anchor!r}"
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in RUNBOOK.md"


def test_every_alert_section_of_the_runbook_has_an_alert(rules, anchors):
    alerts = {slug(rule["alert"]) for rule in rules}
    named = {a for a in anchors if a.startswith("cronscheduler")}
    assert named == alerts, f"runbook sections without an alert: {named - alerts}"


def test_rules_are_per_cluster_and_wait_out_an_export_interval(rules):
    for rule in rules:
        expr = " ".join(rule["expr"].split())
        if not expr.startswith("absent("):
            assert "by (scheduler_cluster" in expr, f"{rule['alert']} is not per cluster"
        wait = rule.get("for")
        if wait is not None:
            minutes = int(re.fullmatch(r"(\d+)m", wait).group(1))
            # The default OTLP export interval is 60 s: one late push must not page.
            assert minutes >= 2, f"{rule['alert']}: for {wait} is shorter than two pushes"


def test_the_slug_matches_githubs():
    assert slug("CronSchedulerNoLeader") == "cronschedulernoleader"
    assert slug("Failover drill") == "failover-drill"
