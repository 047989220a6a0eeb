"""Index correctness: compiled evaluation == a deliberately simple reference interpreter.

The reference walks every rule in order and decides every atom with plain Python (``str.endswith``,
``in``, ``re.search``, ``ipaddress``) straight from the list entries: no trie, no prefix tables, no
hyperscan, no prefilter. Hypothesis draws random lists, rules and inputs from a small vocabulary so that
matches are frequent, and both must agree on the verdicts (rule ids and actions, in order) and on the
evidence (the same facts; each pattern the compiled policy reports must be one that really matches).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.policy.conditions import AllOf, AnyOf, Atom, Condition, Not
from chokepoint.policy.fields import FIELDS, Kind, format_value, read_values
from chokepoint.policy.input import MatchInput
from chokepoint.policy.lists import ListDef
from chokepoint.policy.profile import Profile, load_rules_text

# -- the reference interpreter ---------------------------------------------------------------------


def _facts(field: str, inp: MatchInput) -> list[tuple[str, Any]]:
    spec = FIELDS[field]
    members = spec.alias_of or (field,)
    return [(m, v) for m in members for v in read_values(FIELDS[m], inp)]


def _domain_entry_hits(entry: str, name: str) -> bool:
    if entry.startswith("="):
        return name == entry[1:]
    if entry.startswith("~"):
        return re.search(entry[1:], name) is not None
    if entry.startswith("*.") and not entry.endswith("*"):
        return name.endswith(entry[1:])
    if entry.startswith("*") and entry.endswith("*"):
        return entry[1:-1] in name
    return name == entry or name.endswith("." + entry)


def _keyword_hits(entry: str, text: str, nocase: bool, on_names: bool) -> bool:
    if entry.startswith("~"):
        return re.search(entry[1:], text, re.IGNORECASE if nocase else 0) is not None
    if nocase:
        return entry.lower() in text.lower()
    return (entry.lower() if on_names else entry) in text


def _list_shown(listdef: ListDef, kind: Kind, value: Any) -> set[str]:
    label = f"{listdef.name}: "
    out = set()
    for entry in listdef.entries:
        if listdef.kind == "domain" and _domain_entry_hits(entry, value):
            out.add(label + entry)
        elif listdef.kind == "keyword" and _keyword_hits(entry, value, listdef.nocase, kind is Kind.DOMAIN):
            out.add(label + entry)
        elif listdef.kind == "string" and (entry.lower() if kind is Kind.DOMAIN else entry) == value:
            out.add(label + value)
        elif listdef.kind == "cidr" and ipaddress.ip_address(value) in ipaddress.ip_network(entry):
            out.add(label + entry)
    return out


def _atom_shown(atom: Atom, kind: Kind, value: Any, lists: dict[str, ListDef]) -> set[str]:
    op, val = atom.op, atom.value
    if op == "in_list":
        return _list_shown(lists[val], kind, value)
    if op == "exact":
        return {f"exact {v}" for v in val if v == value}
    if op == "suffix":
        return {f"suffix {s}" for s in val if value == s or value.endswith("." + s)}
    if op == "keyword":
        return {f"keyword {k}" for k in val if k in value}
    if op == "regex":
        if kind is Kind.BYTES:
            return {f"regex {r}" for r in val if re.search(r.encode(), value, re.DOTALL)}
        return {f"regex {r}" for r in val if re.search(r, value)}
    if op == "prefix":
        return {f"prefix {h}" for h in val if value.startswith(bytes.fromhex(h))}
    if op == "at":
        return {f"at {off}:{h}" for off, h in val if value[off : off + len(h) // 2] == bytes.fromhex(h)}
    if op == "is":
        return {f"is {format_value(val)}"} if value is val else set()
    if op in ("lt", "le", "gt", "ge"):
        ok = {"lt": value < val, "le": value <= val, "gt": value > val, "ge": value >= val}[op]
        return {f"{op} {val}"} if ok else set()
    assert op == "in"
    if kind is Kind.IP:
        return {f"in {n}" for n in val if ipaddress.ip_address(value) in ipaddress.ip_network(n)}
    if kind is Kind.PORT:
        return {f"in {lo}" if lo == hi else f"in {lo}-{hi}" for lo, hi in val if lo <= value <= hi}
    return {f"in {value}"} if value in val else set()


Ev = tuple[str, str, frozenset[str]]


def reference_eval(cond: Condition, inp: MatchInput, lists: dict[str, ListDef]) -> list[Ev] | None:
    if isinstance(cond, Atom):
        kind = FIELDS[cond.field].kind
        for field, value in _facts(cond.field, inp):
            shown = _atom_shown(cond, kind, value, lists)
            if shown:
                return [(field, format_value(value), frozenset(shown))]
        return None
    if isinstance(cond, AllOf):
        out: list[Ev] = []
        for child in cond.children:
            got = reference_eval(child, inp, lists)
            if got is None:
                return None
            out += got
        return out
    if isinstance(cond, AnyOf):
        found = [reference_eval(c, inp, lists) for c in cond.children]
        hits = [g for g in found if g is not None]
        return [e for g in hits for e in g] if hits else None
    assert isinstance(cond, Not)
    if reference_eval(cond.child, inp, lists) is not None:
        return None
    child = cond.child
    if isinstance(child, Atom):
        seen = ",".join(format_value(v) for _, v in _facts(child.field, inp))
        return [(child.field, seen, frozenset({f"not {child}"}))]
    return [("not", "", frozenset({f"not {child}"}))]


def reference(profile: Profile, inp: MatchInput) -> list[tuple[str, str, list[Ev]]]:
    lists = dict(profile.policy.lists)
    out = []
    for rule in profile.policy.rules:
        got = reference_eval(rule.when, inp, lists)
        if got is not None:
            out.append((rule.action.value, rule.id, got))
            if rule.action.terminal:
                break
    return out


# -- random policies and inputs --------------------------------------------------------------------

LABELS = ["a", "b", "ab", "xn--p1ai"]
TLDS = ["com", "org"]
names = st.builds(
    lambda labels, tld: ".".join(labels + [tld]),
    st.lists(st.sampled_from(LABELS), min_size=0, max_size=3),
    st.sampled_from(TLDS),
)
substrings = st.sampled_from(["a", "b.c", "ab", "o", ".org", "a.a"])
name_regexes = st.sampled_from(["^a", "b$", "a\\.b", "^[ab]+\\.com$", "(ab|ba)", "^$", "x?"])
domain_entries = st.one_of(
    names,
    names.map(lambda n: "=" + n),
    names.map(lambda n: "*." + n),
    substrings.map(lambda s: f"*{s}*"),
    name_regexes.map(lambda r: "~" + r),
)
words = st.sampled_from(["fa", "lun", "falun", "FaLun", "/x", "q=", "a", "六四", "AB", "B.Com"])
text_regexes = st.sampled_from(["^/x", "lun$", "f.l", "[0-9]+", "^$", "(?i)FALUN"])
keyword_entries = st.one_of(words, text_regexes.map(lambda r: "~" + r))
texts = st.lists(st.sampled_from(["/x", "fa", "lun", "falun", "FALUN", "q=1", "六四", "/", "a"]), max_size=4).map(
    "".join
)
cidrs = st.sampled_from(
    ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "192.0.2.0/24", "2001:db8::/32", "2001:db8:1::/48", "0.0.0.0/0"]
)
ips = st.sampled_from(["10.1.2.3", "10.9.9.9", "192.0.2.5", "198.51.100.1", "2001:db8:1::1", "2001:db9::1"])
hexes = st.sampled_from(["16", "1603", "160301", "ff", "0301"])
payloads = st.sampled_from([b"", b"\x16\x03\x01\x00", b"\x16\x03\x03", b"\xff\x16\x03\x01", b"GET / HTTP"])
strings = st.sampled_from(["h2", "http/1.1", "abc", "GET"])


def one_or_list(items: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(items, min_size=1, max_size=3).map(lambda xs: xs[0] if len(xs) == 1 else xs)


LIST_NAMES = {"domain": ["d1", "d2"], "keyword": ["k1", "k2"], "string": ["s1"], "cidr": ["n1"]}


def _atom(fields: st.SearchStrategy, op: str, values: st.SearchStrategy) -> st.SearchStrategy:
    return st.builds(lambda field, value: {field: {op: value}}, fields, values)


DOMAIN_FIELDS = st.sampled_from(["dns.qname", "tls.sni", "http.host", "quic.sni", "domain"])
TEXT_FIELDS = st.sampled_from(["http.path", "http.url", "http.query"])
IP_FIELDS = st.sampled_from(["client_ip", "server_ip"])
port_items = st.one_of(st.sampled_from([53, 80, 443]), st.sampled_from(["1-100", "400-500", "443-500", "53-80"]))

#: one branch per (field kind, operator), so every operator is drawn about as often as any other
atoms = st.one_of(
    _atom(DOMAIN_FIELDS, "exact", one_or_list(names)),
    _atom(DOMAIN_FIELDS, "suffix", one_or_list(names)),
    _atom(DOMAIN_FIELDS, "keyword", one_or_list(substrings)),
    _atom(DOMAIN_FIELDS, "regex", one_or_list(name_regexes)),
    _atom(DOMAIN_FIELDS, "in_list", st.sampled_from(["d1", "d2", "k1", "k2", "s1"])),
    _atom(TEXT_FIELDS, "keyword", one_or_list(words)),
    _atom(TEXT_FIELDS, "regex", one_or_list(text_regexes)),
    _atom(TEXT_FIELDS, "exact", one_or_list(texts.filter(bool))),
    _atom(TEXT_FIELDS, "in_list", st.sampled_from(["k1", "k2", "s1"])),
    _atom(st.just("transport"), "in", one_or_list(st.sampled_from(["tcp", "udp"]))),
    _atom(st.just("tls.alpn"), "in", one_or_list(strings)),
    _atom(st.just("tls.alpn"), "in_list", st.just("s1")),
    _atom(IP_FIELDS, "in", one_or_list(cidrs)),
    _atom(IP_FIELDS, "in_list", st.just("n1")),
    _atom(st.sampled_from(["server_port", "client_port"]), "in", one_or_list(port_items)),
    st.builds(
        lambda op, n: {"packet_index_in_flow": {op: n}}, st.sampled_from(["lt", "le", "gt", "ge"]), st.integers(0, 4)
    ),
    _atom(st.just("packet_index_in_flow"), "in", one_or_list(st.integers(0, 4))),
    _atom(st.sampled_from(["fully_encrypted", "tls.ech"]), "is", st.booleans()),
    _atom(st.just("first_payload_c2s"), "prefix", one_or_list(hexes)),
    _atom(
        st.just("first_payload_c2s"),
        "at",
        one_or_list(st.builds(lambda o, h: {"offset": o, "hex": h}, st.integers(0, 2), hexes)),
    ),
    _atom(st.just("first_payload_c2s"), "regex", one_or_list(st.sampled_from(["^\\x16\\x03", "\\x03\\x01", "HTTP$"]))),
)


conditions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(inner, max_size=3).map(lambda xs: {"any": xs}),
        inner.map(lambda x: {"not": x}),
    ),
    max_leaves=6,
)

lists_strategy = st.fixed_dictionaries(
    {
        "d1": st.lists(domain_entries, max_size=6).map(lambda e: {"kind": "domain", "items": e}),
        "d2": st.lists(domain_entries, max_size=3).map(lambda e: {"kind": "domain", "items": e}),
        "k1": st.lists(keyword_entries, max_size=5).map(lambda e: {"kind": "keyword", "items": e}),
        "k2": st.lists(keyword_entries, max_size=3).map(lambda e: {"kind": "keyword", "items": e, "nocase": True}),
        "s1": st.lists(st.one_of(strings, names, names.map(str.upper), texts.filter(bool)), max_size=4).map(
            lambda e: {"kind": "string", "items": e}
        ),
        "n1": st.lists(cidrs, max_size=4).map(lambda e: {"kind": "cidr", "items": e}),
    }
)

rules_strategy = st.lists(
    st.tuples(st.sampled_from(["log", "drop", "reset", "allow"]), conditions), min_size=1, max_size=6
)

inputs = st.builds(
    lambda transport, cip, sip, sport, idx, qname, sni, host, qsni, path, query, alpn, fe, ech, payload: MatchInput(
        transport=transport,
        client_ip=cip,
        server_ip=sip,
        client_port=sport + 1,
        server_port=sport,
        direction="c2s",
        packet_index_in_flow=idx,
        dns_qname=qname,
        tls_sni=sni,
        http_host=host,
        quic_sni=qsni,
        http_path=path,
        http_query=query,
        tls_alpn=alpn,
        fully_encrypted=fe,
        tls_ech=ech,
        first_payload_c2s=payload,
    ),
    st.sampled_from(["tcp", "udp"]),
    ips,
    ips,
    st.sampled_from([53, 80, 100, 443, 500, 8443]),
    st.integers(0, 5),
    st.none() | names,
    st.none() | names,
    st.none() | names,
    st.none() | names,
    st.none() | texts,
    st.none() | texts,
    st.lists(strings, max_size=2).map(tuple),
    st.sampled_from([None, True, False]),
    st.booleans(),
    payloads,
)


def _profile(lists: dict, rules: list[tuple[str, dict]]) -> Profile:
    doc = {
        "lists": lists,
        "rules": [{"id": f"r{i}", "action": action, "when": when} for i, (action, when) in enumerate(rules)],
    }
    return load_rules_text(yaml.safe_dump(doc, allow_unicode=True), "random.yaml")


def _check(profile: Profile, inp: MatchInput) -> None:
    got = profile.policy.evaluate(inp)
    want = reference(profile, inp)
    assert [(v.action.value, v.rule_id) for v in got] == [(a, r) for a, r, _ in want]
    for verdict, (_, _, evidence) in zip(got, want):
        assert {(e.field, e.value) for e in verdict.evidence} == {(f, v) for f, v, _ in evidence}
        for e in verdict.evidence:
            valid = set().union(*(shown for f, v, shown in evidence if (f, v) == (e.field, e.value)))
            assert e.matched in valid, (e, valid)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lists_strategy, rules_strategy, st.lists(inputs, min_size=1, max_size=4))
def test_compiled_equals_reference(lists: dict, rules: list, samples: list[MatchInput]) -> None:
    profile = _profile(lists, rules)
    for inp in samples:
        _check(profile, inp)


@settings(max_examples=200, deadline=None)
@given(lists_strategy, st.lists(inputs, min_size=1, max_size=4))
def test_single_atom_rules_agree(lists: dict, samples: list[MatchInput]) -> None:
    """One rule per list, on each field kind the list fits: dense coverage of the list indexes."""
    rules = [
        ("log", {"domain": {"in_list": "d1"}}),
        ("log", {"tls.sni": {"in_list": "d2"}}),
        ("log", {"http.url": {"in_list": "k1"}}),
        ("log", {"http.host": {"in_list": "k2"}}),
        ("log", {"tls.sni": {"in_list": "k1"}}),
        ("log", {"http.path": {"in_list": "k2"}}),
        ("log", {"server_port": ["53-80", "443-500"]}),
        ("log", {"client_port": ["54-81", 444]}),
        ("log", {"http.path": {"in_list": "s1"}}),
        ("log", {"quic.sni": {"in_list": "s1"}}),
        ("log", {"server_ip": {"in_list": "n1"}}),
        ("log", {"client_ip": {"in_list": "n1"}}),
    ]
    profile = _profile(lists, rules)
    for inp in samples:
        _check(profile, inp)


@settings(max_examples=300, deadline=None)
@given(lists_strategy, st.lists(atoms, min_size=1, max_size=3), st.lists(inputs, min_size=4, max_size=8))
def test_atoms_and_combinators_agree(lists: dict, parts: list[dict], samples: list[MatchInput]) -> None:
    """Each drawn atom alone, negated, and the atoms under all/any: many inputs per policy."""
    rules = (
        [("log", atom) for atom in parts]
        + [("log", {"not": atom}) for atom in parts]
        + [("log", {"all": parts}), ("log", {"any": parts}), ("log", {"not": {"any": parts}})]
    )
    profile = _profile(lists, rules)
    for inp in samples:
        _check(profile, inp)
