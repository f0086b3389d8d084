"""The operate page's monitoring reference says what the programs export and what the
dashboard queries: every metric it names exists, every panel it names is in the dashboard
and queries the metrics the page says, and the label values it lists are the real ones."""

from __future__ import annotations

import json
import re

from conftest import ROOT
from test_monitoring_parts import DASHBOARD, _sample_names

from sender.debug import DebugProvider
from sender.ses import SesProvider
from sender.smtp import SmtpProvider

OPERATE = (ROOT / "docs" / "how-to" / "operate.md").read_text()
# A metric name, and a label matcher the page quotes (`{outcome="delivered"}`); SQL functions
# such as mailroom_prune are not metrics.
_METRIC = re.compile(r"`(mailroom_(?:collector|sender)_[a-z_]+)(\{[^}`]*\})?`")


def _monitoring_table() -> list[str]:
    start = OPERATE.index("| Question | Dashboard panel")
    rows = []
    for line in OPERATE[start:].splitlines()[2:]:
        if not line.startswith("|"):
            return rows
        rows.append(line)
    return rows


def test_every_metric_the_operate_page_names_is_exported() -> None:
    exported = _sample_names()
    named = {m.group(1) for m in _METRIC.finditer(OPERATE)}
    assert len(named) >= 20
    missing = {n for n in named if n not in exported and f"{n}_bucket" not in exported}
    assert not missing, f"named on the operate page, exported by neither program: {sorted(missing)}"


def test_the_panels_the_monitoring_table_names_exist_and_query_what_it_says() -> None:
    panels = {
        p["title"]: [t["expr"] for t in p.get("targets", [])] for p in json.loads(DASHBOARD.read_text())["panels"]
    }
    rows = _monitoring_table()
    assert len(rows) == 4
    checked = 0
    for row in rows:
        column = row.split(" | ")[1]
        for title, queried in re.findall(r"\*([^*]+)\*(?: \(([^)]*)\))?", column):
            assert title in panels, f"no dashboard panel {title!r}"
            for metric in _METRIC.finditer(queried):
                name, labels = metric.group(1), (metric.group(2) or "").strip("{}")
                labels = "" if "…" in labels else labels  # {fault="…"}: a value left open, not a query
                assert any(name in e and labels in e for e in panels[title]), (
                    f"panel {title!r} does not query {name}{{{labels}}}: {panels[title]}"
                )
                checked += 1
    assert checked >= 14


def test_the_provider_label_values_listed_are_the_providers_names() -> None:
    (listed,) = re.findall(r"\(`provider`: ([^)]*)\)", OPERATE)
    assert set(re.findall(r"`(\w+)`", listed)) == {p.name for p in (SesProvider, SmtpProvider, DebugProvider)}


def test_the_operate_page_names_the_current_setting_for_calls_in_flight() -> None:
    # MAILROOM_SES_CONCURRENCY is the older name of MAILROOM_CONNECTIONS (mailroom/settings.py).
    for line in OPERATE.splitlines():
        if "MAILROOM_SES_CONCURRENCY" in line:
            assert "MAILROOM_CONNECTIONS" in line, line
