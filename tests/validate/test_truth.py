"""Ground truth from the censor's event log: real events written by the censor daemon's core
(``chokepoint.backends.censor.Censor``) for real client bytes (a ClientHello from Python's ssl, a DNS query
from dnspython, an HTTP request), reduced to technique classes; and the classifier side's mapping."""

from __future__ import annotations

import json
import ssl

import dns.message
import pytest

from chokepoint.backends.censor import Censor, packet_fields
from chokepoint.packet import build
from chokepoint.policy import load_profile
from chokepoint.validate.runner import plan_groups
from chokepoint.validate.scenarios import parse_catalogue
from chokepoint.validate.truth import classified_class, lost_race, primary, truth_action, truth_from_events

CLIENT, SERVER = "198.18.0.2", "198.19.0.11"


def client_hello(name: str) -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def http_request(host: str, path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: chokepoint\r\nAccept: */*\r\n\r\n".encode()


def events_for(profile: str, packets: list[bytes], tmp_path, mode: str = "inline") -> list[str]:
    """Feed the packets to a real Censor; write the event of every enforced plan as the backends do."""
    censor = Censor(load_profile(profile), mode=mode, seed=1, state_dir=tmp_path)
    for packet in packets:
        decision = censor.observe(packet)
        if decision is not None and decision.plan is not None:
            injected = []
            for injection in decision.plan.injections:  # the fields, as Censor.inject records them (unsent)
                fields = packet_fields(injection.packet)
                fields.update(to=injection.to, what=injection.what)
                injected.append(fields)
            censor.record_action(decision, injected, trigger_dropped=bool(decision.plan.drop_trigger))
    censor.close()
    return (tmp_path / "events.jsonl").read_text().splitlines()


def conversation(payload: bytes, port: int) -> list[bytes]:
    return [p for _, p in build.tcp_conversation(CLIENT, SERVER, 40000, port, [payload], [b""], 1.0)]


def test_sni_reset_is_tls_reset(tmp_path):
    lines = events_for("gfw", conversation(client_hello("www.google.com"), 443), tmp_path)
    (truth,) = truth_from_events(lines)
    assert (truth.label, truth.action, truth.rule, truth.app_proto) == ("tls-reset", "reset", "gfw-sni-reset", "tls")
    assert truth.injected >= 2 and truth.server == f"{SERVER}:443"
    assert "flow" in {json.loads(x)["event_type"] for x in lines}  # flow records are skipped


def test_sni_drop_is_tls_dropped_inline_and_nothing_in_mirror(tmp_path):
    packets = conversation(client_hello("www.instagram.com"), 443)
    (inline,) = truth_from_events(events_for("iran", packets, tmp_path / "a"))
    assert (inline.label, inline.action) == ("tls-dropped", "drop")
    (mirror,) = truth_from_events(events_for("iran", packets, tmp_path / "b", mode="mirror"))
    assert mirror.action == "drop" and mirror.label is None and mirror.injected == 0
    assert primary([mirror.label]) == "none"


def test_http_blockpage_and_host_reset(tmp_path):
    (page,) = truth_from_events(
        events_for("iran", conversation(http_request("queerquotes.blogspot.com"), 80), tmp_path / "a")
    )
    assert (page.label, page.app_proto) == ("http-blockpage", "http") and page.injected >= 1
    (reset,) = truth_from_events(
        events_for("turkmenistan", conversation(http_request("twitter.com"), 80), tmp_path / "b")
    )
    assert reset.label == "http-reset"


def test_dns_forge(tmp_path):
    query = dns.message.make_query("www.youtube.com", "A").to_wire()
    packet = build.ipv4_udp(CLIENT, "198.19.0.53", 53000, 53, query)
    (truth,) = truth_from_events(events_for("gfw", [packet], tmp_path))
    assert (truth.label, truth.rule, truth.proto) == ("dns-forged", "gfw-dns-inject", "UDP")


def test_interception_that_did_not_happen_and_other_sources_are_not_interference(tmp_path):
    # offline, the flow was not redirected to the interception proxy: the plan says it passed untouched
    lines = events_for("kazakhstan-2019", conversation(client_hello("www.facebook.com"), 443), tmp_path)
    (truth,) = truth_from_events(lines)
    assert (truth.action, truth.label) == ("tls-intercept", None) and "untouched" in truth.notes[0]
    event = json.loads(next(x for x in lines if '"event_type":"chokepoint"' in x))
    event["chokepoint"]["notes"] = []  # as the inline backend records a redirected flow
    assert truth_action(event).label == "tls-mitm"
    event = {"event_type": "chokepoint", "src_ip": "203.0.113.9", "chokepoint": {"action": "reset"}}
    assert truth_from_events([json.dumps(event), "not json", ""]) == []


def test_fully_encrypted_drop_is_fet_blocked():
    event = {
        "event_type": "chokepoint",
        "src_ip": CLIENT,
        "proto": "TCP",
        "app_proto": None,
        "chokepoint": {
            "action": "drop",
            "mode": "inline",
            "rule": "gfw-fet-drop",
            "injected": [],
            "evidence": [{"field": "fully_encrypted", "value": True}],
        },
    }
    assert truth_action(event).label == "fet-blocked"
    event["chokepoint"]["evidence"] = []
    assert truth_action(event).label == "tcp-dropped"


def test_primary_is_the_first_layer_met():
    assert primary(["tls-reset", "dns-forged"]) == "dns-forged"
    assert primary(["throttled", "http-reset"]) == "http-reset"
    assert primary([None, "none"]) == "none" and primary([]) == "none"
    assert primary(["quic-dropped", "tls-dropped"]) == "tls-dropped"


def test_classified_classes_merge_equivalent_kinds():
    techniques = [
        {"technique": "dns-bogon"},
        {"technique": "residual"},
        {"technique": "http-diff"},
        {"technique": "dns-forged"},
        {"technique": "quic-dropped"},
    ]
    assert classified_class(techniques) == ["dns-forged", "http-blockpage", "quic-dropped"]


def test_groups_give_every_host_its_own_address():
    entries = "\n".join(
        f"""
  - name: s{i}
    profile: {"gfw" if i % 2 else "iran"}
    target: https://h{i % 25}.example/
    expected: {{technique: none, blocking: false, accessible: true}}"""
        for i in range(50)
    )
    scenarios = parse_catalogue(
        "scenarios:"
        + entries
        + """
  - name: gone
    profile: gfw
    target: https://x.nxdomain.test/
    expected: {technique: none, blocking: false, accessible: true}
""",
        "c.yaml",
    )
    groups = plan_groups(scenarios)
    # 25 distinct hosts per profile: split into labs of at most 19 site addresses, in first-appearance order
    assert [g[0] for g in groups] == [("iran", "inline", None, None, None)] * 2 + [
        ("gfw", "inline", None, None, None)
    ] * 2
    for _, _members, hosts in groups:
        assert len(set(hosts.values())) == len(hosts) <= 19
        assert all(h.endswith(".example") for h in hosts)
        assert all(ip.startswith("198.19.0.") and 11 <= int(ip.rsplit(".", 1)[1]) <= 29 for ip in hosts.values())
    assert sum(len(m) for _, m, _ in groups) == len(scenarios)


def _mirror_reset_event_and_capture(tmp_path, injected_first: bool):
    """A real mirror-mode reset of a real HTTP exchange (turkmenistan), and the client's capture with the
    censor's RST toward the client either before or after the server's response."""
    from chokepoint.packet.pcap import CaptureWriter

    request = http_request("twitter.com")
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
    packets = [p for _, p in build.tcp_conversation(CLIENT, SERVER, 40000, 80, [request], [response], 1.0)]
    censor = Censor(load_profile("turkmenistan"), mode="mirror", seed=1, state_dir=tmp_path)
    record = None
    to_client = []
    for packet in packets[:4]:  # up to the request: the censor decides there
        decision = censor.observe(packet)
        if decision is not None and decision.plan is not None:
            injected = []
            for injection in decision.plan.injections:
                fields = packet_fields(injection.packet)
                fields.update(to=injection.to, what=injection.what)
                injected.append(fields)
                if injection.to == "client":
                    to_client.append(injection.packet)
            record = censor.record_action(decision, injected, trigger_dropped=False)
    censor.close()
    assert record is not None and to_client
    wire = packets[:5] + to_client + packets[5:] if injected_first else packets[:6] + to_client + packets[6:]
    path = tmp_path / "client.pcap"
    with CaptureWriter(path, linktype=101) as writer:
        for i, packet in enumerate(wire):
            writer.write(1.0 + i / 1000, packet)
    return json.loads(json.dumps(record)), path


@pytest.mark.parametrize("injected_first", [True, False])
def test_a_mirror_injection_that_lost_the_race_did_nothing(tmp_path, injected_first):
    event, capture = _mirror_reset_event_and_capture(tmp_path, injected_first)
    assert event["chokepoint"]["mode"] == "mirror"
    assert lost_race(capture, event) is (not injected_first)
    (truth,) = truth_from_events([json.dumps(event)], capture)
    if injected_first:
        assert truth.label == "http-reset"
    else:
        assert truth.label is None and "lost the race" in truth.notes[-1]
    (without_capture,) = truth_from_events([json.dumps(event)])
    assert without_capture.label == "http-reset"


def test_a_dropped_dns_query_is_a_dns_failure(tmp_path):
    """Myanmar's nightly shutdown drops the probe's first query: the probe sees a DNS failure (timeout)."""
    import datetime as dt

    import dns.message

    from chokepoint.packet import build

    query = dns.message.make_query("www.example.org", "A").to_wire()
    packet = build.ipv4_udp(CLIENT, "198.19.0.53", 53111, 53, query)
    night = dt.datetime(2021, 3, 1, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=6, minutes=30))).timestamp()
    censor = Censor(
        load_profile("myanmar", as_of="2021-03-01"),  # the nightly shutdowns ran 2021-02-15 to 2021-04-27
        mode="inline",
        seed=1,
        state_dir=tmp_path,
        clock_offset_s=night - __import__("time").time(),
    )
    decision = censor.observe(packet)
    assert decision is not None and decision.step.flow.verdict.rule_id == "mm-nightly-shutdown"
    censor.record_action(decision, [], trigger_dropped=True)
    censor.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    (truth,) = truth_from_events(lines)
    assert (truth.label, truth.rule) == ("dns-failure", "mm-nightly-shutdown")
