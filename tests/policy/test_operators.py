"""Every operator of every field kind, each with inputs that must and must not match."""

from __future__ import annotations

import pytest

from chokepoint.policy.fields import FIELDS, OPERATORS, Kind
from tests.policy.factories import flow, one_rule

LISTS = """
lists:
  doms: {kind: domain, items: [example.com, "=exact.org", "*.sub.net", "*t.co*", "~^ad[0-9]+\\\\.", "xn--bcher-kva.ch"]}
  kws: {kind: keyword, items: [falun, "~ultra.?surf"]}
  kws_i: {kind: keyword, items: [Falun], nocase: true}
  kws_upper: {kind: keyword, items: [FaLuN]}
  names: {kind: string, items: [Exact.Name, GET]}
  nets: {kind: cidr, items: [10.0.0.0/8, 192.0.2.7, "2001:db8::/32"]}
  ja3s: {kind: string, items: [e7d705a3286e19ea42f587b344ee6865]}
"""

# (case id, condition, facts, expected match)
CASES = [
    # domain: exact / suffix (label boundary) / keyword / regex
    ("exact+", "{tls.sni: {exact: www.a.com}}", {"tls_sni": "www.a.com"}, True),
    ("exact-parent", "{tls.sni: {exact: www.a.com}}", {"tls_sni": "a.com"}, False),
    ("exact-child", "{tls.sni: {exact: www.a.com}}", {"tls_sni": "x.www.a.com"}, False),
    ("exact-normalised", "{tls.sni: {exact: WWW.A.COM.}}", {"tls_sni": "www.a.com"}, True),
    ("suffix-self", "{http.host: {suffix: a.com}}", {"http_host": "a.com"}, True),
    ("suffix-child", "{http.host: {suffix: a.com}}", {"http_host": "x.y.a.com"}, True),
    ("suffix-not-label", "{http.host: {suffix: a.com}}", {"http_host": "xa.com"}, False),
    ("suffix-not-prefix", "{http.host: {suffix: a.com}}", {"http_host": "a.com.evil"}, False),
    ("suffix-list", "{http.host: {suffix: [b.org, a.com]}}", {"http_host": "m.b.org"}, True),
    ("keyword+", "{quic.sni: {keyword: OOGL}}", {"quic_sni": "www.google.com"}, True),
    ("keyword-", "{quic.sni: {keyword: oogl}}", {"quic_sni": "bing.com"}, False),
    ("regex+", "{dns.qname: {regex: '^w+\\.'}}", {"dns_qname": "www.a.com"}, True),
    ("regex-", "{dns.qname: {regex: '^w+\\.'}}", {"dns_qname": "a.www.com"}, False),
    ("absent-name", "{tls.sni: {suffix: a.com}}", {}, False),
    ("empty-name", "{tls.sni: {regex: '^$'}}", {"tls_sni": ""}, False),
    # domain lists: name+subdomains, =exact, *.subdomains-only, *substr*, ~regex
    ("list-plain", "{tls.sni: {in_list: doms}}", {"tls_sni": "mail.example.com"}, True),
    ("list-plain-boundary", "{tls.sni: {in_list: doms}}", {"tls_sni": "badexample.com"}, False),
    ("list-exact", "{tls.sni: {in_list: doms}}", {"tls_sni": "exact.org"}, True),
    ("list-exact-child", "{tls.sni: {in_list: doms}}", {"tls_sni": "a.exact.org"}, False),
    ("list-subonly-self", "{tls.sni: {in_list: doms}}", {"tls_sni": "sub.net"}, False),
    ("list-subonly-child", "{tls.sni: {in_list: doms}}", {"tls_sni": "a.sub.net"}, True),
    ("list-substring", "{tls.sni: {in_list: doms}}", {"tls_sni": "www.reddit.com"}, True),
    ("list-substring-", "{tls.sni: {in_list: doms}}", {"tls_sni": "www.reddi.com"}, False),
    ("list-regex", "{tls.sni: {in_list: doms}}", {"tls_sni": "ad42.tracker.io"}, True),
    ("list-regex-", "{tls.sni: {in_list: doms}}", {"tls_sni": "add.tracker.io"}, False),
    ("list-punycode", "{tls.sni: {in_list: doms}}", {"tls_sni": "xn--bcher-kva.ch"}, True),
    ("keyword-list-on-name", "{tls.sni: {in_list: kws_upper}}", {"tls_sni": "falun.example"}, True),
    ("string-list-on-name", "{http.host: {in_list: names}}", {"http_host": "exact.name"}, True),
    ("string-list-on-name-", "{http.host: {in_list: names}}", {"http_host": "a.exact.name"}, False),
    # the virtual field "domain": any of dns.qname, tls.sni, http.host, quic.sni
    ("domain-dns", "{domain: {suffix: a.com}}", {"dns_qname": "x.a.com"}, True),
    ("domain-quic", "{domain: {in_list: doms}}", {"quic_sni": "example.com"}, True),
    ("domain-none", "{domain: {suffix: a.com}}", {"tls_sni": "b.com", "http_host": "c.com"}, False),
    # text fields
    ("path-keyword", "{http.path: {keyword: falun}}", {"http_path": "/x/falun/y"}, True),
    ("path-keyword-case", "{http.path: {keyword: falun}}", {"http_path": "/x/FALUN"}, False),
    ("path-keyword-list", "{http.path: {in_list: kws}}", {"http_path": "/ultrasurf"}, True),
    ("path-keyword-list-", "{http.path: {in_list: kws}}", {"http_path": "/ultra--surf"}, False),
    ("path-nocase-list", "{http.path: {in_list: kws_i}}", {"http_path": "/FALUN"}, True),
    ("path-case-list", "{http.path: {in_list: kws_upper}}", {"http_path": "/falun"}, False),
    ("path-exact", "{http.path: {exact: [/, /index.html]}}", {"http_path": "/index.html"}, True),
    ("path-exact-", "{http.path: {exact: /}}", {"http_path": "/index.html"}, False),
    ("path-string-list", "{http.method: {in_list: names}}", {"http_method": "GET"}, True),
    ("path-regex", "{http.path: {regex: '^/a/[0-9]+$'}}", {"http_path": "/a/123"}, True),
    ("path-regex-", "{http.path: {regex: '^/a/[0-9]+$'}}", {"http_path": "/a/12x"}, False),
    ("path-unicode", "{http.path: {keyword: 六四}}", {"http_path": "/news/六四/"}, True),
    ("url-query", "{http.url: {keyword: 'q=falun'}}", {"http_path": "/s", "http_query": "q=falun"}, True),
    ("url-joined", "{http.url: {exact: '/s?q=1'}}", {"http_path": "/s", "http_query": "q=1"}, True),
    ("url-no-query", "{http.url: {exact: /s}}", {"http_path": "/s"}, True),
    ("url-absent", "{http.url: {regex: '.*'}}", {"http_query": "q=1"}, False),
    ("query-only", "{http.query: {keyword: falun}}", {"http_path": "/falun", "http_query": "a=1"}, False),
    ("query-empty-regex", "{http.query: {regex: '^$'}}", {"http_path": "/", "http_query": ""}, True),
    ("ua-keyword", "{http.user_agent: {keyword: curl}}", {"http_user_agent": "curl/8.5.0"}, True),
    # enums
    ("transport+", "{transport: tcp}", {}, True),
    ("transport-", "{transport: [udp, icmp]}", {}, False),
    ("direction", "{direction: s2c}", {"direction": "s2c"}, True),
    ("app_proto", "{app_proto: {in: [tls, quic]}}", {"app_proto": "quic"}, True),
    ("app_proto-", "{app_proto: [tls, quic]}", {"app_proto": "dns"}, False),
    ("fet_exemption", "{fet_exemption: ex2}", {"fet_exemption": "ex2"}, True),
    ("fet_exemption-absent", "{fet_exemption: ex2}", {}, False),
    # strings
    ("ja3-list", "{ja3: {in_list: ja3s}}", {"ja3": "e7d705a3286e19ea42f587b344ee6865"}, True),
    ("ja3-list-", "{ja3: {in_list: ja3s}}", {"ja3": "00000000000000000000000000000000"}, False),
    ("ja4", "{ja4: [t13d1516h2_8daaf6152771_02713d6af862]}", {"ja4": "t13d1516h2_8daaf6152771_02713d6af862"}, True),
    ("alpn-any", "{tls.alpn: h2}", {"tls_alpn": ("http/1.1", "h2")}, True),
    ("alpn-none", "{tls.alpn: h3}", {"tls_alpn": ("http/1.1", "h2")}, False),
    ("alpn-empty", "{tls.alpn: h3}", {}, False),
    # addresses
    ("ip-cidr", "{server_ip: 203.0.113.0/24}", {}, True),
    ("ip-cidr-", "{server_ip: 203.0.114.0/24}", {}, False),
    ("ip-host", "{client_ip: 192.0.2.10}", {}, True),
    ("ip-list", "{server_ip: {in_list: nets}}", {"server_ip": "10.200.0.1"}, True),
    ("ip-list-host", "{server_ip: {in_list: nets}}", {"server_ip": "192.0.2.7"}, True),
    ("ip-list-host-", "{server_ip: {in_list: nets}}", {"server_ip": "192.0.2.8"}, False),
    ("ip-v6", "{server_ip: {in_list: nets}}", {"server_ip": "2001:db8:1::5"}, True),
    ("ip-v6-", "{server_ip: {in_list: nets}}", {"server_ip": "2001:db9::5"}, False),
    ("ip-family", "{server_ip: '::/0'}", {"server_ip": "10.0.0.1"}, False),
    ("ip-any-v4", "{server_ip: 0.0.0.0/0}", {"server_ip": "10.0.0.1"}, True),
    # ports
    ("port", "{server_port: 443}", {}, True),
    ("port-", "{server_port: [80, 8443]}", {}, False),
    ("port-range-lo", "{client_port: '50000-50010'}", {}, True),
    ("port-range-hi", "{client_port: ['1-2', '49990-50000']}", {}, True),
    ("port-range-", "{client_port: '50001-50010'}", {}, False),
    # integers
    ("int-in", "{tcp_header_len: 20}", {"tcp_header_len": 20}, True),
    ("int-in-", "{tcp_header_len: 20}", {"tcp_header_len": 32}, False),
    ("int-le", "{packet_index_in_flow: {le: 3}}", {"packet_index_in_flow": 3}, True),
    ("int-le-", "{packet_index_in_flow: {le: 3}}", {"packet_index_in_flow": 4}, False),
    ("int-lt", "{packet_index_in_flow: {lt: 3}}", {"packet_index_in_flow": 3}, False),
    ("int-ge", "{packet_index_in_flow: {ge: 3}}", {"packet_index_in_flow": 3}, True),
    ("int-gt", "{packet_index_in_flow: {gt: 3}}", {"packet_index_in_flow": 3}, False),
    ("quic-version-hex", "{quic.version: [0x00000001, 0x6b3343cf]}", {"quic_version": 0x6B3343CF}, True),
    ("quic-version-absent", "{quic.version: {ge: 0}}", {}, False),
    ("dns-qtype", "{dns.qtype: [1, 28]}", {"dns_qtype": 28}, True),
    # booleans
    ("bool-true", "{tls.esni: true}", {"tls_esni": True}, True),
    ("bool-false", "{tls.ech: false}", {}, True),
    ("bool-is", "{tls.record_fragmented: {is: true}}", {}, False),
    ("fe-true", "{fully_encrypted: true}", {"fully_encrypted": True}, True),
    ("fe-unknown", "{fully_encrypted: false}", {}, False),
    ("fe-false", "{fully_encrypted: false}", {"fully_encrypted": False}, True),
    # bytes: hex prefix, hex at an offset, byte regex
    ("prefix", "{first_payload_c2s: {prefix: '16 03 01'}}", {"first_payload_c2s": b"\x16\x03\x01\x02\x00"}, True),
    ("prefix-", "{first_payload_c2s: {prefix: '160303'}}", {"first_payload_c2s": b"\x16\x03\x01\x02\x00"}, False),
    ("prefix-short", "{first_payload_c2s: {prefix: '1603010200ff'}}", {"first_payload_c2s": b"\x16\x03\x01"}, False),
    ("prefix-absent", "{first_payload_s2c: {prefix: '00'}}", {}, False),
    ("at", "{first_payload_s2c: {at: {offset: 2, hex: 'beef'}}}", {"first_payload_s2c": b"\x00\x01\xbe\xef"}, True),
    ("at-", "{first_payload_s2c: {at: [{offset: 1, hex: 'beef'}]}}", {"first_payload_s2c": b"\x00\x01\xbe\xef"}, False),
    ("bytes-regex", "{stream_c2s: {regex: '^SSH-2\\.0-'}}", {"stream_c2s": b"SSH-2.0-OpenSSH_9.6\r\n"}, True),
    ("bytes-regex-dotall", "{stream_c2s: {regex: 'a.b'}}", {"stream_c2s": b"xa\nb"}, True),
    (
        "bytes-regex-binary",
        "{first_payload_c2s: {regex: '^\\x16\\x03[\\x00-\\x03]'}}",
        {"first_payload_c2s": b"\x16\x03\x03\x00"},
        True,
    ),
    # combinators
    ("all", "{all: [{transport: tcp}, {server_port: 443}]}", {}, True),
    ("all-", "{all: [{transport: tcp}, {server_port: 80}]}", {}, False),
    ("all-empty", "{all: []}", {}, True),
    ("any", "{any: [{server_port: 80}, {transport: tcp}]}", {}, True),
    ("any-empty", "{any: []}", {}, False),
    ("not", "{not: {server_port: 80}}", {}, True),
    ("not-", "{not: {transport: tcp}}", {}, False),
    ("not-absent", "{not: {tls.sni: {suffix: a.com}}}", {}, True),
]


