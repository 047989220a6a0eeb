"""The RST finder: TCP RSTs the endpoint whose address they carry did not send, grouped per injector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chokepoint.enforce.personality import Personality
from chokepoint.flow.flow import S2C, Flow
from chokepoint.packet.record import SYN, Packet
from chokepoint.probe.detect.fields import _MOD, PAIR_WINDOW, TTL_JUMP, _tsg_order, _ttl_text, flag_text
from chokepoint.probe.detect.finder import _Finder
from chokepoint.probe.detect.ranking import _STRONG, _finding, _fingerprint, _ip_checks, _rank
from chokepoint.probe.detect.report import Check, Finding
from chokepoint.probe.detect.state import _Baseline, _Conn, _Obs, _Rst


class _RstFinder(_Finder):
    """The RST finder's part of :class:`~chokepoint.probe.detect.detector.Detector` (its presets, counters and
    rare header values)."""

    def _rst_signals(self, flow: Flow, conn: _Conn, record: _Rst, base: _Baseline) -> tuple[list[str], list[str]]:
        """(signal tags, evidence sentences) for one RST; strong tags first."""
        pkt = record.pkt
        who = "server" if record.side == S2C else "client"
        tags: list[str] = []
        notes: list[str] = []
        if base.ttl is not None and abs(pkt.ttl - base.ttl) >= TTL_JUMP:
            tags.append("ttl")
            notes.append(f"TTL {_ttl_text(pkt.ttl)} where the {who}'s {base.source} had {_ttl_text(base.ttl)}")
        nxt = record.next_packet
        if nxt is not None and not nxt.tcp_flags & SYN and nxt.ts >= pkt.ts:
            tags.append("continued")
            notes.append(
                f'the {who} kept sending after "its" RST (#{nxt.index}, {flag_text(nxt.tcp_flags)}, TTL {nxt.ttl})'
            )
        if pkt.ip_version == 4 and pkt.window:
            for seed in self.tsg_seeds:
                order = _tsg_order(
                    pkt.ip_id, pkt.window, flow.client_ip, flow.server_ip, seed.seed_key, seed.seed_max, seed.val_range
                )
                if order:
                    tags.append("tsg")
                    notes.append(
                        f"IP ID {pkt.ip_id} and window {pkt.window} satisfy the TSG "
                        f"generator relation with k = {seed.seed_key} ({order})"
                    )
                    break
        for note in self._constants(pkt):
            tags.append("constant")
            notes.append(note)
        if pkt.payload and bytes(pkt.payload) in self.rare_payloads:
            tags.append("payload")
            notes.append(f"RST payload {bytes(pkt.payload).hex(' ')}, an injector's")
        elif pkt.payload:
            tags.append("payload?")
            notes.append(f"the RST carries {len(pkt.payload)} payload bytes")
        own = conn.sides[record.side]
        if pkt.ip_version == 4 and base.df is not None and pkt.df != base.df:
            tags.append("df?")
        if pkt.ip_version == 4 and _off_counter(own.ids, pkt.ip_id):
            tags.append("ip-id?")
        if pkt.window:
            tags.append("window?")
        return tags, notes

    def _rst_findings(
        self, flow: Flow, conn: _Conn, records: Sequence[_Rst], base: tuple[_Baseline, _Baseline]
    ) -> list[Finding]:
        """One finding per injector that reset the connection (see :func:`_injector_clusters`)."""
        judged: dict[int, tuple[list[str], list[str]]] = {}
        injected: list[_Rst] = []
        for record in records:
            tags, notes = self._rst_signals(flow, conn, record, base[record.side])
            judged[id(record)] = (tags, notes)
            if any(t in _STRONG for t in tags):
                injected.append(record)
        if not injected:
            return []
        chosen = {id(r) for r in injected}
        for record in records:
            if id(record) in chosen:
                continue
            partner = next(
                (
                    r
                    for r in injected
                    if r.side != record.side
                    and abs(r.pkt.ts - record.pkt.ts) <= PAIR_WINDOW
                    and (record.pkt.index < r.pkt.index or record.peer_last_nonrst < r.pkt.index)
                ),
                None,
            )
            if partner is not None:
                judged[id(record)][0].insert(0, "paired")
                judged[id(record)][1].insert(
                    0,
                    f"toward the other end {abs(record.pkt.ts - partner.pkt.ts) * 1000:.1f}"
                    f" ms from injected #{partner.pkt.index}, answering nothing (an RST "
                    f"is never answered with an RST, RFC 9293 §3.10.7)",
                )
                injected.append(record)
                chosen.add(id(record))
        injected.sort(key=lambda r: r.pkt.index)
        clusters = _injector_clusters(injected)
        return [self._rst_finding(flow, cluster, judged, base, len(clusters)) for cluster in clusters]

    def _rst_finding(
        self,
        flow: Flow,
        injected: list[_Rst],
        judged: dict[int, tuple[list[str], list[str]]],
        base: tuple[_Baseline, _Baseline],
        injectors: int,
    ) -> Finding:
        """The finding for one injector's RSTs (``injectors``: how many answered the same trigger)."""
        copies: dict[tuple, list[_Rst]] = {}  # identical copies share their evidence
        for record in injected:
            copies.setdefault((record.side, _wire(record.pkt)), []).append(record)
        evidence = [
            f"{', '.join(f'#{r.pkt.index}' for r in same)}: {note}"
            for same in copies.values()
            for note in judged[id(same[0])][1]
        ]
        roles = ("client", "server")
        obs = [
            _Obs(
                r.pkt,
                roles[r.side],
                base[r.side].hops,
                flow,
                judged[id(r)][0],
                (("to", roles[1 - r.side]), ("in_flight", r.in_flight), ("trigger", r.trigger)),
                r.latest_data.ttl if r.latest_data is not None else None,
            )
            for r in injected
        ]
        groups = _groups(injected)
        first = injected[0]
        if first.trigger:
            evidence.append(
                f"trigger: {first.trigger} (#{first.latest_data.index})"
                + (
                    f", {first.in_flight} bytes of it not yet acknowledged when the RST arrived"
                    if first.in_flight
                    else ""
                )
            )
        for target, members in groups.items():
            if len(members) > 1:
                span = (members[-1].pkt.ts - members[0].pkt.ts) * 1000
                same = "identical " if _identical(members) else ""
                evidence.append(f"burst of {len(members)} {same}RSTs toward the {target} within {span:.1f} ms")
        if injectors > 1:
            evidence.append(
                f"one of {injectors} injectors resetting this connection, told apart by flags, DF "
                "and copies (the GFW runs several side by side: IEEE S&P 2025, table fingerprint)"
            )
        fingerprint = _fingerprint(obs, flow, tcp=True)
        fingerprint.insert(
            0,
            (
                "count",
                ", ".join(
                    f"{len(m)} to the {t}" + (" (identical)" if len(m) > 1 and _identical(m) else "")
                    for t, m in groups.items()
                ),
            ),
        )
        trigger_state = _trigger_state(injected)
        candidates = _rank(
            {name: self._reset_checks(p, obs, groups, trigger_state) for name, p in self.presets.items()}
        )
        summary = ", ".join(
            f"{len(m)} {'identical ' if len(m) > 1 and _identical(m) else ''}"
            f"{'/'.join(sorted({flag_text(r.pkt.tcp_flags) for r in m}))} to the {t}"
            for t, m in groups.items()
        )
        summary += f"; TTL {', '.join(str(t) for t in dict.fromkeys(o.pkt.ttl for o in obs))}"
        if base[S2C].ttl is not None:
            summary += f" (server's {base[S2C].source} {base[S2C].ttl})"
        return _finding("rst", flow, summary, obs, evidence, fingerprint, candidates)

    def _reset_checks(
        self, personality: Personality, obs: Sequence[_Obs], groups: Mapping[str, list[_Rst]], trigger_state: str | None
    ) -> list[Check]:
        style = personality.reset
        checks = []
        flags = sorted({flag_text(o.pkt.tcp_flags) for o in obs})
        checks.append(Check("flags", style.flags_text, "/".join(flags), flags == [style.flags_text], 1))
        observed = ", ".join(
            f"{len(m)} to the {t}" + (" identical" if len(m) > 1 and _identical(m) else "") for t, m in groups.items()
        )
        counts_ok = all(len(m) == style.count for m in groups.values())
        if counts_ok and style.count > 1:
            counts_ok = all(_identical(m) == style.identical for m in groups.values())
        expected = f"{style.count} per target" + (" identical" if style.count > 1 and style.identical else "")
        checks.append(Check("count", expected, observed, counts_ok, 1 if style.count == 1 else 3))
        targets = set(groups)
        wanted = {"client", "server"} if style.targets == "both" else {style.targets}
        if targets == wanted:
            checks.append(Check("targets", style.targets, "+".join(sorted(targets)), True, 1))
        elif targets < wanted:
            checks.append(
                Check(
                    "targets",
                    style.targets,
                    "+".join(sorted(targets)) + " (the other end may be outside the capture)",
                    True,
                    0,
                )
            )
        else:
            checks.append(Check("targets", style.targets, "+".join(sorted(targets)), False, 1))
        payloads = {bytes(o.pkt.payload) for o in obs}
        shown = ", ".join(p.hex(" ") or "none" for p in payloads)
        checks.append(
            Check(
                "payload",
                style.payload.hex(" ") or "none",
                shown,
                payloads == {style.payload},
                3 if style.payload else 0,
            )
        )
        checks += _ip_checks(style.ip, obs, tcp=True)
        if trigger_state is not None:
            if personality.drop_trigger:
                ok = True if trigger_state == "dropped" else None
                expected = "dropped (inline) or delivered (mirror mode)"
            else:
                ok = trigger_state == "delivered"
                expected = "delivered (on-path)"
            checks.append(Check("trigger", expected, trigger_state, ok, 1 if ok else 0))
        return checks


