"""``chokepoint analyze`` under a SYN flood: the flow table's evictions in the summary and in the EVE stats
record (``--stats``), through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from flood_rss import write_syn_flood  # noqa: E402

CLI = [sys.executable, "-m", "chokepoint.cli", "analyze"]
RULES = "engine:\n  flow_memcap_mb: 1\nrules:\n  - {id: r, action: reset, when: {tls.sni: {suffix: [blocked.test]}}}\n"
SYNS = 3000


@pytest.fixture(scope="module")
def flood(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("flood")
    write_syn_flood(folder / "syn.pcap", SYNS)
    (folder / "rules.yaml").write_text(RULES)
    return folder / "syn.pcap", folder / "rules.yaml"


def test_eve_stats_record_counts_the_evictions(flood):
    capture, rules = flood
    done = subprocess.run([*CLI, capture, "--rules", rules, "-f", "eve", "--stats"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    *flows, last = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(flows) == SYNS and {f["event_type"] for f in flows} == {"flow"}
    assert last["event_type"] == "stats" and last["stats"]["flows"] == SYNS
    table = last["stats"]["flow_table"]
    assert table["created"] == SYNS and table["emergency_entered"] == 1
    assert table["evicted"] == table["evicted_unassured"] == sum(f["flow"]["reason"] == "evicted" for f in flows) > 0


def test_the_summary_names_the_evictions(flood):
    capture, rules = flood
    done = subprocess.run([*CLI, capture, "--rules", rules, "--limit", "3"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{SYNS - 3} more flows not shown" in done.stdout
    row = next(line for line in done.stdout.splitlines() if "flow table" in line)
    assert "emergency_entered 1" in row and "evicted_unassured" in row
