"""nDPI ``.out`` parsing, the label mapping, ``compare()``, and the agreement with nDPI on its own corpus.

The parser is checked on every real ``.out`` file against counts taken independently from other parts
of the same file (the per-protocol totals nDPI prints above the flow list, and plain regex counts).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.appproto import AppProto
from chokepoint.compare.corpus import agreement_over_corpus, ndpi_corpus
from chokepoint.compare.ndpi import (
    NDPI_MASTER_TO_APP_PROTO,
    TARGET_PERCENT,
    AgreementReport,
    NdpiFlow,
    compare,
    expected_app_protos,
    ndpi_app_protos,
    parse_flow_line,
    parse_ndpi_out,
    parse_ndpi_text,
)
from chokepoint.dissect.errors import Malformed
from tests._corpus import NDPI_RESULTS, SHARED_DATA

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


# --- the mapping -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("master", "app", "l4", "ports", "expected"),
    [
        ("TLS", "Tor", "TCP", (51112, 443), {AppProto.TOR}),
        ("TLS", None, "TCP", (1, 443), {AppProto.TLS}),
        ("TLS", "DoH_DoT", "TCP", (1, 853), {AppProto.TLS}),
        ("TLS", "Signal", "TCP", (1, 443), {AppProto.TLS}),
        ("DNS", "YouTube", "UDP", (1, 53), {AppProto.DNS}),
        ("DNS", "Tor", "UDP", (1, 53), {AppProto.DNS}),  # only TLS.Tor is Tor for us
        ("HTTP", "Google", "TCP", (1, 80), {AppProto.HTTP}),
        ("HTTP_Proxy", None, "TCP", (1, 8080), {AppProto.HTTP}),
        ("HTTP_Connect", None, "TCP", (1, 8080), {AppProto.HTTP_CONNECT}),
        ("QUIC", "Google", "UDP", (1, 443), {AppProto.QUIC}),
        ("SSH", None, "TCP", (1, 22), {AppProto.SSH}),
        ("SOCKS", None, "TCP", (1, 1080), {AppProto.SOCKS}),
        ("OpenVPN", "NordVPN", "UDP", (1, 1194), {AppProto.OPENVPN}),
        ("WireGuard", None, "UDP", (1, 51820), {AppProto.WIREGUARD}),
        ("IPSec", None, "UDP", (10500, 500), {AppProto.IKE}),
        ("IPSec", None, "UDP", (14500, 4500), {AppProto.IKE, AppProto.IPSEC}),
        ("IPSec", None, "ESP", (0, 0), {AppProto.IPSEC}),
        ("IPSec", None, "AH", (0, 0), {AppProto.IPSEC}),
        ("PPTP", None, "TCP", (1, 1723), {AppProto.PPTP}),
        ("GRE", None, "GRE", (0, 0), {AppProto.GRE}),
        ("Tor", None, "TCP", (1, 9001), {AppProto.TOR}),
        ("ICMP", None, "ICMP", (0, 0), {AppProto.ICMP}),
        ("WebSocket", None, "TCP", (1, 50999), set()),
        ("MDNS", None, "UDP", (5353, 5353), set()),
        ("Telegram", None, "TCP", (1, 443), set()),  # not in the table at all
        ("Unknown", None, "TCP", (1, 8388), set()),
    ],
)
def test_label_mapping(master, app, l4, ports, expected):
    assert ndpi_app_protos(master, app, l4, ports) == expected


def test_mapping_targets_are_our_vocabulary():
    assert {v for v in NDPI_MASTER_TO_APP_PROTO.values() if v is not None} <= set(AppProto)
    assert AppProto.UNKNOWN not in NDPI_MASTER_TO_APP_PROTO.values()


# --- compare() on hand-made records ----------------------------------------------------------------


def nd(tuple_text: str, label: str, *extra: str, confidence: str = "DPI", index: int = 1) -> NdpiFlow:
    ids = "91.163" if "." in label else "91"
    groups = "".join(f"[{e}]" for e in extra)
    return parse_flow_line(f"\t{index}\t{tuple_text} [proto: {ids}/{label}][Confidence: {confidence}]{groups}")


def eve(proto, src, sport, dst, dport, app_proto, **objects):
    record = {
        "event_type": "flow",
        "proto": proto,
        "src_ip": src,
        "src_port": sport,
        "dest_ip": dst,
        "dest_port": dport,
        "app_proto": app_proto,
    }
    record.update(objects)
    return record


TLS_TUPLE = "TCP 192.168.1.2:50000 <-> 93.184.216.34:443"


def test_agreement_regardless_of_direction_case_and_trailing_dot():
    ndpi = [nd(TLS_TUPLE, "TLS", "Hostname/SNI: WWW.Example.com")]
    ours = [eve("TCP", "93.184.216.34", 443, "192.168.1.2", 50000, "tls", tls={"sni": "www.example.com."})]
    report = compare(ours, ndpi, capture="c.pcap")
    assert (report.scored, report.agreed, report.percent, report.disagreements) == (1, 1, 100.0, ())
    assert report.per_protocol == {"tls": (1, 1)} and report.checks["name"] == (1, 1)
    assert report.flows[0].status == "agree" and report.flows[0].our_names == ("www.example.com",)


def test_ipv6_spellings_match():
    ndpi = [nd("UDP [2001:db8::1]:5000 <-> [2001:db8::53]:53", "DNS", "Hostname/SNI: a.example")]
    ours = [eve("UDP", "2001:0db8:0:0::1", 5000, "2001:db8:0::53", 53, "dns", dns={"rrname": "a.example"})]
    assert compare(ours, ndpi).agreed == 1


def test_missing_flow_is_a_disagreement():
    report = compare([], [nd(TLS_TUPLE, "TLS")], capture="c.pcap")
    (d,) = report.disagreements
    assert (report.percent, d.check, d.reason, d.scored) == (0.0, "flow", "no flow in our output", True)
    assert str(d) == "c.pcap: TCP 192.168.1.2:50000 <-> 93.184.216.34:443 [TLS] no flow in our output"


def test_other_app_proto_is_a_disagreement_with_nDPI_label():
    ndpi = [nd(TLS_TUPLE, "TLS.Tor", "Hostname/SNI: www.q4.com")]
    report = compare([eve("TCP", "192.168.1.2", 50000, "93.184.216.34", 443, "tls", tls={"sni": "www.q4.com"})], ndpi)
    (d,) = report.disagreements
    assert d.reason == "we said tls, nDPI said tor (TLS.Tor)" and (d.ours, d.ndpi) == ("tls", "tor")
    assert report.checks["app_proto"] == (0, 1) and "name" not in report.checks


def test_names_that_differ_or_are_missing_on_one_side():
    ndpi = [
        nd(TLS_TUPLE, "TLS", "Hostname/SNI: a.example"),
        nd("TCP 192.168.1.2:50001 <-> 93.184.216.34:443", "TLS"),
        nd("TCP 192.168.1.2:50002 <-> 93.184.216.34:443", "TLS", "Hostname/SNI: c.example"),
    ]
    ours = [
        eve("TCP", "192.168.1.2", 50000, "93.184.216.34", 443, "tls", tls={"sni": "b.example"}),
        eve("TCP", "192.168.1.2", 50001, "93.184.216.34", 443, "tls", tls={"sni": "x.example"}),
        eve("TCP", "192.168.1.2", 50002, "93.184.216.34", 443, "tls", tls={}),
    ]
    report = compare(ours, ndpi)
    assert [d.reason for d in report.disagreements] == [
        "SNI differs: ours 'b.example' vs nDPI 'a.example'",
        "SNI differs: ours 'x.example' vs nDPI none",
        "SNI differs: ours none vs nDPI 'c.example'",
    ]
    assert report.agreed == 0 and report.checks["name"] == (0, 3)


def test_no_name_on_either_side_is_not_compared():
    report = compare([eve("TCP", "192.168.1.2", 50000, "93.184.216.34", 443, "tls", tls={})], [nd(TLS_TUPLE, "TLS")])
    assert report.agreed == 1 and "name" not in report.checks


def test_dns_name_may_be_any_of_our_queries_and_http_host_loses_its_port():
    ndpi = [
        nd("UDP 10.0.0.1:5000 <-> 10.0.0.53:53", "DNS.YouTube", "Hostname/SNI: www.youtube.com"),
        nd("TCP 10.0.0.1:5001 <-> 10.0.0.80:8080", "HTTP", "Hostname/SNI: www.example.org"),
        nd("TCP 10.0.0.1:5002 <-> 10.0.0.80:8080", "HTTP_Connect", "Hostname/SNI: apache.org"),
    ]
    ours = [
        eve(
            "UDP",
            "10.0.0.1",
            5000,
            "10.0.0.53",
            53,
            "dns",
            dns={"rrname": "i.ytimg.com", "queries": [{"rrname": "i.ytimg.com"}, {"rrname": "WWW.YouTube.com"}]},
        ),
        eve(
            "TCP",
            "10.0.0.1",
            5001,
            "10.0.0.80",
            8080,
            "http",
            http={"hostname": "www.example.org:8080", "url": "/", "http_method": "GET"},
        ),
        eve(
            "TCP",
            "10.0.0.1",
            5002,
            "10.0.0.80",
            8080,
            "http-connect",
            http={"url": "apache.org:443", "http_method": "CONNECT"},
        ),
    ]
    report = compare(ours, ndpi)
    assert report.disagreements == () and report.agreed == 3


def test_ssh_banner_may_be_either_side_comments_ignored():
    """nDPI's Hostname/SNI for SSH is the first banner it saw, whichever side sent it."""
    tuple_text = "TCP 127.0.0.1:58496 <-> 127.0.0.1:8000"
    ndpi = [nd(tuple_text, "SSH", "Hostname/SNI: SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11")]

    def ssh(client, server):
        return eve(
            "TCP",
            "127.0.0.1",
            58496,
            "127.0.0.1",
            8000,
            "ssh",
            ssh={
                "client": {"proto_version": "2.0", "software_version": client},
                "server": {"proto_version": "2.0", "software_version": server},
            },
        )

    assert compare([ssh("OpenSSH_8.2p1", "APACHE-SSHD-2.5.0")], ndpi).agreed == 1
    assert compare([ssh("PuTTY_Release_0.81", "OpenSSH_8.2p1")], ndpi).agreed == 1
    (d,) = compare([ssh("PuTTY_Release_0.81", "APACHE-SSHD-2.5.0")], ndpi).disagreements
    assert d.reason == (
        "SSH banner differs: ours 'SSH-2.0-PuTTY_Release_0.81, SSH-2.0-APACHE-SSHD-2.5.0' "
        "vs nDPI 'SSH-2.0-OpenSSH_8.2p1'"
    )


