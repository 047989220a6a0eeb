"""Flows as Suricata EVE JSON records (``event_type: "flow"``), plus a ``chokepoint`` object.

Field names follow Suricata's EVE format where one exists (suricata docs, "Eve JSON Format"):
``timestamp flow_id event_type src_ip src_port dest_ip dest_port proto app_proto flow dns http tls quic
ssh``. ``src`` is always the flow's client. Protocol objects summarise what the dissectors found in
the flow; Chokepoint's own decision is under ``chokepoint``. ``partial: true`` marks a flow whose ``app_proto``
rests on less than the client's opening message (picked up mid-connection, or one side only); the reason is
``chokepoint.partial`` (``dissect.dispatch.partial_reason``).
"""

from __future__ import annotations

import json
import math
import time
import zlib
from datetime import UTC, datetime
from typing import Any

from chokepoint.dissect.dispatch import FlowFacts, partial_reason, tls_in_tls_result
from chokepoint.flow.flow import C2S, S2C, Flow

PROTO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "IPv6-ICMP", 47: "GRE", 50: "ESP", 51: "AH"}


#: Seconds already formatted (date and time of day), for :func:`eve_timestamp`; bounded.
_SECONDS: dict[int, str] = {}
_SECONDS_KEPT = 4096


def eve_timestamp(ts: float) -> str:
    """Suricata's form: 2009-11-24T21:27:09.534255+0000, exactly as
    ``datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")`` writes it: the microseconds
    are rounded half-even as ``datetime`` rounds them, and the date and time of each second are formatted
    once (flows start within the same seconds), so a record costs no ``datetime`` object."""
    frac, whole = math.modf(ts)
    micro = round(frac * 1e6)
    if micro >= 1_000_000:
        micro -= 1_000_000
        whole += 1.0
    elif micro < 0:
        micro += 1_000_000
        whole -= 1.0
    second = int(whole)
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        text = _SECONDS[second] = _date_time(second)
    return f"{text}.{micro:06d}+0000"


def _date_time(second: int) -> str:
    """Date and time of day of ``second``; a damaged capture's timestamp past ``datetime``'s years (1-9999) is
    written by ``time.gmtime`` instead, or as a number of seconds past its range too, never raised."""
    try:
        return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, ValueError, OSError):
        try:
            return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        except (OverflowError, ValueError, OSError):
            return f"{second}s"


def flow_id(flow: Flow) -> int:
    """A stable 52-bit id (JSON-safe integer) from the flow key and its start time."""
    proto, a, pa, b, pb = flow.key
    seed = a + b + pa.to_bytes(2, "big") + pb.to_bytes(2, "big") + bytes((proto,))
    high = zlib.crc32(seed)
    low = zlib.crc32(repr(flow.first_ts).encode(), high) & 0xFFFFF
    return (high << 20) | low


def flow_to_eve(flow: Flow, profile: str) -> dict[str, Any]:
    facts = flow.facts if flow.facts is not None else FlowFacts()  # a flow that carried no data
    record: dict[str, Any] = {
        "timestamp": eve_timestamp(flow.first_ts),
        "flow_id": flow_id(flow),
        "event_type": "flow",
        "src_ip": flow.client_text,
        "src_port": flow.client_port,
        "dest_ip": flow.server_text,
        "dest_port": flow.server_port,
        "proto": PROTO_NAMES.get(flow.proto, str(flow.proto)),
    }
    if flow.encap:
        record["encap"] = list(flow.encap)
    record["app_proto"] = facts.app_proto
    if partial_reason(facts) is not None:
        record["partial"] = True
    record["flow"] = {
        "pkts_toserver": flow.pkts[C2S],
        "pkts_toclient": flow.pkts[S2C],
        "bytes_toserver": flow.bytes[C2S],
        "bytes_toclient": flow.bytes[S2C],
        "start": eve_timestamp(flow.first_ts),
        "end": eve_timestamp(flow.last_ts),
        "age": int(flow.last_ts - flow.first_ts),
        "state": flow.tcp_state.value if flow.proto == 6 else ("new" if not flow.pkts[S2C] else "established"),
        "reason": flow.end_reason,
    }
    if flow.proto in (1, 58):
        del record["src_port"], record["dest_port"]
    for name, build in _PROTOCOL_OBJECTS:
        obj = build(facts)
        if obj:
            record[name] = obj
    record["chokepoint"] = chokepoint_object(flow, profile)
    return record


