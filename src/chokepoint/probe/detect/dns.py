"""The DNS finder: several different answers to one query (a race), or an answer with a known forged address."""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence

from chokepoint.dissect.dns import DnsMessage, RType, parse_message
from chokepoint.dissect.errors import DissectError
from chokepoint.enforce.personality import Personality
from chokepoint.flow.flow import Flow
from chokepoint.packet.record import Packet
from chokepoint.probe.detect.fields import MAX_HOPS, TTL_JUMP, _ttl_text, _yes_no, initial_ttl
from chokepoint.probe.detect.finder import _Finder
from chokepoint.probe.detect.ranking import _finding, _fingerprint, _ip_checks, _rank
from chokepoint.probe.detect.report import Check, Finding
from chokepoint.probe.detect.state import _MAX_QUERIES, _Dns, _Obs

#: Top-level labels of names that only exist on a local network (RFC 6762 .local, RFC 6761 .localhost,
#: RFC 8375 home.arpa, and the de-facto .lan/.home/.internal/.localdomain/.corp).
_LOCAL_TLDS = frozenset({"local", "localhost", "arpa", "lan", "home", "internal", "intranet", "localdomain", "corp"})


def _local_name(name: str) -> bool:
    labels = name.rstrip(".").lower().split(".")
    return len(labels) < 2 or labels[-1] in _LOCAL_TLDS