def test_exclusions_are_counted_apart_and_consume_our_flow():
    ndpi = [
        nd("UDP 10.0.0.1:5353 <-> 224.0.0.251:5353", "MDNS", "Hostname/SNI: x.local"),
        nd(TLS_TUPLE, "TLS", confidence="Match by port"),
        nd("TCP 10.0.0.1:1 <-> 10.0.0.2:2", "Unknown", confidence="Unknown"),
    ]
    ours = [
        eve("UDP", "10.0.0.1", 5353, "224.0.0.251", 5353, "dns"),
        eve("TCP", "192.168.1.2", 50000, "93.184.216.34", 443, "unknown"),
        eve("UDP", "10.0.0.9", 9, "10.0.0.8", 8, "wireguard"),
    ]
    report = compare(ours, ndpi)
    assert (report.scored, report.percent, report.disagreements) == (0, None, ())
    assert report.excluded_labels == {"MDNS": 1}
    assert report.excluded_confidence == {"Match by port": 1, "Unknown": 1}
    assert report.unmatched_ours == ("UDP 10.0.0.8:8 <-> 10.0.0.9:9 wireguard",)
    assert [f.status for f in report.flows] == ["not dissected", "not DPI", "not DPI"]


def test_ipsec_by_transport():
    ndpi = [
        nd("UDP 192.168.2.100:10500 <-> 109.237.187.227:500", "IPSec"),
        nd("UDP 192.168.2.100:14500 <-> 109.237.187.227:4500", "IPSec"),
        nd("UDP 192.168.2.100:14501 <-> 109.237.187.227:4500", "IPSec"),
    ]
    ours = [
        eve("UDP", "192.168.2.100", 10500, "109.237.187.227", 500, "ipsec"),
        eve("UDP", "192.168.2.100", 14500, "109.237.187.227", 4500, "ike"),
        eve("UDP", "192.168.2.100", 14501, "109.237.187.227", 4500, "ipsec"),
    ]
    report = compare(ours, ndpi)
    assert report.agreed == 2 and report.per_protocol == {"ike": (0, 1), "ike/ipsec": (2, 2)}
    assert report.disagreements[0].reason == "we said ipsec, nDPI said ike (IPSec)"


