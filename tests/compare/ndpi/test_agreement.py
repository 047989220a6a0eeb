"""chokepoint.compare.ndpi.agreement: ``compare()`` on hand-made records, and the agreement with nDPI on its own
corpus."""

from __future__ import annotations

import json

import pytest

from chokepoint.compare.corpus import agreement_over_corpus, ndpi_corpus
from chokepoint.compare.ndpi import TARGET_PERCENT, AgreementReport, NdpiFlow, compare, parse_flow_line
from chokepoint.dissect.errors import Malformed
from tests._corpus import SHARED_DATA

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