def _is_bogus_address(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not address.is_global


class _DnsFinder(_Finder):
    """The DNS finder's part of :class:`~chokepoint.probe.detect.detector.Detector` (its flow state, presets,
    fingerprints and forged-answer pools)."""

    def _dns(self, flow: Flow, pkt: Packet, direction: int) -> None:
        try:
            message = parse_message(bytes(pkt.payload))
        except DissectError:
            self.counters["dns_unparsed"] += 1
            return
        if not message.questions:
            return
        state = flow.state.get("detect")
        if state is None:
            state = flow.state["detect"] = _Dns()
        question = message.questions[0]
        key = (message.id, question.name.lower(), question.qtype)
        if not message.is_response:
            if len(state.queries) < _MAX_QUERIES:
                state.queries.setdefault(key, (pkt, message))
            return
        self.counters["dns_responses"] += 1
        answers = state.answers.get(key)
        if answers is None:
            if len(state.answers) >= _MAX_QUERIES:
                self.counters["dns_untracked"] += 1
                return
            answers = state.answers[key] = []
        if len(answers) < 16:
            answers.append((pkt, message))

    def _finish_dns(self, flow: Flow, state: _Dns) -> None:
        for key, responses in state.answers.items():
            query = state.queries.get(key)
            self.findings += self._dns_findings(flow, query, responses)

    def _bogus(self, message: DnsMessage) -> list[str]:
        """Why an answer's addresses are known forgeries (fingerprint database, a preset's pool)."""
        reasons = []
        local = _local_name(message.qname or "")
        for value in _addresses(message):
            if local and _is_bogus_address(value):
                continue  # a home-network name may well resolve to a private or loopback address
            if self.fingerprints is not None:
                match = self.fingerprints.match_dns(value)
                if match is not None and not match.is_false_positive:
                    reasons.append(
                        f"{value} is a known forged answer ({match.name}, {','.join(match.countries) or 'any country'})"
                    )
                    continue
            if value in self.dns_pools:
                reasons.append(f"{value} is in a censor preset's forged-answer pool")
        return reasons

    def _dns_findings(
        self, flow: Flow, query: tuple[Packet, DnsMessage] | None, responses: list[tuple[Packet, DnsMessage]]
    ) -> list[Finding]:
        """The forged answers to one query, one finding per injector: answers with different flags or name
        compression come from different injectors (the GFW's three, "Triplet Censors", FOCI 2020)."""
        contents = {(_answer_set(m), m.flags) for _p, m in responses}
        ttls = [p.ttl for p, _m in responses]
        race = len(responses) > 1 and (len(contents) > 1 or max(ttls) - min(ttls) >= TTL_JUMP)
        bogus = {pkt.index: self._bogus(m) for pkt, m in responses}
        if not race and not any(bogus.values()):
            return []
        evidence: list[str] = []
        forged = [(p, m) for p, m in responses if bogus[p.index]]
        if race:
            self.counters["dns_races"] += 1
            evidence.append(
                f"{len(responses)} different answers to one query from the resolver's address "
                f"(an on-path injector races the resolver)"
            )
            if not forged:  # the on-path injectors win the race; the resolver's answer comes last
                last = (_answer_set(responses[-1][1]), responses[-1][1].flags)
                forged = [(p, m) for p, m in responses if (_answer_set(m), m.flags) != last]
                evidence.append(
                    f"#{responses[-1][0].index} arrived last: taken as the resolver's answer, "
                    f"{', '.join(f'#{p.index}' for p, _m in forged)} before it as forged"
                )
        genuine = [(p, m) for p, m in responses if all(p is not f for f, _ in forged)]
        groups: dict[tuple, list[tuple[Packet, DnsMessage]]] = {}
        for pkt, message in forged:
            groups.setdefault((message.flags, _compressed(pkt.payload)), []).append((pkt, message))
        if len(groups) > 1:
            evidence.append(f"{len(groups)} injectors answered (different DNS flags or name compression)")
        return [self._dns_finding(flow, query, race, group, genuine, bogus, evidence) for group in groups.values()]

    def _dns_finding(
        self,
        flow: Flow,
        query: tuple[Packet, DnsMessage] | None,
        race: bool,
        forged: list[tuple[Packet, DnsMessage]],
        genuine: list[tuple[Packet, DnsMessage]],
        bogus: dict[int, list[str]],
        shared: list[str],
    ) -> Finding:
        """One injector's forged answers (``shared``: evidence about the whole query)."""
        evidence = list(shared)
        for pkt, _m in forged:
            evidence += [f"#{pkt.index}: {reason}" for reason in bogus[pkt.index]]
        real_ttl = Counter(p.ttl for p, _m in genuine).most_common(1)[0][0] if genuine else None
        hops = MAX_HOPS if real_ttl is None else initial_ttl(real_ttl) - real_ttl
        if real_ttl is not None:
            for pkt, _m in forged:
                if abs(pkt.ttl - real_ttl) >= TTL_JUMP:
                    evidence.append(
                        f"#{pkt.index}: TTL {_ttl_text(pkt.ttl)} where the resolver's other answer had "
                        f"{_ttl_text(real_ttl)}"
                    )
        obs = []
        for pkt, message in forged:
            tags = ["race"] if race else []
            tags += ["bogus-answer"] if bogus[pkt.index] else []
            obs.append(
                _Obs(
                    pkt,
                    "server",
                    hops,
                    flow,
                    tags,
                    (
                        ("qname", message.qname),
                        ("qtype", message.qtype),
                        ("dns_flags", f"0x{message.flags:04x}"),
                        ("answers", list(_addresses(message))),
                        ("answer_ttls", [r.ttl for r in message.answers]),
                        ("compressed", _compressed(pkt.payload)),
                    ),
                    query[0].ttl if query is not None else None,
                )
            )
        fingerprint = _fingerprint(obs, flow, tcp=False)
        first = forged[0][1]
        fingerprint.insert(
            0,
            (
                "dns",
                f"flags 0x{first.flags:04x}, answers {', '.join(_addresses(first)) or 'none'}"
                f", answer TTL {', '.join(str(r.ttl) for r in first.answers) or 'n/a'}, "
                f"name compression {_yes_no(_compressed(forged[0][0].payload))}",
            ),
        )
        if genuine:
            real = genuine[-1]
            fingerprint.append(
                ("real answer", f"#{real[0].index}: {', '.join(_addresses(real[1])) or 'none'} (TTL {real[0].ttl})")
            )
        query_message = query[1] if query is not None else None
        candidates = _rank({name: _dns_checks(p, obs, forged, query_message) for name, p in self.presets.items()})
        summary = (
            f"{'race: ' if race else ''}forged answer for {first.qname} "
            f"({', '.join(_addresses(first)) or 'no address'}), flags 0x{first.flags:04x}, "
            f"TTL {forged[0][0].ttl}" + (f" (resolver {real_ttl})" if real_ttl is not None else "")
        )
        return _finding("dns", flow, summary, obs, evidence, fingerprint, candidates)


def _dns_checks(
    personality: Personality, obs: Sequence[_Obs], forged: Sequence[tuple[Packet, DnsMessage]], query: DnsMessage | None
) -> list[Check]:
    style = personality.dns
    checks = []
    flags = {m.flags for _p, m in forged}
    if style.flags is None:
        qflags = query.flags if query is not None else 0x0100
        expected_flags = 0x8000 | (qflags & 0x7900) | 0x0080
        label = f"resolver-like (0x{expected_flags:04x} for this query)"
        weight = 1
    else:
        expected_flags, label, weight = style.flags, f"0x{style.flags:04x}", 1 if style.flags == 0x8180 else 2
    checks.append(Check("dns_flags", label, ", ".join(f"0x{f:04x}" for f in flags), flags == {expected_flags}, weight))
    compressed = {_compressed(p.payload) for p, _m in forged} - {None}
    if compressed:
        checks.append(
            Check(
                "compression",
                _yes_no(style.compression),
                "/".join(map(_yes_no, compressed)),
                compressed == {style.compression},
                1,
            )
        )
    answer_ttls = {r.ttl for _p, m in forged for r in m.answers if r.rtype in (RType.A, RType.AAAA)}
    if answer_ttls:
        checks.append(
            Check(
                "answer_ttl",
                str(style.answer_ttl),
                ", ".join(map(str, sorted(answer_ttls))),
                answer_ttls == {style.answer_ttl},
                2,
            )
        )
    for _p, message in forged[:1]:
        addresses = list(_addresses(message))
        pool = _family_pool(style.answers, message.qtype)
        if pool:
            ok = bool(addresses) and set(addresses) <= pool and len(addresses) <= style.answers_per_response
            checks.append(
                Check(
                    "answers",
                    f"up to {style.answers_per_response} of {', '.join(sorted(pool))}",
                    ", ".join(addresses) or "none",
                    ok,
                    3,
                )
            )
        else:
            checks.append(
                Check(
                    "answers",
                    "none (empty NOERROR)",
                    ", ".join(addresses) or "none",
                    not addresses and message.rcode == 0,
                    1,
                )
            )
        if query is not None:
            has_opt = any(r.rtype == RType.OPT for r in message.additional)
            wanted = style.copy_query_edns and query.edns is not None
            checks.append(Check("edns", _yes_no(wanted), _yes_no(has_opt), has_opt == wanted, 1))
    checks += _ip_checks(style.ip, obs, tcp=False)
    return checks


def _addresses(message: DnsMessage) -> tuple[str, ...]:
    return tuple(r.value for r in message.answers if r.rtype in (RType.A, RType.AAAA))


def _answer_set(message: DnsMessage) -> tuple:
    return tuple(sorted((r.rtype, r.value) for r in message.answers)) + (message.rcode,)


def _family_pool(pool: Iterable[str], qtype: int | None) -> set[str]:
    version = 4 if qtype == RType.A else 6 if qtype == RType.AAAA else 0
    out = set()
    for value in pool:
        address = ipaddress.ip_address(value)
        if address.version == version:
            out.add(address.compressed)
    return out


def _compressed(payload: bytes) -> bool | None:
    """Whether the first answer's owner name is a compression pointer (RFC 1035 §4.1.4); None without an
    answer or when the question section cannot be walked."""
    data = bytes(payload)
    if len(data) < 12:
        return None
    qdcount = int.from_bytes(data[4:6], "big")
    ancount = int.from_bytes(data[6:8], "big")
    if not ancount:
        return None
    pos = 12
    for _ in range(qdcount):
        while True:
            if pos >= len(data):
                return None
            length = data[pos]
            if length == 0:
                pos += 1
                break
            if length & 0xC0 == 0xC0:
                pos += 2
                break
            pos += 1 + length
        pos += 4
    if pos >= len(data):
        return None
    return data[pos] & 0xC0 == 0xC0
