"""The I/O-free engine: packet records in, flows with verdicts out.

For every packet: expire idle flows (by packet time), find or create the flow, update its TCP state and
bounded reassembly, and — while the flow is still within its inspection budget and has no verdict —
dissect the new bytes, build a ``MatchInput`` and ask the compiled policy. A terminal verdict ends
inspection (the flow takes the fast path); ``log`` verdicts are recorded once per rule.
The clock is the packets' own timestamps and the RNG is injected, so runs are reproducible.

Deferred rules (``Rule.defer``: InterSecLab, The Internet Coup (2025) ch. 5, unidentified "abnormally large"
traffic flagged and blocked after a set time): a match during inspection flags the flow (a ``flagged``
verdict in ``flow.logs``, once per rule) and puts the rule on ``flow.watch``. From then on every packet of the
flow, inspected or not, is checked: the first one at which the flow's age (packet time since its first packet)
reaches ``after_s`` and its IP bytes (both directions) reach ``min_bytes`` gets the rule's verdict
(``Step.decided_now``). A flow that expires idle first takes its flag with it (counted as
``flows_expired_flagged``); its next packet starts a new flow with a new clock.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from chokepoint.appproto import AppProto
from chokepoint.dissect import dispatch
from chokepoint.flow.flow import C2S, DIRECTION_NAMES, S2C, Flow
from chokepoint.flow.reassembly import StreamReassembler
from chokepoint.flow.table import FlowTable
from chokepoint.packet.record import SYN, TCP, UDP, Packet
from chokepoint.policy.fields import FIELDS, Kind
from chokepoint.policy.input import MatchInput
from chokepoint.policy.verdict import Action, Evidence, Verdict

if TYPE_CHECKING:
    from chokepoint.dissect.dispatch import FlowFacts
    from chokepoint.policy.compiler import Deferral
    from chokepoint.policy.profile import Profile

_TRANSPORT = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp", 50: "esp", 51: "ah", 47: "gre"}
#: Seconds of packet time between two expiry sweeps.
EXPIRY_INTERVAL = 1.0


_SEEN = "engine.facts_seen"
# Per-packet facts for the country profiles (policy.input: payload, data_packet_index_c2s, local_hour). The
# count of client data packets lives in flow.state; while it is at most RECHECK_DATA_PACKETS the policy is asked
# again on every client data packet, but only when some rule tests data_packet_index_c2s (Iran's protocol
# filter decides on the second data packet, whose facts are often unchanged). When a rule tests the packet's
# own payload (Russia's QUIC rule looks at every datagram), every inspected data packet is asked about.
_DATA_C2S = "engine.data_packets_c2s"
RECHECK_DATA_PACKETS = 4
#: Policy decisions remembered per engine, keyed by the values of every field the profile's rules read (most
#: evaluations repeat: every TCP flow's first packet looks the same to a rule about names; names recur). Not
#: used when a rule reads payload bytes (then values rarely repeat). Cleared whole when full.
DECISIONS_KEPT = 65536


@dataclass(slots=True)
class Step:
    """What one packet did: its flow, its direction (0 = c2s), whether the flow's terminal verdict was
    reached on this very packet, and the flows that ended meanwhile."""

    flow: Flow
    direction: int
    decided_now: bool
    ended: list[Flow]
    forwarded: tuple[int | None, int | None] = (None, None)  # seq_end (c2s, s2c) before this packet


def _facts_seen(facts: FlowFacts) -> tuple[Any, ...]:
    """What the policy can see of the facts; compared by identity first, so it costs a tuple."""
    return (
        facts.app_proto,
        facts.tls,
        facts.http,
        facts.quic,
        len(facts.dns),
        facts.fet,
        facts.socks,
        facts.tls_server,
        facts.tls_in_tls,
        facts.quic_seen,
    )


def facts_is_query(facts: FlowFacts | None) -> bool:
    """The newest DNS message of the flow is a query (not a response)."""
    return facts is not None and bool(facts.dns) and not facts.dns[-1].is_response


#: What the policy can see of a flow without data (no facts allocated yet): the facts of an empty FlowFacts.
_NO_FACTS_SEEN = (AppProto.UNKNOWN.value, None, None, None, 0, None, None, None, None, None)


class Engine:
    def __init__(self, profile: Profile, *, rng: random.Random | None = None) -> None:
        self.profile = profile
        self.settings = profile.engine
        self.policy = profile.policy
        self.rng = rng or random.Random(0)
        self.table = FlowTable(self.settings)
        self.counters: Counter[str] = Counter()
        self._next_sweep = 0.0
        self._use(profile)

    def _use(self, profile: Profile) -> None:
        """Take ``profile``'s policy and settings (at start, and on a swap)."""
        self.profile = profile
        self.settings = profile.engine
        self.policy = profile.policy
        # profile facts (see _DATA_C2S): whether to re-ask per data packet; the profile's clock offset
        used: frozenset[str] = getattr(self.policy, "fields_used", frozenset())
        self._recheck_data = "data_packet_index_c2s" in used
        self._recheck_payload = bool(used & {"payload", "payload_len"})
        self._with_stream = "stream_c2s" in used  # copying the reassembled stream is only worth it then
        meta = getattr(profile, "meta", None)
        self._utc_offset_s = getattr(meta, "utc_offset_s", 0)
        self._decisions: dict[tuple[Any, ...], tuple[Verdict, ...]] | None = None
        self._key_readers: tuple[Callable[[MatchInput], Any], ...] = ()
        if used and not any(FIELDS[name].kind is Kind.BYTES for name in used if name in FIELDS):
            self._decisions = {}
            self._key_readers = tuple(FIELDS[n].read for n in sorted(used) if n in FIELDS and not FIELDS[n].alias_of)
        # deferred rules by id (empty for most profiles: then no flow is ever watched)
        self._deferrals = {
            r.id: r.defer for r in getattr(self.policy, "rules", ()) if getattr(r, "defer", None) is not None
        }

    @property
    def has_deferrals(self) -> bool:
        """Whether the profile has deferred rules (otherwise no flow is ever watched)."""
        return bool(self._deferrals)

    def swap_profile(self, profile: Profile) -> None:
        """Enforce ``profile`` from the next packet on (a node's policy reload between two packets; nothing
        runs concurrently with ``step``). Flows that already have a verdict keep it. Flows still under
        inspection keep what was dissected and are judged by the new policy at their next inspected packet;
        flows flagged by a deferred rule keep their flag. Budgets and reassembly limits of the new ``engine:``
        settings apply from the next packet, the flow table's timeouts from the next expiry sweep (its
        ``max_flows`` too); the flow table itself is kept."""
        self._use(profile)
        self.table.settings = profile.engine
        self.table.timeouts.update(
            tcp=profile.engine.tcp_timeout,
            tcp_closed=profile.engine.tcp_closed_timeout,
            udp=profile.engine.udp_timeout,
            other=profile.engine.other_timeout,
            tcp_new=profile.engine.tcp_timeout,
            udp_new=profile.engine.udp_timeout,
        )
        for flow in self.table.index.values():
            if flow.inspecting:
                flow.state.pop(_SEEN, None)  # asked again at its next inspected packet
        self.counters["policy_swaps"] += 1

    # -- the packet path -------------------------------------------------------------------------
    def step(self, pkt: Packet) -> Step:
        """Process one packet and say what happened to its flow (the inline and mirror backends act on
        ``decided_now``); flows that ended meanwhile (expired or evicted) are in ``ended``."""
        ended: list[Flow] = []
        if pkt.ts >= self._next_sweep:
            ended.extend(self.table.expire(pkt.ts))
            self._next_sweep = pkt.ts + EXPIRY_INTERVAL
            if ended and self._deferrals:
                self.counters["flows_expired_flagged"] += sum(1 for f in ended if f.watch and f.verdict is None)
        flow, created = self.table.lookup(pkt)
        if created and self.table.evicted:
            ended.extend(self.table.pop_evicted())
        self.counters["packets"] += 1
        direction = flow.direction_of(pkt)
        flow.pkts[direction] += 1
        flow.bytes[direction] += pkt.ip_len or len(pkt.payload)
        flow.payload_bytes[direction] += len(pkt.payload)
        flow.last_ts = max(flow.last_ts, pkt.ts)
        forwarded: tuple[int | None, int | None] = (None, None)
        if pkt.proto == TCP:
            forwarded = (flow.seq_end[0], flow.seq_end[1])
            flow.advance_seq(pkt, direction)
            state = flow.tcp_state
            flow.update_tcp(pkt, direction)
            if flow.tcp_state is not state:
                self.table.reclassify(flow)
        elif pkt.proto == UDP and direction == S2C and flow.pkts[S2C] == 1:
            self.table.reclassify(flow)  # answered: no longer unassured (flow/memcap.py)
        decided_now = False
        if flow.inspecting:
            bare = flow.facts is None
            decided_now = self._inspect(flow, pkt, direction)
            if bare and flow.facts is not None:
                self.table.charge_data(flow)  # the flow table's memory budget (flow/memcap.py)
        if flow.watch is not None and not decided_now and flow.verdict is None:
            decided_now = self.deferred_due(flow, pkt, direction)
        return Step(flow, direction, decided_now, ended, forwarded)

    def process(self, pkt: Packet) -> list[Flow]:
        """Process one packet; return the flows that ended (expired or evicted) meanwhile."""
        return self.step(pkt).ended

    def finish(self) -> list[Flow]:
        """End of input: every remaining flow, oldest first."""
        return list(self.table.drain())

    def run(self, packets: Iterable[Packet]) -> Iterator[Flow]:
        for pkt in packets:
            yield from self.process(pkt)
        yield from self.finish()

    # -- inspection ------------------------------------------------------------------------------
    def _inspect(self, flow: Flow, pkt: Packet, direction: int) -> bool:
        """Count the packet against the flow's budget, then examine it; True when a terminal verdict was
        reached on this packet."""
        s = self.settings
        if (
            flow.inspected_pkts[direction] >= s.inspect_max_packets
            or flow.inspected_bytes[direction] >= s.inspect_max_bytes
        ):
            other = 1 - direction
            if (
                flow.inspected_pkts[other] >= s.inspect_max_packets
                or flow.inspected_bytes[other] >= s.inspect_max_bytes
            ):
                flow.inspecting = False
                self.counters["flows_budget_spent"] += 1
            return False
        flow.inspected_pkts[direction] += 1
        flow.inspected_bytes[direction] += len(pkt.payload)
        if pkt.proto == TCP and pkt.tcp_flags & SYN and s.reassembly and flow.syn_seq[direction] is None:
            flow.syn_seq[direction] = pkt.seq  # anchors the reassembler, allocated when data arrives
        return self.examine(flow, pkt, direction)

    def examine(self, flow: Flow, pkt: Packet, direction: int) -> bool:
        """Dissect an inspected packet (already counted against the budget) and decide; True when a terminal
        verdict was reached on it.

        Only a packet that carries a payload, is the first inspected one of its direction, or is neither TCP
        nor UDP can change anything here (a payload-less packet leaves the facts as they were at the last
        decision); the compiled fast path (``chokepoint.fast``) calls this for those packets only. Dissection
        state (``flow.facts``) and reassembly buffers are allocated when the first data arrives.
        """
        payload = pkt.payload
        facts = flow.facts
        if facts is None and (payload or (pkt.proto != TCP and pkt.proto != UDP)):
            facts = flow.facts = dispatch.new_facts()
        recheck = bool(payload) and self._recheck_payload
        if payload and direction == C2S:  # count the client's data packets (see _DATA_C2S)
            count = flow.state[_DATA_C2S] = flow.state.get(_DATA_C2S, 0) + 1
            recheck = recheck or (self._recheck_data and count <= RECHECK_DATA_PACKETS)
        if pkt.proto == TCP:
            if payload:
                self._tcp_bytes(flow, pkt, direction)
        elif pkt.proto == UDP:
            if payload:
                if flow.first_payload[direction] is None:
                    flow.first_payload[direction] = payload
                if facts.udp_probes[direction] < dispatch.MAX_UDP_PROBES or not facts.decided:
                    dispatch.on_udp_datagram(facts, direction, payload, flow.client_port, flow.server_port)
        else:
            if payload and flow.first_payload[direction] is None:
                flow.first_payload[direction] = payload
            dispatch.on_ip_only(facts, pkt.proto, payload)
        # The policy sees the first packet of each direction and every packet after which the dissected
        # facts changed; any other packet differs only in per-packet fields (direction, index, TCP header
        # length), which a packet that brings nothing new cannot make a rule about.
        seen = _facts_seen(facts) if facts is not None else _NO_FACTS_SEEN
        if seen != flow.state.get(_SEEN) or flow.inspected_pkts[direction] == 1 or recheck:
            flow.state[_SEEN] = seen
            return self._decide(flow, pkt, direction)
        return False

    def _tcp_bytes(self, flow: Flow, pkt: Packet, direction: int) -> None:
        """One TCP segment with a payload: the first payload of its direction, reassembly, dissection."""
        s = self.settings
        payload = pkt.payload
        if flow.first_payload[direction] is None:
            flow.first_payload[direction] = payload
            if direction == C2S:
                dispatch.on_first_client_payload(flow.facts, payload)
        if s.reassembly:
            stream = flow.streams[direction]
            if stream is None:
                stream = flow.streams[direction] = StreamReassembler(s.reassembly_max_bytes, s.reassembly_max_segments)
                isn = flow.syn_seq[direction]
                if isn is not None:
                    stream.set_isn(isn)
            added = stream.add(pkt.seq, payload)
            offset = (pkt.seq - stream.base) & 0xFFFFFFFF  # type: ignore[operator]  # add() set stream.base
            if added == 0:
                if stream.full:  # past the reassembled bytes: only a pending mid-stream TLS check looks at it
                    dispatch.on_tcp_beyond_stream(flow.facts, direction, offset, payload)
                if flow.facts.tls_shape is not None:
                    dispatch.on_tls_segment(flow.facts, direction, pkt.ts, offset, len(payload))
                return  # retransmission, or out of order: nothing new to dissect yet
            data = stream.bytes
        else:
            data = payload  # this censor looks at one segment at a time
        dispatch.on_tcp_data(flow.facts, direction, data, flow.server_port)
        if s.reassembly and flow.facts.tls_shape is not None:  # TLS-in-TLS sizes and times (dissect/tlsintls.py)
            dispatch.on_tls_segment(flow.facts, direction, pkt.ts, offset, len(payload))

    def _evaluate(self, inp: MatchInput) -> tuple[Verdict, ...]:
        """The policy's verdicts for ``inp``, remembered by the values of the fields its rules read (see
        ``DECISIONS_KEPT``): evaluation is a pure function of those values (and of the packet's direction,
        which the verdicts carry)."""
        decisions = self._decisions
        if decisions is None:
            return self.policy.evaluate(inp)
        key = (inp.direction, *[read(inp) for read in self._key_readers])
        found = decisions.get(key)
        if found is None:
            if len(decisions) >= DECISIONS_KEPT:
                decisions.clear()
            found = decisions[key] = self.policy.evaluate(inp)
        return found

    def _decide(self, flow: Flow, pkt: Packet, direction: int) -> bool:
        inp = self.match_input(flow, pkt, direction, utc_offset_s=self._utc_offset_s, with_stream=self._with_stream)
        for verdict in self._evaluate(inp):
            verdict = replace(verdict, packet_index=pkt.index, direction=DIRECTION_NAMES[direction])
            if verdict.action is Action.LOG:
                if all(v.rule_id != verdict.rule_id for v in flow.logs):
                    flow.logs.append(verdict)
                continue
            probability = verdict.param("probability", 1.0)
            if probability < 1.0:
                spared = flow.state.setdefault("spared", set())
                if verdict.rule_id in spared:
                    continue
                if self.rng.random() >= probability:
                    spared.add(verdict.rule_id)
                    self.counters["verdicts_spared_by_probability"] += 1
                    continue
            if self._deferrals:
                defer = self._deferrals.get(verdict.rule_id)
                if defer is not None:
                    self._flag(flow, verdict, defer)
                    continue
            if verdict.action is Action.DNS_FORGE and flow.proto == UDP:
                # Forged per query, as the GFW's injectors do: only a client's query triggers, and the flow
                # stays inspected so the next query on the same socket (glibc's AAAA after A) is answered too.
                if direction != C2S or not facts_is_query(flow.facts):
                    return False
                flow.verdict = verdict
                self.counters[f"verdict:{verdict.action.value}"] += 1
                return True
            flow.verdict = verdict
            flow.inspecting = False
            flow.watch = None
            self.counters[f"verdict:{verdict.action.value}"] += 1
            return True
        return False

    def _flag(self, flow: Flow, verdict: Verdict, defer: Deferral) -> None:
        """A deferred rule matched: flag the flow once for it and watch it (see the module docstring)."""
        if flow.watch is None:
            flow.watch = []
        elif any(v.rule_id == verdict.rule_id for v, _ in flow.watch):
            return
        flow.watch.append((verdict, defer))
        flow.logs.append(replace(verdict, flagged=True))
        self.counters["flows_flagged"] += 1

    def deferred_due(self, flow: Flow, pkt: Packet, direction: int) -> bool:
        """The first watched rule whose age and volume thresholds ``flow`` now meets decides it."""
        age = pkt.ts - flow.first_ts
        volume = flow.bytes[C2S] + flow.bytes[S2C]
        for verdict, defer in flow.watch:  # type: ignore[union-attr]  # called for watched flows only
            if age >= defer.after_s and volume >= defer.min_bytes:
                evidence = verdict.evidence + (
                    Evidence("flow.age_s", f"{age:.3f}", f">= {defer.after_s:g}"),
                    Evidence("flow.bytes", str(volume), f">= {defer.min_bytes}"),
                )
                flow.verdict = replace(
                    verdict, evidence=evidence, packet_index=pkt.index, direction=DIRECTION_NAMES[direction]
                )
                flow.inspecting = False
                flow.watch = None
                self.counters[f"verdict:{verdict.action.value}"] += 1
                self.counters["verdicts_deferred"] += 1
                return True
        return False

    @staticmethod
    def match_input(
        flow: Flow, pkt: Packet, direction: int, *, utc_offset_s: int = 0, with_stream: bool = True
    ) -> MatchInput:
        """The policy's view of ``flow`` at ``pkt``; ``utc_offset_s`` is the profile's clock offset
        (``local_hour`` = the packet's timestamp in that timezone); ``with_stream`` copies the reassembled
        client stream into ``stream_c2s`` (the engine asks for it only when a rule reads that field)."""
        facts = flow.facts
        pkts = flow.pkts
        first_payload = flow.first_payload
        # the network and per-packet facts, in MatchInput's field order (tests/test_engine.py checks it)
        inp = MatchInput(
            _TRANSPORT.get(flow.proto, "ip"),
            flow.client_text,
            flow.server_text,
            flow.client_port,
            flow.server_port,
            DIRECTION_NAMES[direction],
            pkts[C2S] + pkts[S2C],
            pkt.tcp_header_len,
            pkt.payload,
            flow.state.get(_DATA_C2S, 0),  # profile facts (see _DATA_C2S)
            int((pkt.ts + utc_offset_s) // 3600 % 24),
        )
        if flow.encap:
            inp.encap = flow.encap
        if first_payload[C2S]:
            inp.first_payload_c2s = first_payload[C2S]
        if first_payload[S2C]:
            inp.first_payload_s2c = first_payload[S2C]
        stream = flow.streams[C2S]
        if with_stream and stream is not None:
            inp.stream_c2s = stream.bytes
        if facts is None:
            return inp
        inp.app_proto = facts.app_proto
        if facts.dns:
            queries = [m for m in facts.dns if not m.is_response and m.questions] or [
                m for m in facts.dns if m.questions
            ]
            if queries:
                inp.dns_qname = queries[-1].qname
                inp.dns_qtype = queries[-1].qtype
        if facts.http is not None:
            req = facts.http
            inp.http_host = req.host
            inp.http_method = req.method
            inp.http_path = req.path_decoded
            inp.http_query = req.query_decoded
            inp.http_user_agent = req.user_agent
        if facts.tls is not None:
            ch = facts.tls
            inp.tls_sni = ch.sni
            inp.ja3 = ch.ja3_hash
            inp.ja4 = ch.ja4
            inp.tls_alpn = tuple(ch.alpn)
            inp.tls_versions = tuple(ch.supported_versions)
            inp.tls_ech = ch.has_ech
            inp.tls_esni = ch.has_esni
            inp.tls_record_fragmented = ch.record_count > 1
        if facts.quic is not None:
            q = facts.quic
            inp.quic_sni = q.sni
            inp.quic_version = q.version
            if q.ja4:
                inp.ja4 = q.ja4
        elif facts.quic_seen is not None and facts.quic_seen.version is not None:
            inp.quic_version = facts.quic_seen.version  # a long header seen mid-connection: no SNI
        if facts.fet is not None:
            inp.fully_encrypted = facts.fet.fully_encrypted
            inp.fet_exemption = facts.fet.exemption
        if facts.tls_in_tls is not None:
            inp.tls_in_tls = True
        elif facts.tls is not None and facts.tls_shape is None:
            inp.tls_in_tls = False  # the detector looked and found none
        return inp