def test_unscored_fields_are_listed_but_do_not_spoil_agreement():
    tuple_text = "UDP 10.0.0.1:5000 <-> 10.0.0.2:443"
    ndpi = [
        nd(
            tuple_text,
            "QUIC",
            "Hostname/SNI: q.example",
            "QUIC ver: Draft-29",
            "ECH: version 0xfe0d",
            "(Advertised) ALPNs: h3-29",
            "JA4: q13d0310h3_55b375c5d22e_cd85d2d88918",
        )
    ]
    ours = [
        eve(
            "UDP",
            "10.0.0.1",
            5000,
            "10.0.0.2",
            443,
            "quic",
            quic={
                "version": "v1",
                "sni": "q.example",
                "alpn": ["h3-29"],
                "ja4": "q13d0310h3_55b375c5d22e_cd85d2d88918",
            },
        )
    ]
    report = compare(ours, ndpi)
    assert report.agreed == 1
    assert [(d.check, d.scored) for d in report.disagreements] == [("quic_version", False), ("ech", False)]
    assert report.disagreements[0].reason == "QUIC version differs: ours 'v1' vs nDPI Draft-29"
    assert report.checks["alpn"] == (1, 1) and report.checks["ja4"] == (1, 1)
    assert report.checks["quic_version"] == (0, 1)
    ours[0]["quic"]["version"] = "draft-29"
    assert compare(ours, ndpi).checks["quic_version"] == (1, 1)