def _groups(records: Sequence[_Rst]) -> dict[str, list[_Rst]]:
    """Injected RSTs by the end they are sent to."""
    out: dict[str, list[_Rst]] = {}
    for record in records:
        out.setdefault("client" if record.side == S2C else "server", []).append(record)
    return out


def _wire(pkt: Packet) -> tuple:
    return (pkt.tcp_flags, pkt.seq, pkt.ack, pkt.ttl, pkt.ip_id, pkt.df, pkt.window, bytes(pkt.payload))


def _injector_clusters(records: Sequence[_Rst]) -> list[list[_Rst]]:
    """The injected RSTs split by the injector that sent them, for when several answered one trigger (GFW
    types I, II and III side by side, IEEE S&P 2025): first by flags and DF; then, where one such group holds
    bursts of identical copies of different sizes (type II's three identical RST+ACKs beside type III's
    single RST+ACK, same flags and DF), by burst size. One injector's RSTs stay together."""
    by_kind: dict[tuple[int, bool], list[_Rst]] = {}
    for record in records:
        by_kind.setdefault((record.pkt.tcp_flags, record.pkt.df), []).append(record)
    clusters: list[list[_Rst]] = []
    for members in by_kind.values():
        bursts: dict[tuple, list[_Rst]] = {}
        for record in members:
            bursts.setdefault((record.side, _wire(record.pkt)), []).append(record)
        if len({len(b) for b in bursts.values()}) <= 1:
            clusters.append(members)
            continue
        by_size: dict[int, list[_Rst]] = {}
        for burst in bursts.values():
            by_size.setdefault(len(burst), []).extend(burst)
        clusters += by_size.values()
    for cluster in clusters:
        cluster.sort(key=lambda r: r.pkt.index)
    return sorted(clusters, key=lambda c: c[0].pkt.index)


def _identical(records: Sequence[_Rst]) -> bool:
    return len({_wire(r.pkt) for r in records}) == 1


def _trigger_state(records: Sequence[_Rst]) -> str | None:
    """Whether the trigger reached its receiver, from the RST forged in the trigger sender's name: at the
    trigger's first byte (dropped inline) or after its last (delivered)."""
    for record in records:
        trigger = record.own_last_data
        if trigger is None or record.latest_data is not trigger:
            continue
        if record.pkt.seq == trigger.seq:
            return "dropped"
        if record.pkt.seq == (trigger.seq + len(trigger.payload)) % _MOD:
            return "delivered"
    return None


def _off_counter(ids: Sequence[int], ip_id: int) -> bool:
    """The endpoint's IP IDs count up (mostly steps of 1..64) and ``ip_id`` is far from all of them."""
    if len(ids) < 4:
        return False
    steps = [(b - a) & 0xFFFF for a, b in zip(ids, ids[1:])]
    if sum(1 for s in steps if 0 < s <= 64) < 0.75 * len(steps):
        return False
    return all(min((ip_id - i) & 0xFFFF, (i - ip_id) & 0xFFFF) > 1024 for i in ids)
