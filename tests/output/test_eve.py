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


def _write(path, packets):
    from chokepoint.packet.pcap import CaptureWriter

    writer = CaptureWriter(path, linktype=101)
    for ts, raw in packets:
        writer.write(ts, raw)
    writer.close()
    return str(path)


CLIENT, SERVER = "192.0.2.7", "203.0.113.9"


@pytest.fixture(scope="module")
def tls_session_packets(tmp_path_factory):
    """A real OpenSSL TLS 1.3 session (handshake, request, 40 kB response in 1400-byte segments) framed as one TCP
    connection from port 51000 to 8443."""
    import ssl

    from chokepoint.packet import build
    from chokepoint.packet.record import ACK
    from tests.dissect._tls_hellos import python_session

    turns = python_session(
        str(tmp_path_factory.mktemp("tls")),
        ssl.TLSVersion.TLSv1_3,
        b"GET / HTTP/1.1\r\nHost: chokepoint.test\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + bytes(40000),
    )
    c2s, s2c = [t[0] for t in turns], [t[1] for t in turns]
    response, s2c[-1] = s2c[-1], b""
    packets = build.tcp_conversation(CLIENT, SERVER, 51000, 8443, c2s, s2c, 1_700_000_000.0)
    closing = packets[-3:]
    client_seq, server_seq = 1001 + sum(map(len, c2s)), 5001 + sum(map(len, s2c))
    ts = packets[-4][0]
    for offset in range(0, len(response), 1400):
        piece = response[offset : offset + 1400]
        ts += 0.0001
        packets.insert(
            -3, (ts, build.ipv4_tcp(SERVER, CLIENT, 8443, 51000, server_seq + offset, client_seq, ACK, piece))
        )
    return packets[:-3] + [(ts + 0.001 * (i + 1), raw) for i, (_, raw) in enumerate(closing)]


def test_a_tls_flow_picked_up_after_its_handshake_is_tls_and_partial(tls_session_packets, tmp_path):
    """The capture begins at the fifth segment of the server's response: inside a record, in both directions."""
    start = [i for i, (_, raw) in enumerate(tls_session_packets) if len(raw) > 1400][4]
    path = _write(tmp_path / "late.pcap", tls_session_packets[start:])
    (record,) = analyze_capture(path, load_profile("demo")).records
    assert record["app_proto"] == "tls" and record["partial"] is True
    assert record["chokepoint"]["partial"].startswith("tls: no ClientHello")
    assert (record["src_port"], record["dest_port"]) == (51000, 8443)  # roles from the ports, not the first packet
    assert "sni" not in record.get("tls", {})


def test_a_tls_flow_seen_from_the_server_side_only(tls_session_packets, tmp_path):
    server_only = [(ts, raw) for ts, raw in tls_session_packets if raw[12:16] == bytes([203, 0, 113, 9])]
    assert len(server_only) > 30
    (record,) = analyze_capture(_write(tmp_path / "s2c.pcap", server_only), load_profile("demo")).records
    assert record["app_proto"] == "tls" and record["partial"] is True and record["flow"]["pkts_toserver"] == 0
    assert record["tls"]["version"] == "TLS 1.3" and "sni" not in record["tls"]  # from the ServerHello alone


def test_a_whole_tls_flow_is_not_partial(tls_session_packets, tmp_path):
    (record,) = analyze_capture(_write(tmp_path / "all.pcap", tls_session_packets), load_profile("demo")).records
    assert record["app_proto"] == "tls" and "partial" not in record and "partial" not in record["chokepoint"]


@pytest.mark.shared_data
@pytest.mark.parametrize("profile", ["gfw", "iran", "tsg"])
def test_the_json_writer_writes_what_the_record_builder_builds(shared_data, tmp_path, monkeypatch, profile):
    """``flow_to_eve_json`` (the offline path's writer, no dictionaries) and ``flow_to_eve`` (the censor's
    events) are two encoders of one record: byte for byte the same for every flow of every corpus capture, the
    demo capture and flows picked up mid-connection (``partial``)."""
    from chokepoint.backends import offline
    from chokepoint.output.eve import flow_to_eve
    from tests._corpus import capture_paths
    from tests.dissect.test_quic_midstream import late, session
    from tests.dissect.test_quic_midstream_captures import write

    written = offline._eve_line
    checked = []

    def compare(flow, name):
        line = written(flow, name)
        assert line[2] == json.dumps(flow_to_eve(flow, name), separators=(",", ":")), flow
        checked.append(line)
        return line

    monkeypatch.setattr(offline, "_eve_line", compare)
    loaded = load_profile(profile)
    paths = [*map(str, capture_paths()), str(write_demo_capture(tmp_path / "demo.pcap"))]
    paths.append(write(tmp_path / "late.pcap", late(session())))
    for path in paths:
        analyze_capture(path, loaded)
    assert len(checked) > 200  # every flow of the 40 corpus captures and the two generated ones
