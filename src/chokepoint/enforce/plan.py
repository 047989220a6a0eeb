"""From a verdict to an enforcement plan: what to do with the trigger, the rest of the flow, which packets to
inject and which residual block to install. Pure: the inline (NFQUEUE) and mirror (AF_PACKET) backends carry
the plan out.

Sequence numbers (RFC 9293 §3.4, §3.10.7): for a TCP trigger with SEG.SEQ, SEG.ACK and SEG.LEN (payload plus
SYN and FIN), the trigger's *sender* expects SEG.ACK next from its peer, and the trigger's *receiver* expects
SEG.SEQ + SEG.LEN if the trigger reached it, SEG.SEQ if it was dropped inline. An RST is placed exactly there:
RFC 5961 §3.2 (which Linux implements) resets only when SEQ == RCV.NXT and answers any other in-window RST with a
challenge ACK. When the recipient may still be in SYN-SENT (the sender of a pure SYN, the receiver of a
SYN+ACK), the RST must carry an acceptable ACK instead (RFC 9293 §3.10.7.3), so ACK is set there whatever the
personality says. Mirror mode cannot drop: the trigger always counts as delivered.

``tls-intercept`` has no packets to plan: the TLS-terminating proxy (``chokepoint.backends.intercept``) enforces
it on the connections the kernel redirects to it before they reach the packet path. A flow that meets it here
was not redirected (another port, or mirror mode): the plan says ``intercept`` and the flow passes untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from chokepoint.dissect.dns import DnsMessage, parse_message, parse_tcp_stream
from chokepoint.dissect.errors import DissectError
from chokepoint.enforce.craft import (
    Stamp,
    Stamper,
    dns_payload,
    http_blockpage,
    icmp_error_allowed,
    icmp_unreachable,
    pick_answers,
    tcp_reset,
    tcp_segment,
    udp_datagram,
)
from chokepoint.enforce.personality import (
    IpStyle,
    ParallelInjector,
    Personality,
    ResetStyle,
    effective,
    fits_fragments,
)
from chokepoint.flow.key import ip_text
from chokepoint.packet.record import ACK, FIN, PSH, SYN, TCP, UDP, Packet
from chokepoint.policy.verdict import Action, Verdict

__all__ = ["Injection", "Residual", "Plan", "plan", "reply_numbers"]

Role = Literal["client", "server"]
Mode = Literal["inline", "mirror"]
_MOD = 1 << 32


@dataclass(frozen=True, slots=True)
class Injection:
    """One packet to send: ``to`` the client or the server side, a whole IP packet; ``what`` says which kind
    (``rst``, ``dns``, ``blockpage``, ``icmp``); ``injector`` names a parallel injector that sent it (empty:
    the personality itself)."""

    to: Role
    packet: bytes
    what: str
    injector: str = ""


@dataclass(frozen=True, slots=True)
class Residual:
    """A residual block to install as kernel state. Key fields the scope does not use are None (3-tuple: no
    client port; server: server IP and port only; client-server: the two IPs). ``proto`` is 6 or 17."""

    scope: str
    proto: int
    client_ip: str | None
    client_port: int | None
    server_ip: str | None
    server_port: int | None
    seconds: float
    action: Literal["drop", "reset"]
    rearm: bool
    expires_at: float


@dataclass(frozen=True, slots=True)
class Plan:
    """What the backend does for one decided verdict.

    ``drop_trigger``: drop the packet that triggered (inline only; always False in mirror mode).
    ``flow_action``: what the kernel does with the rest of the flow (allow, drop, throttle, delay, intercept:
    passes, as the proxy did not get it; None: no change, e.g. a ``log`` verdict); in mirror mode only ``injections`` and a ``reset`` residual can be
    carried out. ``drop_direction`` for ``drop``: c2s, s2c or both. ``notes``: why a plan differs from what the
    rule asked (a reset on UDP, a DNS forge without a query, ...).
    """

    action: Action
    rule_id: str
    drop_trigger: bool = False
    flow_action: Literal["allow", "drop", "throttle", "delay", "intercept", "inspect"] | None = None
    drop_direction: Literal["c2s", "s2c", "both"] | None = None
    injections: tuple[Injection, ...] = ()
    residual: Residual | None = None
    throttle_kbps: int | None = None
    throttle_burst_bytes: int | None = None
    delay_ms: int | None = None
    delay_jitter_ms: int | None = None
    notes: tuple[str, ...] = ()


def seg_len(pkt: Packet) -> int:
    """SEG.LEN: payload bytes plus one for SYN and one for FIN (RFC 9293 §3.4)."""
    return len(pkt.payload) + bool(pkt.tcp_flags & SYN) + bool(pkt.tcp_flags & FIN)


def _later(a: int, b: int | None) -> int:
    """The later of two sequence numbers (RFC 9293 §3.4 modular comparison)."""
    if b is None:
        return a
    return b if 0 < (b - a) % _MOD < _MOD // 2 else a


def reply_numbers(
    pkt: Packet, *, to_sender: bool, delivered: bool, forwarded: tuple[int | None, int | None] = (None, None)
) -> tuple[int, int]:
    """(seq, ack) of a segment forged toward the trigger's sender (appearing to come from its receiver) or
    toward its receiver (appearing to come from its sender), each at the recipient's RCV.NXT.

    ``forwarded`` is optional censor state: for (the trigger's direction, the opposite direction), the sequence
    number just after the highest byte the censor forwarded before this trigger. With it, data the peer still
    has in flight toward the recipient (already past the censor, not yet acknowledged in the trigger) and
    retransmitted triggers are accounted for; without it the trigger's own numbers are used.
    """
    own, other = forwarded
    if to_sender:
        return _later(pkt.ack, other), (pkt.seq + seg_len(pkt)) % _MOD
    return _later((pkt.seq + (seg_len(pkt) if delivered else 0)) % _MOD, own), pkt.ack


def plan(
    verdict: Verdict,
    flow: Any,
    pkt: Packet,
    raw: bytes,
    direction: int,
    personality: Personality,
    gen: Stamper,
    now: float,
    *,
    mode: Mode = "inline",
    forwarded: tuple[int | None, int | None] = (None, None),
) -> Plan:
    """The plan for ``verdict``, decided on ``pkt`` (whose whole IP packet is ``raw``) travelling in
    ``direction`` (0 = client to server) in ``flow`` (a ``chokepoint.flow.flow.Flow``). The personality is
    overridden by the verdict's params (:func:`~chokepoint.enforce.personality.effective`); ``gen`` is the
    censor's header generator state; ``now`` stamps the residual block's expiry; ``forwarded`` is the optional
    sequence state of :func:`reply_numbers` (c2s, s2c order)."""
    p = effective(personality, verdict.params)
    inline = mode == "inline"
    action = verdict.action
    sender: Role = "client" if direction == 0 else "server"
    seqs = (forwarded[0], forwarded[1]) if direction == 0 else (forwarded[1], forwarded[0])
    base = Plan(action, verdict.rule_id)
    if action is Action.ALLOW:
        return replace(base, flow_action="allow")
    if action is Action.LOG:
        return base
    if action is Action.TLS_INTERCEPT:
        note = (
            "not redirected to the intercept proxy: passes untouched"
            if inline
            else "mirror mode cannot intercept: passes untouched"
        )
        return replace(base, flow_action="intercept", notes=(note,))
    if action is Action.THROTTLE:
        return replace(
            base,
            flow_action="throttle",
            throttle_kbps=max(1, round(p.throttle.rate_kbps)),
            throttle_burst_bytes=p.throttle.burst_bytes,
        )
    if action is Action.DELAY:
        return replace(base, flow_action="delay", delay_ms=round(p.delay.ms), delay_jitter_ms=round(p.delay.jitter_ms))

    residual = _residual(verdict, flow, pkt, p, now, inline)
    notes: list[str] = []
    if residual is None and not inline and pkt.proto == UDP and _wants_residual(verdict, p):
        notes.append("mirror mode cannot drop: no residual block for a UDP flow")

    if action is Action.DROP:
        drop_dir = verdict.param("direction", "both")
        trigger_dir = "c2s" if direction == 0 else "s2c"
        if not inline:
            notes.append("mirror mode cannot drop")
        return replace(
            base,
            drop_trigger=inline and drop_dir in ("both", trigger_dir),
            flow_action="drop",
            drop_direction=drop_dir,
            residual=residual,
            notes=tuple(notes),
        )

    if action is Action.RESET:
        if pkt.proto != TCP:
            notes.append(f"reset on a non-TCP flow (protocol {pkt.proto}) is enforced as a drop")
            return _drop(base, inline, residual, notes)
        drop_trigger = inline and p.drop_trigger
        fragments = pkt.reassembled_from
        injections = []
        if p.acts_on(fragments):
            injections = _resets(
                pkt, flow, sender, p.reset, gen, delivered=not drop_trigger, targets=p.reset.targets, seqs=seqs
            )
        else:
            notes.append(f"{p.name} reassembles at most {p.max_fragments} fragments; the trigger had {fragments}")
        for other in _parallel_acting(p, "reset", pkt, gen, notes):
            injections += [
                replace(i, injector=other.name)
                for i in _resets(
                    pkt,
                    flow,
                    sender,
                    other.reset,
                    gen,
                    delivered=not drop_trigger,
                    targets=other.reset.targets,
                    seqs=seqs,
                )
            ]
        return replace(
            base,
            drop_trigger=drop_trigger,
            flow_action="drop" if drop_trigger else "allow",
            injections=injections,
            residual=residual,
            notes=tuple(notes),
        )

    if action is Action.DNS_FORGE:
        return _dns(base, flow, pkt, sender, p, gen, inline, residual, notes, seqs)

    if action is Action.BLOCKPAGE:
        if pkt.proto != TCP or pkt.tcp_flags & SYN or not pkt.tcp_flags & ACK:
            notes.append("a blockpage needs an established TCP segment; enforced as a drop")
            return _drop(base, inline, residual, notes)
        delivered = not inline
        seq, ack = reply_numbers(pkt, to_sender=sender == "client", delivered=delivered, forwarded=seqs)
        server, client = _ends(pkt, sender)
        style = p.blockpage
        stamps = _stamps(gen, style.ip, pkt, flow)
        packets = http_blockpage(server[0], client[0], server[1], client[1], seq, ack, style, stamps)
        injections = [Injection("client", b, "blockpage") for b in packets]
        if style.reset_server:
            injections += _resets(
                pkt,
                flow,
                sender,
                ResetStyle(flags="RA", count=1, ip=style.ip),
                gen,
                delivered=delivered,
                targets="server",
                seqs=seqs,
            )
        return replace(
            base,
            drop_trigger=inline,
            flow_action="drop",
            injections=tuple(injections),
            residual=residual,
            notes=tuple(notes),
        )

    if action is Action.ICMP_UNREACHABLE:
        injections: tuple[Injection, ...] = ()
        if icmp_error_allowed(raw):
            source = None if p.icmp.source == "destination" else p.icmp.source
            if source is not None and (":" in source) != (pkt.ip_version == 6):
                notes.append(f"icmp source {source} is of the other IP version; the destination is used")
                source = None
            stamp = gen.stamp(p.icmp.ip, trigger_ttl=pkt.ttl, sip=flow.client_ip, dip=flow.server_ip)
            injections = (
                Injection(
                    sender,
                    icmp_unreachable(raw, code=p.icmp.code, code6=p.icmp.code6, stamp=stamp, source=source),
                    "icmp",
                ),
            )
        else:
            notes.append("no ICMP error about an ICMP error or a non-initial fragment (RFC 1812 §4.3.2.7)")
        return replace(
            base, drop_trigger=inline, flow_action="drop", injections=injections, residual=residual, notes=tuple(notes)
        )
    raise ValueError(f"no enforcement for action {action!r}")


# ------------------------------------------------------------------------------------------------ helpers


def _drop(base: Plan, inline: bool, residual: Residual | None, notes: list[str]) -> Plan:
    if not inline:
        notes.append("mirror mode cannot drop")
    return replace(
        base, drop_trigger=inline, flow_action="drop", drop_direction="both", residual=residual, notes=tuple(notes)
    )


def _ends(pkt: Packet, sender: Role) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """((server address, port), (client address, port)) from the trigger and who sent it."""
    if sender == "client":
        return (pkt.dst, pkt.dport), (pkt.src, pkt.sport)
    return (pkt.src, pkt.sport), (pkt.dst, pkt.dport)


def _stamps(gen: Stamper, style: IpStyle, pkt: Packet, flow: Any) -> Callable[[], Stamp]:
    """Fresh header values per packet, from the personality's generators."""
    return lambda: gen.stamp(style, trigger_ttl=pkt.ttl, sip=flow.client_ip, dip=flow.server_ip)


def _resets(
    pkt: Packet,
    flow: Any,
    sender: Role,
    style: ResetStyle,
    gen: Stamper,
    *,
    delivered: bool,
    targets: str,
    seqs: tuple[int | None, int | None],
) -> list[Injection]:
    """``style.count`` RSTs to each target, client first, at the numbers of :func:`reply_numbers`."""
    has_ack = bool(pkt.tcp_flags & ACK)
    syn = bool(pkt.tcp_flags & SYN)
    stamps = _stamps(gen, style.ip, pkt, flow)
    out: list[Injection] = []
    for target in ("client", "server"):
        if targets not in (target, "both"):
            continue
        to_sender = target == sender
        if to_sender:
            src, dst, sport, dport = pkt.dst, pkt.src, pkt.dport, pkt.sport
            seq, ack = reply_numbers(pkt, to_sender=True, delivered=delivered, forwarded=seqs)
            if not has_ack:  # the sender of a bare SYN is in SYN-SENT: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><RST,ACK>
                seq, with_ack = 0, True
            else:
                with_ack = style.flags == "RA"
        else:
            src, dst, sport, dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
            if style.seq == "ack-based":  # from the trigger alone, as if it had been delivered
                seq, ack = reply_numbers(pkt, to_sender=False, delivered=True)
            else:
                seq, ack = reply_numbers(pkt, to_sender=False, delivered=delivered, forwarded=seqs)
            if syn and has_ack:  # the receiver of a SYN+ACK is in SYN-SENT: its SYN must be acknowledged
                with_ack = True
            else:  # without an ACK in the trigger the forger knows no acknowledgment number
                with_ack = style.flags == "RA" and has_ack
        copies = []
        for i in range(style.count):
            if i and style.identical:
                copies.append(copies[0])
                continue
            copies.append(
                tcp_reset(
                    src,
                    dst,
                    sport,
                    dport,
                    seq,
                    ack,
                    with_ack=with_ack,
                    stamp=stamps(),
                    payload=style.payload,
                    extra_flags=style.extra_flags,
                )
            )
        out += [Injection(target, packet, "rst") for packet in copies]
    return out


def _query(pkt: Packet, flow: Any) -> DnsMessage | None:
    """The DNS message to answer: parsed from the trigger's payload, else the last one the engine saw."""
    try:
        if pkt.proto == UDP:
            return parse_message(pkt.payload)
        if pkt.proto == TCP and pkt.payload:
            messages = parse_tcp_stream(pkt.payload)
            if messages:
                return messages[-1]
    except DissectError:
        pass  # a segment of a longer TCP stream, or not DNS: fall back to what the engine dissected
    facts = getattr(flow, "facts", None)
    seen = getattr(facts, "dns", None) or ()
    return seen[-1] if seen else None


def _dns(
    base: Plan,
    flow: Any,
    pkt: Packet,
    sender: Role,
    p: Personality,
    gen: Stamper,
    inline: bool,
    residual: Residual | None,
    notes: list[str],
    seqs: tuple[int | None, int | None],
) -> Plan:
    message = _query(pkt, flow)
    if message is None or not message.questions or pkt.proto not in (TCP, UDP):
        notes.append("dns-forge without a DNS question to answer; enforced as a drop")
        return _drop(base, inline, residual, notes)
    style = p.dns
    answers = pick_answers(style.answers, message.qtype, gen.rng, style.answers_per_response)
    payload = dns_payload(message, style, answers)
    replace_query = inline and style.mode == "replace"
    server, client = _ends(pkt, sender)
    stamp = gen.stamp(style.ip, trigger_ttl=pkt.ttl, sip=flow.client_ip, dip=flow.server_ip)
    if pkt.proto == UDP:
        packet = udp_datagram(server[0], client[0], server[1], client[1], payload, stamp)
    else:
        if not pkt.tcp_flags & ACK:
            notes.append("dns-forge over TCP needs an established segment; enforced as a drop")
            return _drop(base, inline, residual, notes)
        seq, ack = reply_numbers(pkt, to_sender=sender == "client", delivered=not replace_query, forwarded=seqs)
        packet = tcp_segment(
            server[0],
            client[0],
            server[1],
            client[1],
            seq,
            ack,
            PSH | ACK,
            stamp,
            len(payload).to_bytes(2, "big") + payload,
        )
    injections = [Injection("client", packet, "dns")]
    # Over UDP every query is answered on its own (glibc sends A and AAAA back to back from one socket, and
    # the GFW forges an answer to each): the flow stays in user space ("inspect") instead of getting kernel state.
    if pkt.proto == UDP:
        flow_action = "inspect"
        injections += _parallel_dns(message, server, client, pkt, flow, p, gen, notes)
    else:
        flow_action = "drop" if replace_query else "allow"
        if any(other.dns is not None for other in p.parallel):
            notes.append("parallel DNS injectors answer UDP queries only")
    return replace(
        base,
        drop_trigger=replace_query,
        flow_action=flow_action,
        injections=tuple(injections),
        residual=residual,
        notes=tuple(notes),
    )


def _parallel_acting(
    p: Personality, section: str, pkt: Packet, gen: Stamper, notes: list[str]
) -> list[ParallelInjector]:
    """The personality's parallel injectors with a ``section`` ("reset" or "dns") that act on this trigger:
    those whose fragment limit covers it and whose probability draw (only below 1) succeeds; the others are
    noted. Each injector acts on its own, after the personality's own injection."""
    acting = []
    for other in p.parallel:
        if getattr(other, section) is None:
            continue
        if not fits_fragments(other.max_fragments, pkt.reassembled_from):
            notes.append(
                f"parallel injector {other.name} reassembles at most {other.max_fragments} fragments; "
                f"the trigger had {pkt.reassembled_from}"
            )
        elif other.probability < 1.0 and gen.rng.random() >= other.probability:
            notes.append(f"parallel injector {other.name} did not act (probability {other.probability:g})")
        else:
            acting.append(other)
    return acting


def _parallel_dns(
    message: DnsMessage,
    server: tuple[bytes, int],
    client: tuple[bytes, int],
    pkt: Packet,
    flow: Any,
    p: Personality,
    gen: Stamper,
    notes: list[str],
) -> list[Injection]:
    """Each parallel DNS injector's own forged answer (its flags and compression; the personality's pool when
    its own is empty), racing after the personality's ("Triplet Censors", FOCI 2020: three GFW injectors)."""
    out = []
    for other in _parallel_acting(p, "dns", pkt, gen, notes):
        style = other.dns if other.dns.answers else replace(other.dns, answers=p.dns.answers)
        answers = pick_answers(style.answers, message.qtype, gen.rng, style.answers_per_response)
        stamp = gen.stamp(style.ip, trigger_ttl=pkt.ttl, sip=flow.client_ip, dip=flow.server_ip)
        packet = udp_datagram(server[0], client[0], server[1], client[1], dns_payload(message, style, answers), stamp)
        out.append(Injection("client", packet, "dns", injector=other.name))
    return out


def _wants_residual(verdict: Verdict, p: Personality) -> bool:
    explicit = verdict.param("residual_s") is not None or verdict.param("residual_seconds") is not None
    return p.residual.seconds > 0 and (explicit or verdict.action is not Action.DNS_FORGE)


def _residual(verdict: Verdict, flow: Any, pkt: Packet, p: Personality, now: float, inline: bool) -> Residual | None:
    """The residual block the personality (or the rule) asks for; in mirror mode a drop becomes a reset
    (TCP) or nothing (the caller notes it)."""
    if not _wants_residual(verdict, p) or pkt.proto not in (TCP, UDP):
        return None
    style = p.residual
    action = style.action
    if action == "auto":
        action = "reset" if pkt.proto == TCP and verdict.action in (Action.RESET, Action.BLOCKPAGE) else "drop"
    if pkt.proto != TCP:
        action = "drop"
    if not inline:
        if pkt.proto != TCP:
            return None
        action = "reset"
    client_ip = flow.client_text or ip_text(flow.client_ip)
    server_ip = flow.server_text or ip_text(flow.server_ip)
    key = {
        "4-tuple": (client_ip, flow.client_port, server_ip, flow.server_port),
        "3-tuple": (client_ip, None, server_ip, flow.server_port),
        "server": (None, None, server_ip, flow.server_port),
        "client-server": (client_ip, None, server_ip, None),
    }[style.scope]
    return Residual(style.scope, pkt.proto, *key, style.seconds, action, style.rearm, now + style.seconds)
