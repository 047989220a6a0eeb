"""Pairing the corpus, and running an analyzer over it (a stand-in script here; the real one in test_ndpi)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from chokepoint.compare.corpus import AnalyzeFailed, CorpusEntry, agreement_for, analyze_to_eve, ndpi_corpus

#: A stand-in for ``chokepoint analyze``: writes the EVE lines given in its first argument.
FAKE_ANALYZER = """
import json, sys
behaviour, args = json.loads(sys.argv[1]), sys.argv[2:]
assert args[0] == "analyze" and args[2:5] == ["--format", "eve", "-o"], args
if behaviour["write"]:
    with open(args[5], "w") as out:
        out.write(behaviour["write"])
print(behaviour.get("stderr", ""), file=sys.stderr)
sys.exit(behaviour["exit"])
"""

RECORD = {
    "event_type": "flow",
    "proto": "UDP",
    "src_ip": "10.0.0.1",
    "src_port": 5000,
    "dest_ip": "10.0.0.53",
    "dest_port": 53,
    "app_proto": "dns",
    "dns": {"rrname": "a.example"},
}
OUT_TEXT = (
    "DNS\t2\t200\t1\n\n"
    "\t1\tUDP 10.0.0.53:53 <-> 10.0.0.1:5000 [proto: 5/DNS][Confidence: DPI][Hostname/SNI: a.example]\n"
)


def fake(tmp_path: Path, *, write: str | None, exit: int = 0, stderr: str = "") -> list[str]:
    script = tmp_path / "fake_analyzer.py"
    script.write_text(FAKE_ANALYZER, encoding="utf-8")
    return [sys.executable, str(script), json.dumps({"write": write, "exit": exit, "stderr": stderr})]


@pytest.fixture
def entry(tmp_path) -> CorpusEntry:
    capture, labels = tmp_path / "c.pcap", tmp_path / "c.pcap.out"
    capture.write_bytes(b"")
    labels.write_text(OUT_TEXT, encoding="utf-8")
    return CorpusEntry(capture, labels)


def test_analyze_to_eve_accepts_exit_0_and_3(tmp_path, entry):
    out = tmp_path / "out.json"
    assert analyze_to_eve(entry.capture, out, command=fake(tmp_path, write="{}\n")) == 0
    assert analyze_to_eve(entry.capture, out, command=fake(tmp_path, write="{}\n", exit=3)) == 3


def test_analyze_to_eve_failures(tmp_path, entry):
    out = tmp_path / "never.json"
    with pytest.raises(AnalyzeFailed, match=r"exited 2:\nerror: not a capture"):
        analyze_to_eve(entry.capture, out, command=fake(tmp_path, write=None, exit=2, stderr="error: not a capture"))
    with pytest.raises(AnalyzeFailed, match="exited 0"):  # success without an output file
        analyze_to_eve(entry.capture, out, command=fake(tmp_path, write=None))
    with pytest.raises(AnalyzeFailed, match="No such file|not found|Errno"):
        analyze_to_eve(entry.capture, out, command=[str(tmp_path / "no-such-program")])


def test_agreement_for_compares_the_analyzer_output(tmp_path, entry):
    result = agreement_for(entry, tmp_path, command=fake(tmp_path, write=json.dumps(RECORD) + "\n"))
    assert (result.name, result.error, result.exit_code, result.failed) == ("c.pcap", None, 0, False)
    assert (result.report.scored, result.report.agreed) == (1, 1)
    truncated = agreement_for(entry, tmp_path, command=fake(tmp_path, write=json.dumps(RECORD) + "\n", exit=3))
    assert truncated.report.agreed == 1 and "truncated" in truncated.error and not truncated.failed


@pytest.mark.parametrize(
    ("write", "exit", "error"),
    [
        (None, 1, "exited 1"),
        ("{oops\n", 0, "not JSON"),
        (json.dumps({"event_type": "flow", "proto": "UDP"}) + "\n", 0, "bad EVE record"),
    ],
)
def test_agreement_for_reports_a_failed_run_as_missing_flows(tmp_path, entry, write, exit, error):
    result = agreement_for(entry, tmp_path, command=fake(tmp_path, write=write, exit=exit))
    assert error in result.error and result.failed
    assert [d.reason for d in result.report.disagreements] == ["no flow in our output"]


def test_ndpi_corpus_pairs_by_name(tmp_path):
    (tmp_path / "ndpi" / "pcap").mkdir(parents=True)
    (tmp_path / "ndpi" / "result").mkdir()
    for name in ("b.pcapng", "a.pcap", "lonely.pcap"):
        (tmp_path / "ndpi" / "pcap" / name).write_bytes(b"")
    for name in ("a.pcap.out", "b.pcapng.out", "orphan.pcap.out"):
        (tmp_path / "ndpi" / "result" / name).write_text("", encoding="utf-8")
    entries, unpaired = ndpi_corpus(tmp_path)
    assert [(e.capture.name, e.labels.name) for e in entries] == [
        ("a.pcap", "a.pcap.out"),
        ("b.pcapng", "b.pcapng.out"),
    ]
    assert unpaired == ["lonely.pcap", "orphan.pcap"]


@pytest.mark.shared_data
def test_real_corpus_is_fully_paired(shared_data):
    if not (shared_data / "ndpi" / "pcap").is_dir():
        pytest.skip(f"../shared/data not found: {shared_data / 'ndpi'}")
    entries, unpaired = ndpi_corpus(shared_data)
    assert unpaired == [] and len(entries) == len(list((shared_data / "ndpi" / "pcap").iterdir()))
