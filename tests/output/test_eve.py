"""EVE records from real flows (the demo capture, built from real client libraries)."""

import json
import re

import pytest

from chokepoint.backends.offline import analyze_capture
from chokepoint.output.eve import eve_timestamp
from chokepoint.packet.samples import write_demo_capture
from chokepoint.policy import load_profile


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    path = write_demo_capture(tmp_path_factory.mktemp("eve") / "demo.pcap")
    return analyze_capture(str(path), load_profile("demo")).records


def test_timestamp_is_suricatas_form():
    assert eve_timestamp(1_700_000_000.25) == "2023-11-14T22:13:20.250000+0000"


def test_records_are_json_with_suricata_names(records):
    for r in records:
        json.dumps(r)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000", r["timestamp"])
        assert r["event_type"] == "flow" and isinstance(r["flow_id"], int) and r["flow_id"] < 2**53
        assert r["proto"] in ("TCP", "UDP")
        assert set(r["flow"]) >= {
            "pkts_toserver",
            "pkts_toclient",
            "bytes_toserver",
            "bytes_toclient",
            "start",
            "end",
            "state",
            "reason",
        }
    assert len({r["flow_id"] for r in records}) == len(records)


def test_protocol_objects(records):
    dns = next(r for r in records if r["app_proto"] == "dns" and r["dns"]["rrname"] == "www.example.org")
    assert dns["dns"]["queries"][0]["rrtype"] == "A"
    assert dns["dns"]["responses"][0]["rcode"] == "NOERROR"
    assert dns["dns"]["answers"][0]["rdata"] == "203.0.113.20"
    tls = next(r for r in records if r["app_proto"] == "tls" and r["chokepoint"]["verdict"] == "allow")
    assert tls["tls"]["sni"] == "www.example.org" and re.fullmatch(r"[0-9a-f]{32}", tls["tls"]["ja3"]["hash"])
    assert tls["tls"]["client_alpns"] == ["h2", "http/1.1"]
    ssh = next(r for r in records if r["app_proto"] == "ssh")
    assert ssh["ssh"]["client"]["software_version"] == "OpenSSH_9.6"
    fet = next(r for r in records if r["app_proto"] == "fully-encrypted")
    assert fet["chokepoint"]["fully_encrypted"]["verdict"] is True


def test_chokepoint_object_carries_the_decision(records):
    blocked = next(r for r in records if r["chokepoint"]["rule"] == "demo-net-drop")
    cp = blocked["chokepoint"]
    assert cp["verdict"] == "drop" and cp["profile"] == "demo" and cp["packet"] >= 1 and cp["direction"] == "c2s"
    assert cp["evidence"] == [{"field": "server_ip", "value": "198.51.100.7", "matched": "demo_nets: 198.51.100.0/24"}]
