"""chokepoint.compare.ndpi.out: the ``.out`` parser, checked on every real ``.out`` file against counts taken
independently from other parts of the same file (the per-protocol totals nDPI prints above the flow list, and
plain regex counts), on hand-written lines, and fuzzed from real lines."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.appproto import AppProto
from chokepoint.compare.ndpi import NdpiFlow, expected_app_protos, parse_flow_line, parse_ndpi_out, parse_ndpi_text
from chokepoint.dissect.errors import Malformed
from tests._corpus import NDPI_RESULTS

_ABSENT = "(../shared/data absent)"
OUT_FILES = sorted(p.name for p in NDPI_RESULTS.glob("*.out")) if NDPI_RESULTS.is_dir() else [_ABSENT]


def _result(name: str) -> Path:
    path = NDPI_RESULTS / name
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {NDPI_RESULTS} (nDPI's results live beside the checkout)")
    return path


def _real_flow_lines() -> list[str]:
    if not NDPI_RESULTS.is_dir():
        return []
    return [
        line
        for p in sorted(NDPI_RESULTS.glob("*.out"))
        for line in p.read_text(encoding="utf-8").splitlines()
        if "[proto:" in line
    ]


REAL_LINES = _real_flow_lines()

# --- the parser on every real file -----------------------------------------------------------------

#: Per-protocol totals above the flow list: "<name>\t<packets>\t<bytes>\t<flows>".
_TOTAL_LINE = re.compile(r"^([^\t]+)\t(\d+)\t(\d+)\t(\d+)\s*$")
_ARROW_LINE = re.compile(r"^\t\d+\t\S+ \S+ (<->|->) \S+ \[")


@pytest.mark.shared_data
@pytest.mark.parametrize("name", OUT_FILES)
def test_every_flow_line_is_parsed(name):
    path = _result(name)
    lines = path.read_text(encoding="utf-8").splitlines()
    flows = parse_ndpi_out(path)

    arrows = [m[1] for m in map(_ARROW_LINE.match, lines) if m]
    assert len(flows) == len(arrows) > 0
    assert sum(not f.bidirectional for f in flows) == arrows.count("->")
    # nDPI's totals count flows by application name (the master's when there is none).
    totals = Counter()
    for m in filter(None, map(_TOTAL_LINE.match, lines)):
        totals[m[1]] += int(m[4])
    assert Counter(f.app or f.master for f in flows) == totals
    assert [f.line_no for f in flows] == [i for i, line in enumerate(lines, 1) if _ARROW_LINE.match(line)]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", OUT_FILES)
def test_fields_match_independent_counts(name):
    path = _result(name)
    text = path.read_text(encoding="utf-8")
    flows = parse_ndpi_out(path)
    assert sum(f.confidence == "DPI" for f in flows) == text.count("[Confidence: DPI]")
    assert sum(f.hostname is not None for f in flows) == text.count("[Hostname/SNI: ")
    assert sum(f.quic_version is not None for f in flows) == text.count("[QUIC ver: ")
    assert sum(f.ech is not None for f in flows) == text.count("[ECH: ")
    assert sum(f.ja4 is not None for f in flows) == text.count("[JA4: ")
    assert sum(f.vlan is not None for f in flows) == text.count("[VLAN: ")
    assert sum(":" in f.ip_a for f in flows) == len(re.findall(r"\t\w+ \[[0-9a-fA-F:.]+\]:\d+ ", text))
    undetected = text.split("Undetected flows:", 1)[1] if "Undetected flows:" in text else ""
    assert sum(not f.detected for f in flows) == undetected.count("[proto:")
    for flow in flows:
        assert flow.key[0] == flow.l4 and 0 <= flow.port_a <= 0xFFFF and 0 <= flow.port_b <= 0xFFFF
        if flow.hostname is not None:
            assert f"[Hostname/SNI: {flow.hostname}]" in text


@pytest.mark.shared_data
def test_parsed_values_of_a_real_flow_line():
    """Every field of one real line, read back from the line itself rather than written down."""
    line = next((text for text in REAL_LINES if "TLS.Tor" in text), None)
    if line is None:
        pytest.skip(f"../shared/data not found: {NDPI_RESULTS}")
    flow = parse_flow_line(line)
    a, b = line.split("\t")[2].split(" [", 1)[0].split(" ")[1::2]
    assert (flow.ip_a, str(flow.port_a)) == tuple(a.rsplit(":", 1))
    assert (flow.ip_b, str(flow.port_b)) == tuple(b.rsplit(":", 1))
    assert (flow.master, flow.app, flow.label) == ("TLS", "Tor", "TLS.Tor")
    assert f"[JA3C: {flow.ja3c}]" in line and f"[JA4: {flow.ja4}]" in line
    assert all(f"** {r} **" in line for r in flow.risks) and flow.risks
    assert expected_app_protos(flow) == {AppProto.TOR}


def test_hand_written_line_with_every_optional_part():
    line = (
        "\t7\tUDP [2001:db8:0:0::1]:5353 -> [2001:db8::2]:53 [VLAN: 12][proto: GTP:5.126/DNS.Google]"
        "[IP: 0/Unknown][ClearText][Confidence: DPI][FPC: 5/DNS, Confidence: DPI][DPI packets: 1]"
        "[Hostname/SNI: Example.COM][(Advertised) ALPNs: h3;h3-29][QUIC ver: Draft-29]"
        "[ECH: version 0xfe0d][ESNI: 00AB][Risk: ** Known Proto on Non Std Port **** Susp Entropy **]"
        "[PLAIN TEXT (a]b)][0.0.0.0][2001:db8::9]"
    )
    flow = parse_flow_line(line, line_no=3, detected=False)
    assert flow == NdpiFlow(
        index=7,
        l4="UDP",
        ip_a="2001:db8::1",
        port_a=5353,
        ip_b="2001:db8::2",
        port_b=53,
        bidirectional=False,
        master="DNS",
        app="Google",
        confidence="DPI",
        hostname="Example.COM",
        quic_version="Draft-29",
        ech="version 0xfe0d",
        esni=True,
        alpn=("h3", "h3-29"),
        risks=("Known Proto on Non Std Port", "Susp Entropy"),
        tunnel="GTP",
        vlan=12,
        master_id=5,
        app_id=126,
        detected=False,
        line_no=3,
    )


def test_icmp_line_and_numeric_transport():
    flow = parse_flow_line("\t19\tICMP 192.168.2.17:0 -> 192.168.2.1:0 [proto: 81/ICMP][Confidence: DPI]")
    assert (flow.l4, flow.port_a, flow.app, flow.master_id) == ("ICMP", 0, None, 81)
    esp = parse_flow_line("\t1\t50 10.0.0.1 <-> 10.0.0.2 [proto: 79/IPSec][Confidence: DPI]")
    assert esp.l4 == "ESP" and esp.key == ("ESP", ("10.0.0.1", 0), ("10.0.0.2", 0))


@pytest.mark.parametrize(
    "line",
    [
        "\t1\tTCP 10.0.0.1:1 <-> 10.0.0.2:2 [Confidence: DPI]",  # no proto group
        "\t1\tTCP 10.0.0.1:1 <-> 10.0.0.2:2 [proto: 7/HTTP]",  # no confidence
        "\t1\tTCP 10.0.0.1:1 <-> 10.0.0.2:2 [proto: HTTP][Confidence: DPI]",  # no ids
        "\t1\tTCP 10.0.0.300:1 <-> 10.0.0.2:2 [proto: 7/HTTP][Confidence: DPI]",  # bad address
        "\t1\tTCP 10.0.0.1:70000 <-> 10.0.0.2:2 [proto: 7/HTTP][Confidence: DPI]",  # bad port
        "\t1\tTCP 2001:db8::1:1 <-> 10.0.0.2:2 [proto: 7/HTTP][Confidence: DPI]",  # unbracketed IPv6
        "\t1\tTCP 10.0.0.1:1 <=> 10.0.0.2:2 [proto: 7/HTTP][Confidence: DPI]",  # no arrow
        "\t1\tTCP 10.0.0.1:1 <-> 10.0.0.2:2 [VLAN: x][proto: 7/HTTP][Confidence: DPI]",
        "\t1\t 192.168.1.13 \t 1",  # JA3 host stats row
    ],
)
def test_malformed_lines_raise_malformed(line):
    with pytest.raises(Malformed):
        parse_flow_line(line)


def test_file_errors_name_the_line_and_other_lines_are_skipped():
    good = "\t1\tUDP 10.0.0.1:5 <-> 10.0.0.2:53 [proto: 5/DNS][Confidence: DPI]"
    text = f"DNS\t2\t100\t1\n\n\t1\t 10.0.0.1 \t 1\n{good}\n"
    assert [f.line_no for f in parse_ndpi_text(text)] == [4]
    with pytest.raises(Malformed, match=r"^x\.out:2: "):
        parse_ndpi_text(f"{good}\n\t2\tUDP 10.0.0.1 <-> nowhere [proto: 5/DNS][Confidence: DPI]\n", source="x.out")


@st.composite
def _mutated_lines(draw):
    line = draw(st.sampled_from(REAL_LINES))
    how = draw(st.sampled_from(["truncate", "replace", "splice", "insert"]))
    i = draw(st.integers(0, len(line)))
    if how == "truncate":
        return line[:i]
    if how == "splice":
        other = draw(st.sampled_from(REAL_LINES))
        return line[:i] + other[draw(st.integers(0, len(other))) :]
    char = draw(st.sampled_from("[]:. \t-<>/*0123456789aZ\x00\u00e9") | st.characters())
    return line[:i] + char + line[i + (how == "replace") :]


@pytest.mark.shared_data
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_real_lines_raise_only_malformed(data):
    if not REAL_LINES:
        pytest.skip(f"../shared/data not found: {NDPI_RESULTS}")
    line = data.draw(_mutated_lines())
    try:
        flow = parse_flow_line(line)
    except Malformed:
        return
    assert isinstance(flow, NdpiFlow) and flow.key  # a parsed flow always has a usable key
    assert parse_ndpi_text(line.rstrip("\n")) == [replace(flow, line_no=1)]  # the file parser agrees