_encode = json.JSONEncoder(separators=(",", ":")).encode
_text = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _scalar(value: Any) -> str:
    """One JSON scalar as ``json.dumps`` writes it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _text(value)
    if type(value) is int:
        return int.__repr__(value)
    return _encode(value)


def flow_to_eve_json(flow: Flow, profile: str) -> str:
    """``flow_to_eve`` as one JSON line (compact separators, ASCII), byte for byte what
    ``json.dumps(flow_to_eve(flow, profile), separators=(",", ":"))`` gives, written without building the
    record's dictionaries (the offline path writes millions of these; tests/output/test_eve.py compares)."""
    facts = flow.facts
    partial = partial_reason(facts) if facts is not None else None
    start = eve_timestamp(flow.first_ts)
    pkts, octets = flow.pkts, flow.bytes
    if flow.proto == 6:
        state = flow.tcp_state.value
    else:
        state = "new" if not pkts[S2C] else "established"
    proto = PROTO_NAMES.get(flow.proto, str(flow.proto))
    if flow.proto in (1, 58):
        endpoints = f'"src_ip":{_text(flow.client_text)},"dest_ip":{_text(flow.server_text)}'
    else:
        endpoints = (
            f'"src_ip":{_text(flow.client_text)},"src_port":{flow.client_port},'
            f'"dest_ip":{_text(flow.server_text)},"dest_port":{flow.server_port}'
        )
    parts = [
        f'{{"timestamp":"{start}","flow_id":{flow_id(flow)},"event_type":"flow",{endpoints},'
        f'"proto":{_text(proto)},'
        + (f'"encap":{_encode(list(flow.encap))},' if flow.encap else "")
        + f'"app_proto":{_text(flow.app_proto)},'
        + ('"partial":true,' if partial is not None else "")
        + f'"flow":{{"pkts_toserver":{pkts[C2S]},"pkts_toclient":{pkts[S2C]},'
        f'"bytes_toserver":{octets[C2S]},"bytes_toclient":{octets[S2C]},"start":"{start}",'
        f'"end":"{eve_timestamp(flow.last_ts)}","age":{int(flow.last_ts - flow.first_ts)},'
        f'"state":{_text(state)},"reason":{_text(flow.end_reason)}}}'
    ]
    if facts is not None:
        for name, build in _PROTOCOL_OBJECTS:
            obj = build(facts)
            if obj:
                parts.append(f',"{name}":{_encode(obj)}')
    parts.append(',"chokepoint":{"profile":')
    parts.append(_text(profile))
    verdict = flow.verdict
    if verdict is not None:
        parts.append(f",{_encode(verdict.to_json())[1:-1]},")
        parts.append(f'"packet":{_scalar(verdict.packet_index)},"direction":{_scalar(verdict.direction)}')
    else:
        parts.append(',"verdict":"allow","rule":null,"reason":"no rule matched","evidence":[]')
    if flow.logs:
        parts.append(f',"logs":{_encode([v.to_json() for v in flow.logs])}')
    if partial is not None:
        parts.append(f',"partial":{_text(partial)}')
    if facts is not None:
        fet = facts.fet
        if fet is not None:
            parts.append(
                f',"fully_encrypted":{{"verdict":{_scalar(fet.fully_encrypted)},"exemption":{_scalar(fet.exemption)},'
                f'"popcount_per_byte":{_scalar(round(fet.popcount_per_byte, 3))}}}'
            )
        if facts.tls is not None:
            found = tls_in_tls_result(facts)
            if found is not None:
                parts.append(f',"tls_in_tls":{_encode(found.to_json())}')
        if facts.tor:
            parts.append(f',"tor_evidence":{_encode(facts.tor)}')
        if facts.openvpn:
            parts.append(f',"openvpn_evidence":{_encode(facts.openvpn)}')
        if facts.malformed:
            parts.append(f',"malformed":{_encode(dict(facts.malformed))}')
    ipkts, ibytes = flow.inspected_pkts, flow.inspected_bytes
    spent = "true" if not flow.inspecting and verdict is None else "false"
    parts.append(
        f',"inspected":{{"pkts":[{ipkts[0]},{ipkts[1]}],"bytes":[{ibytes[0]},{ibytes[1]}],"budget_spent":{spent}}}}}}}'
    )
    return "".join(parts)


def chokepoint_object(flow: Flow, profile: str) -> dict[str, Any]:
    facts = flow.facts if flow.facts is not None else FlowFacts()
    out: dict[str, Any] = {"profile": profile}
    if flow.verdict is not None:
        out.update(flow.verdict.to_json())
        out["packet"] = flow.verdict.packet_index
        out["direction"] = flow.verdict.direction
    else:
        out.update({"verdict": "allow", "rule": None, "reason": "no rule matched", "evidence": []})
    if flow.logs:
        out["logs"] = [v.to_json() for v in flow.logs]
    partial = partial_reason(facts)
    if partial is not None:
        out["partial"] = partial
    if facts.fet is not None:
        out["fully_encrypted"] = {
            "verdict": facts.fet.fully_encrypted,
            "exemption": facts.fet.exemption,
            "popcount_per_byte": round(facts.fet.popcount_per_byte, 3),
        }
    if facts.tls is not None:
        found = tls_in_tls_result(facts)
        if found is not None:
            out["tls_in_tls"] = found.to_json()
    if facts.tor:
        out["tor_evidence"] = facts.tor
    if facts.openvpn:
        out["openvpn_evidence"] = facts.openvpn
    if facts.malformed:
        out["malformed"] = dict(facts.malformed)
    out["inspected"] = {
        "pkts": list(flow.inspected_pkts),
        "bytes": list(flow.inspected_bytes),
        "budget_spent": not flow.inspecting and flow.verdict is None,
    }
    return out


