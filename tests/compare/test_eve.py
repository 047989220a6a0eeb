"""Reading our EVE flow records into normal form."""

from __future__ import annotations

import json

import pytest

from chokepoint.compare.eve import eve_flow, flow_records, read_eve
from chokepoint.dissect.errors import Malformed

TLS_RECORD = {
    "event_type": "flow",
    "proto": "TCP",
    "src_ip": "192.168.1.2",
    "src_port": 50000,
    "dest_ip": "93.184.216.34",
    "dest_port": 443,
    "app_proto": "tls",
    "tls": {
        "sni": "WWW.Example.com",
        "ja3": {"hash": "ABCDEF", "string": "771,..."},
        "ja4": "t13d_X",
        "client_alpns": ["h2", "http/1.1"],
        "ech": True,
    },
}


def test_tls_record():
    flow = eve_flow(TLS_RECORD)
    assert flow.key == ("TCP", ("192.168.1.2", 50000), ("93.184.216.34", 443)) and flow.start is None
    assert (flow.app_proto, flow.names, flow.ja3, flow.ja4) == ("tls", ("www.example.com",), "abcdef", "t13d_x")
    assert (flow.alpn, flow.ech, flow.quic_version, flow.ssh_client) == (("h2", "http/1.1"), True, None, None)


def test_quic_dns_http_ssh_objects():
    quic = eve_flow(
        {
            "event_type": "flow",
            "proto": "UDP",
            "src_ip": "::1",
            "src_port": 1,
            "dest_ip": "::1",
            "dest_port": 4443,
            "app_proto": "quic",
            "quic": {"version": "draft-29", "sni": "q.example", "alpn": ["h3-29"], "ja4": "q13"},
        }
    )
    assert (quic.quic_version, quic.quic_version_text, quic.names) == (0xFF00001D, "draft-29", ("q.example",))
    assert (quic.alpn, quic.ja4, quic.ech) == (("h3-29",), "q13", None)
    dns = eve_flow(
        {
            "event_type": "flow",
            "proto": "UDP",
            "src_ip": "10.0.0.1",
            "src_port": 1,
            "dest_ip": "10.0.0.53",
            "dest_port": 53,
            "app_proto": "dns",
            "dns": {
                "rrname": "a.example",
                "queries": [{"rrname": "a.example"}, {"rrname": "B.example."}, "c.example", {"rrtype": "A"}],
            },
        }
    )
    assert dns.names == ("a.example", "b.example", "c.example")
    connect = eve_flow(
        {
            "event_type": "flow",
            "proto": "TCP",
            "src_ip": "10.0.0.1",
            "src_port": 1,
            "dest_ip": "10.0.0.2",
            "dest_port": 8080,
            "app_proto": "http-connect",
            "http": {"url": "apache.org:443", "http_method": "CONNECT"},
        }
    )
    get = eve_flow(
        {
            "event_type": "flow",
            "proto": "TCP",
            "src_ip": "10.0.0.1",
            "src_port": 1,
            "dest_ip": "10.0.0.2",
            "dest_port": 80,
            "app_proto": "http",
            "http": {"hostname": "h.example", "url": "/x:1", "http_method": "GET"},
        }
    )
    assert (connect.names, get.names) == (("apache.org",), ("h.example",))
    ssh = eve_flow(
        {
            "event_type": "flow",
            "proto": "TCP",
            "src_ip": "10.0.0.1",
            "src_port": 1,
            "dest_ip": "10.0.0.2",
            "dest_port": 22,
            "app_proto": "ssh",
            "ssh": {
                "client": {"proto_version": "2.0", "software_version": "OpenSSH_9.6 comment"},
                "server": {"proto_version": "2.0", "software_version": "dropbear"},
            },
        }
    )
    assert (ssh.ssh_client, ssh.ssh_server) == ("SSH-2.0-OpenSSH_9.6", "SSH-2.0-dropbear")


def test_icmp_without_ports_and_odd_values():
    flow = eve_flow(
        {
            "event_type": "flow",
            "proto": "IPv6-ICMP",
            "src_ip": "fe80::1",
            "dest_ip": "ff02::1",
            "app_proto": 7,
            "tls": "not an object",
            "dns": {"queries": "nope"},
        }
    )
    assert flow.key == ("ICMPV6", ("fe80::1", 0), ("ff02::1", 0))
    timed = eve_flow(
        {
            "event_type": "flow",
            "proto": "UDP",
            "src_ip": "10.0.0.1",
            "dest_ip": "10.0.0.2",
            "timestamp": "2005-03-30T08:50:54.366527+0000",
        }
    )
    assert timed.start.isoformat() == "2005-03-30T08:50:54.366527+00:00"
    assert eve_flow({**timed_record(), "timestamp": "yesterday"}).start is None
    assert (flow.app_proto, flow.names, flow.alpn) == (None, (), None)


def timed_record():
    return {"event_type": "flow", "proto": "UDP", "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2"}


@pytest.mark.parametrize(
    "record",
    [
        {"event_type": "flow", "proto": "TCP", "src_ip": "10.0.0.1", "src_port": 1, "dest_port": 2},
        {"event_type": "flow", "proto": "TCP", "src_ip": "10.0.0.1", "src_port": "x", "dest_ip": "10.0.0.2"},
        {"event_type": "flow", "proto": "TCP", "src_ip": None, "dest_ip": "10.0.0.2"},
    ],
)
def test_unusable_five_tuple_is_malformed(record):
    with pytest.raises(Malformed):
        eve_flow(record)


def test_read_eve_and_flow_records(tmp_path):
    path = tmp_path / "out.json"
    alert = {"event_type": "alert", "src_ip": "x"}
    path.write_text(json.dumps(TLS_RECORD) + "\n\n" + json.dumps(alert) + "\n", encoding="utf-8")
    records = read_eve(path)
    assert records == [TLS_RECORD, alert]
    assert [f.app_proto for f in flow_records(records)] == ["tls"]
    path.write_text(json.dumps(TLS_RECORD) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(Malformed, match=r"out\.json:2: not JSON"):
        read_eve(path)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(Malformed, match="not an object"):
        read_eve(path)