@pytest.mark.parametrize("case,when,facts,expected", CASES, ids=[c[0] for c in CASES])
def test_operator(case: str, when: str, facts: dict, expected: bool) -> None:
    profile = one_rule(when, lists=LISTS)
    verdicts = profile.policy.evaluate(flow(**facts))
    assert bool(verdicts) is expected
    if expected and not when.startswith("{not") and "[]" not in when:
        assert verdicts[0].evidence, "a match carries its evidence"


def test_every_field_and_operator_has_a_case() -> None:
    """The table above exercises every field kind and every operator of each kind."""
    text = " ".join(c[1] for c in CASES)
    for kind, ops in OPERATORS.items():
        for op in ops:
            shorthand_ok = op in ("in", "is")
            assert f"{op}:" in text or shorthand_ok, f"{kind}: {op} untested"
    kinds = {FIELDS[name].kind for name in FIELDS if f"{name}:" in text}
    assert kinds == set(Kind)


def test_evidence_names_the_fact_and_the_entry() -> None:
    profile = one_rule(
        "{all: [{domain: {in_list: doms}}, {server_ip: {in_list: nets}}, {server_port: '440-450'}]}", lists=LISTS
    )
    (verdict,) = profile.policy.evaluate(flow(quic_sni="a.sub.net", server_ip="2001:db8::1"))
    assert [(e.field, e.value, e.matched) for e in verdict.evidence] == [
        ("quic.sni", "a.sub.net", "doms: *.sub.net"),
        ("server_ip", "2001:db8::1", "nets: 2001:db8::/32"),
        ("server_port", "443", "in 440-450"),
    ]
    (verdict,) = one_rule("{first_payload_c2s: {at: {offset: 1, hex: '0301'}}}").policy.evaluate(
        flow(first_payload_c2s=b"\x16\x03\x01")
    )
    assert verdict.evidence[0].matched == "at 1:0301" and verdict.evidence[0].value == "160301"
    (verdict,) = one_rule("{not: {tls.sni: {suffix: a.com}}}").policy.evaluate(flow(tls_sni="b.com"))
    assert verdict.evidence[0].field == "tls.sni" and verdict.evidence[0].value == "b.com"
    assert verdict.evidence[0].matched == "not {tls.sni: {suffix: a.com}}"