def test_tls_fingerprints_compared_where_nDPI_has_them():
    ndpi = [nd(TLS_TUPLE, "TLS", "JA3C: 581A3C7F54555512B8CD16E87DFE165B", "JA4: t10d360300_77f462745360_x")]
    ours = [
        eve(
            "TCP",
            "192.168.1.2",
            50000,
            "93.184.216.34",
            443,
            "tls",
            tls={
                "ja3": {"hash": "581a3c7f54555512b8cd16e87dfe165b", "string": "769,..."},
                "ja4": "t10d360300_77f462745360_y",
                "ech": False,
            },
        )
    ]
    report = compare(ours, ndpi)
    assert report.checks["ja3"] == (1, 1) and report.checks["ech"] == (1, 1)
    (d,) = report.disagreements
    assert d.check == "ja4" and not d.scored and report.agreed == 1


def test_earliest_of_our_split_flows_is_matched_first():
    ndpi = [nd("UDP 10.0.0.1:500 <-> 10.0.0.2:500", "IPSec")]
    later = eve("UDP", "10.0.0.1", 500, "10.0.0.2", 500, "unknown", timestamp="2020-01-01T00:05:00.000000+0000")
    first = eve("UDP", "10.0.0.1", 500, "10.0.0.2", 500, "ike", timestamp="2020-01-01T00:00:00.000000+0000")
    report = compare([later, first], ndpi)
    assert report.agreed == 1 and report.unmatched_ours == ("UDP 10.0.0.1:500 <-> 10.0.0.2:500 unknown",)


def test_same_tuple_twice_is_matched_in_order_and_other_events_ignored():
    ndpi = [
        nd(TLS_TUPLE, "TLS", "Hostname/SNI: one.example", index=1),
        nd(TLS_TUPLE, "TLS", "Hostname/SNI: two.example", index=2),
    ]
    ours = [
        {"event_type": "alert", "src_ip": "nonsense"},
        eve("TCP", "192.168.1.2", 50000, "93.184.216.34", 443, "tls", tls={"sni": "one.example"}),
        eve("TCP", "192.168.1.2", 50000, "93.184.216.34", 443, "tls", tls={"sni": "two.example"}),
    ]
    assert compare(ours, ndpi).agreed == 2


def test_bad_eve_flow_record_raises_malformed():
    with pytest.raises(Malformed):
        compare([{"event_type": "flow", "proto": "TCP", "src_ip": "10.0.0.1"}], [])
    with pytest.raises(Malformed):
        compare([eve("TCP", "not-an-ip", 1, "10.0.0.2", 2, "tls")], [])


def test_combine_and_json():
    first = compare([], [nd(TLS_TUPLE, "TLS")], capture="a.pcap")
    second = compare(
        [eve("TCP", "192.168.1.2", 50000, "93.184.216.34", 443, "tls")],
        [nd(TLS_TUPLE, "TLS"), nd("UDP 10.0.0.1:1 <-> 10.0.0.2:2", "Spotify")],
        capture="b.pcap",
    )
    total = AgreementReport.combine([first, second])
    assert (total.scored, total.agreed, total.percent) == (2, 1, 50.0)
    assert total.per_protocol == {"tls": (1, 2)} and total.excluded_labels == {"Spotify": 1}
    assert [d.capture for d in total.disagreements] == ["a.pcap"]
    data = json.loads(json.dumps(total.to_json()))
    assert data["percent"] == 50.0 and data["target_percent"] == TARGET_PERCENT
    assert data["disagreements"][0]["reason"] == "no flow in our output"
    assert AgreementReport.combine([]).percent is None


# --- the agreement itself --------------------------------------------------------------------------


@pytest.mark.shared_data
def test_agreement_with_ndpi_on_its_corpus(tmp_path):
    """>= 95 % of nDPI's DPI-confidence flows, on the protocols we dissect, agree with ``analyze``."""
    if not (SHARED_DATA / "ndpi" / "pcap").is_dir():
        pytest.skip(f"../shared/data not found: {SHARED_DATA / 'ndpi'}")
    entries, unpaired = ndpi_corpus(SHARED_DATA)
    assert entries and not unpaired
    results, total = agreement_over_corpus(entries, tmp_path)
    errors = [f"{r.name}: {r.error}" for r in results if r.failed]
    assert not errors, "analyze failed:\n" + "\n".join(errors)
    listing = "\n".join(str(d) for d in total.scored_disagreements)
    assert total.percent is not None and total.percent >= TARGET_PERCENT, (
        f"agreement {total.agreed}/{total.scored} = {total.percent:.1f} % < {TARGET_PERCENT} %:\n{listing}"
    )