def _dns(facts) -> dict | None:
    if not facts.dns:
        return None
    queries = [m for m in facts.dns if not m.is_response]
    answers = [m for m in facts.dns if m.is_response]
    first = (queries or answers)[0]
    out: dict[str, Any] = {"version": 2, "id": first.id}
    if first.questions:
        out["rrname"] = first.qname
        out["rrtype"] = _rrtype(first.qtype)
    out["queries"] = [{"id": m.id, "rrname": m.qname, "rrtype": _rrtype(m.qtype)} for m in queries if m.questions]
    out["responses"] = [
        {"id": m.id, "rrname": m.qname, "rrtype": _rrtype(m.qtype), "rcode": _rcode(m.rcode)}
        for m in answers
        if m.questions
    ]
    if answers:
        a = answers[0]
        out["rcode"] = _rcode(a.rcode)
        out["flags"] = f"{a.flags:04x}"
        out["answers"] = [
            {"rrname": r.name.rstrip(".").lower(), "rrtype": _rrtype(r.rtype), "ttl": r.ttl, "rdata": r.value}
            for r in a.answers
        ]
    return out


def _http(facts) -> dict | None:
    req = facts.http
    if req is None:
        response = facts.http_response  # a response without its request (a partial flow)
        return None if response is None else {"status": response.status, "protocol": response.version}
    out: dict[str, Any] = {"hostname": req.host, "url": req.target, "http_method": req.method, "protocol": req.version}
    if req.user_agent:
        out["http_user_agent"] = req.user_agent
    if req.port:
        out["http_port"] = req.port
    if facts.http_response is not None:
        out["status"] = facts.http_response.status
    return out


def _tls(facts) -> dict | None:
    ch = facts.tls
    if ch is None and facts.tls_server is None:
        return None
    out: dict[str, Any] = {}
    if ch is not None:
        if ch.sni:
            out["sni"] = ch.sni
        out["ja3"] = {"hash": ch.ja3_hash, "string": ch.ja3}
        out["ja4"] = ch.ja4
        if ch.alpn:
            out["client_alpns"] = list(ch.alpn)
        out["ech"] = ch.has_ech
        out["esni"] = ch.has_esni
        if ch.supported_versions:
            out["supported_versions"] = [f"0x{v:04x}" for v in ch.supported_versions]
        out["client_hello_records"] = ch.record_count
    if facts.tls_server is not None:
        sh = facts.tls_server
        out["version"] = _tls_version(sh.selected_version or sh.legacy_version)
        out["ja3s"] = {"hash": sh.ja3s_hash, "string": sh.ja3s}
    return out


def _quic(facts) -> dict | None:
    q = facts.quic
    if q is None:
        seen = facts.quic_seen  # mid-connection: the version when a long header gave it, never an SNI
        if seen is None or facts.app_proto != "quic":
            return None
        out = {"version": seen.version_name} if seen.version is not None else {}
        return out | {"evidence": seen.evidence}
    out: dict[str, Any] = {"version": q.version_name}
    if q.sni:
        out["sni"] = q.sni
    if q.ja4:
        out["ja4"] = q.ja4
    if q.user_agent:
        out["ua"] = q.user_agent
    if q.alpn:
        out["alpn"] = list(q.alpn)
    return out


def _ssh(facts) -> dict | None:
    out = {}
    for side, banner in (("client", facts.ssh_client), ("server", facts.ssh_server)):
        if banner is not None:
            out[side] = {"proto_version": banner.proto_version, "software_version": banner.software_version}
    return out or None


def _socks(facts) -> dict | None:
    s = facts.socks
    if s is None:
        return None
    return {"version": s.version, "command": s.command, "dest_host": s.dst_host, "dest_port": s.dst_port}


def _tunnel(facts) -> dict | None:
    """A SOCKS / HTTP CONNECT tunnel: the proxy's target and what it carries (``tls``/``http`` then describe
    the tunnelled ClientHello or request)."""
    tunnel = getattr(facts, "tunnel", None)
    return tunnel.to_json() if tunnel is not None else None


_PROTOCOL_OBJECTS = (
    ("dns", _dns),
    ("http", _http),
    ("tls", _tls),
    ("quic", _quic),
    ("ssh", _ssh),
    ("socks", _socks),
    ("tunnel", _tunnel),
)

_RRTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    41: "OPT",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}
_RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def _rrtype(value: int | None) -> str | None:
    return None if value is None else _RRTYPES.get(value, f"TYPE{value}")


def _rcode(value: int) -> str:
    return _RCODES.get(value, f"RCODE{value}")


def _tls_version(v: int) -> str:
    return {0x0300: "SSLv3", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}.get(
        v, f"0x{v:04x}"
    )
