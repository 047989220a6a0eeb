"""From the packets of a test trace and a control trace to where the censor sits (CenTrace's method).

Layout (CenTrace's, Sundara Raman et al., CoNEXT 2022; measurement-anchors.md section 4): one capture per
domain, each holding TTL-limited probes to one server. A TCP probe is the client's first data segment with PSH
to a port below 1024 on a connection of its own (its source port names it); its IP TTL is the probe's TTL (the
handshake before it had a full TTL). A DNS probe is a UDP query to port 53 from a port of its own. A probe's
responses are the ICMP errors that quote it and the server address's packets to its port after it.

A probe *terminates* when something other than an ICMP time-exceeded answers it (RST, FIN, data, an ACK of the
request, a DNS answer). Comparing the first terminating TTL of the test domain (T_t) with the control's (T_c):

- T_t == T_c and the same answer: ``no-censorship``; a different answer: ``endpoint-firewall``;
- T_t < T_c: ``censor-identified``. **on-path** when the probe that drew the interference also drew an ICMP
  time-exceeded (the packet was copied and went on); **in-path** when it drew none although the control at that
  TTL did (it was intercepted); else ``unknown``;
- the test never terminates though it went past T_c: a drop (``interference`` ``drop``, in-path), with T_t one
  TTL past the last hop that answered the test (``endpoint-firewall`` when that is the server's own hop);
- the control never terminates, or a trace stops before T_c: ``terminated-early``; anything else
  (e.g. T_t > T_c, no hop revealed): ``cannot-identify``.

Where the censor is, as CenTrace places it: at TTL T_t, with the address that answered the *control* at T_t
(for a drop, at the first TTL from T_t on at which the control was answered) — the router at or right after
the device, which a transparent box (a tap, a layer-2 device: lab/geometry.py) has no address of its own to show. The control's
answers one TTL before and after are given as ``candidates`` (CenTrace's middlebox_before/after). When that
address is the server's own, the interference comes from the endpoint: ``endpoint-firewall`` (CenTrace's
NAT_FIREWALL); when the control drew no answer there, ``cannot-identify``.

Whether the injector copies the probe's TTL: the injected packets' TTL at the client moving one for one with
the probe's TTL (``copies_probe_ttl`` True), fixed (False), or too few probes to tell (None).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chokepoint.trace.packets import ACK, FIN, ICMP, ICMP_TIME_EXCEEDED, PSH, RST, SYN, TCP, UDP, Pkt, TraceInputError

OUTCOMES = ("censor-identified", "endpoint-firewall", "no-censorship", "terminated-early", "cannot-identify")
PATHS = ("in-path", "on-path", "unknown")
#: a probe's answer, strongest first (CenTrace's precedence: RST, FIN, application data, ACK, ICMP)
TLS_HANDSHAKE = b"\x16"
KINDS = ("rst", "fin", "data", "dns", "ack", "icmp", "timeout")


@dataclass(slots=True)
class Probe:
    """One TTL-limited probe and what answered it."""

    ttl: int
    sport: int
    packet: Pkt
    icmp: list[Pkt] = field(default_factory=list)  # time-exceeded quoting it
    replies: list[Pkt] = field(default_factory=list)  # the server address's packets to its port

    @property
    def kind(self) -> str:
        found = set()
        for p in self.replies:
            if p.proto == UDP:
                found.add("dns")
            elif p.has(RST):
                found.add("rst")
            elif p.has(FIN):
                found.add("fin")
            elif p.payload:
                found.add("data")
            elif p.has(ACK) and _acked(self.packet, p) > 1:
                found.add("ack")
        if self.icmp:
            found.add("icmp")
        return next((k for k in KINDS if k in found), "timeout")

    @property
    def terminating(self) -> bool:
        return self.kind not in ("icmp", "timeout")

    @property
    def icmp_ip(self) -> str | None:
        return self.icmp[0].src if self.icmp else None

    def answer(self) -> str:
        """What answered, for comparing test and control: the kind and the first line of the data."""
        kind = self.kind
        if kind == "dns":
            return "dns " + ",".join(sorted(_dns_answers(p.payload) for p in self.replies if p.proto == UDP))
        data = b"".join(p.payload for p in sorted(self.replies, key=lambda p: p.seq) if p.proto == TCP)
        first = data.split(b"\r\n", 1)[0][:80] if data[:5] == b"HTTP/" else data[:3]
        shown = first.hex() if first[:1] == TLS_HANDSHAKE else first.decode("latin-1")
        return f"{kind} {shown}".strip()

    def describe(self) -> str:
        kind = self.kind
        if kind == "timeout":
            return "*"
        if kind == "icmp":
            return f"{self.icmp_ip} ICMP time-exceeded"
        lead = next((p for p in self.replies if p.proto in (TCP, UDP)), None)
        extra = f" ttl={lead.ttl} id={lead.ip_id}" if lead is not None else ""
        also = f" (+ICMP from {self.icmp_ip})" if self.icmp else ""
        return f"{self.answer()}{extra}{also}"


def _dns_answers(payload: bytes) -> str:
    """The A records of a DNS answer, as text (empty when it cannot be parsed)."""
    try:
        import dns.message

        msg = dns.message.from_wire(payload)
        return "|".join(sorted(rd.to_text() for rrset in msg.answer for rd in rrset)) or f"rcode{msg.rcode()}"
    except Exception:  # noqa: BLE001 - a forged answer may be malformed; it is still an answer
        return "unparsed"


def _acked(request: Pkt, reply: Pkt) -> int:
    """How far ``reply`` acknowledges into ``request`` (sequence numbers modulo 2**32)."""
    return (reply.ack - request.seq) % (1 << 32)


def _belongs(request: Pkt, reply: Pkt) -> bool:
    """Whether ``reply`` answers this probe and not an earlier connection that used the same port: a TCP reply
    with ACK acknowledges within the request (0 to its length + 1), a DNS reply carries the query's ID."""
    if request.proto == UDP:
        return reply.payload[:2] == request.payload[:2]
    return not reply.has(ACK) or _acked(request, reply) <= len(request.payload) + 1


def probes_from_packets(packets: list[Pkt]) -> tuple[dict[int, list[Probe]], str | None, str | None]:
    """The probes of one capture by TTL, the client address and the server address."""
    candidates = [
        p
        for p in packets
        if p.icmp_type < 0
        and p.payload
        and ((p.proto == TCP and p.has(PSH) and p.dport < 1024) or (p.proto == UDP and p.dport == 53))
    ]
    if not candidates:
        return {}, None, None
    client, _ = Counter(p.src for p in candidates).most_common(1)[0]
    server, _ = Counter(p.dst for p in candidates if p.src == client).most_common(1)[0]
    probes: dict[tuple[int, int], Probe] = {}
    for p in candidates:
        if p.src == client and p.dst == server and (p.proto, p.sport) not in probes:
            probes[(p.proto, p.sport)] = Probe(p.ttl, p.sport, p)
    for p in packets:
        if p.proto == ICMP and p.dst == client and p.icmp_type == ICMP_TIME_EXCEEDED and p.quoted is not None:
            q = p.quoted
            probe = probes.get((q.proto, q.sport))
            if probe is not None and q.dst == server:
                probe.icmp.append(p)
        elif p.src == server and p.dst == client and p.proto in (TCP, UDP):
            probe = probes.get((p.proto, p.dport))
            if probe is not None and p.ts >= probe.packet.ts and _belongs(probe.packet, p):
                probe.replies.append(p)
    by_ttl: dict[int, list[Probe]] = {}
    for probe in probes.values():
        by_ttl.setdefault(probe.ttl, []).append(probe)
    return dict(sorted(by_ttl.items())), client, server


@dataclass(slots=True)
class Side:
    """One domain's trace: its probes by TTL."""

    probes: dict[int, list[Probe]]
    #: connections opened after the last probe that never got to send their request (the handshake refused or
    #: unanswered): the trace went on, but a residual block took the server away
    unsent: int = 0

    def terminating_ttl(self) -> int | None:
        return next((ttl for ttl, ps in self.probes.items() if any(p.terminating for p in ps)), None)

    def max_ttl(self) -> int:
        return max(self.probes, default=0)

    def at(self, ttl: int) -> list[Probe]:
        return self.probes.get(ttl, [])

    def icmp_ip(self, ttl: int) -> str | None:
        return next((p.icmp_ip for p in self.at(ttl) if p.icmp_ip), None)

    def responder(self, ttl: int) -> str | None:
        """Who answered the probes at ``ttl``: the router whose ICMP quotes one, else the first reply's source."""
        found = self.icmp_ip(ttl)
        if found is None:
            found = next((r.src for p in self.at(ttl) for r in p.replies), None)
        return found

    def terminating(self, ttl: int) -> Probe | None:
        return next((p for p in self.at(ttl) if p.terminating), None)

    def summary(self, ttl: int) -> list[str]:
        return sorted({p.describe() for p in self.at(ttl)}) or ["* (no request sent: handshake failed)"]


@dataclass(slots=True)
class Report:
    """The analysis: ``outcome``, the censor's ``censor_ttl``/``censor_ip``, ``path``, ``interference``, ..."""

    outcome: str
    test: Side
    control: Side
    server: str | None = None
    censor_ttl: int | None = None
    censor_ip: str | None = None
    path: str = "unknown"
    interference: str | None = None
    interference_ttl: int | None = None
    diverge_ttl: int | None = None
    copies_probe_ttl: bool | None = None
    injected: list[dict[str, int]] = field(default_factory=list)
    #: who answered the control one hop before and after the censor's TTL (CenTrace's middlebox_before/after)
    candidates: dict[str, str | None] = field(default_factory=dict)
    detail: str = ""

    def hops(self) -> list[dict[str, Any]]:
        ttls = sorted(set(self.test.probes) | set(self.control.probes))
        return [{"ttl": t, "test": self.test.summary(t), "control": self.control.summary(t)} for t in ttls]

    def to_dict(self) -> dict[str, Any]:
        censor = {"ttl": self.censor_ttl, "ip": self.censor_ip} if self.censor_ttl or self.censor_ip else None
        return {
            "outcome": self.outcome,
            "server": self.server,
            "censor": censor,
            "path": self.path,
            "interference": self.interference,
            "interference_ttl": self.interference_ttl,
            "diverge_ttl": self.diverge_ttl,
            "copies_probe_ttl": self.copies_probe_ttl,
            "candidates": self.candidates,
            "injected": self.injected,
            "test_terminating_ttl": self.test.terminating_ttl(),
            "control_terminating_ttl": self.control.terminating_ttl(),
            "detail": self.detail,
            "hops": self.hops(),
        }


def _interference(probe: Probe) -> str:
    """The kind of interference: an HTTP response is a ``blockpage`` whatever flags close it (a block page comes
    with a FIN or a RST; CenTrace's precedence would call it by the flag), else the probe's answer kind."""
    kind = probe.kind
    if kind == "dns":
        return "forged-dns"
    data = b"".join(p.payload for p in sorted(probe.replies, key=lambda p: p.seq) if p.proto == TCP)
    if data[:5] == b"HTTP/":
        return "blockpage"
    return kind


def _copies(test: Side, t_ttl: int, t_c: int) -> tuple[bool | None, list[dict[str, int]]]:
    """Whether injected packets' TTL follows the probe's, from the test probes answered before the control's
    terminating TTL (so from the censor, not the server)."""
    seen = []
    for ttl in range(t_ttl, t_c):
        for probe in test.at(ttl):
            lead = next((p for p in probe.replies if p.has(RST) or p.has(FIN) or p.payload), None)
            if probe.terminating and lead is not None:
                seen.append({"probe_ttl": ttl, "ttl": lead.ttl, "ip_id": lead.ip_id})
    if len({s["probe_ttl"] for s in seen}) < 2:
        return None, seen
    offsets = {s["ttl"] - s["probe_ttl"] for s in seen}
    return (len(offsets) == 1 and len({s["ttl"] for s in seen}) > 1), seen


def analyze_packets(test_packets: list[Pkt], control_packets: list[Pkt]) -> Report:
    """The report for a test capture and a control capture (``TraceInputError`` if either holds no probe)."""
    test_probes, test_client, test_server = probes_from_packets(test_packets)
    control_probes, control_client, control_server = probes_from_packets(control_packets)
    if not test_probes:
        raise TraceInputError("the test capture holds no TTL-limited probe (TCP PSH to a port < 1024 or DNS query)")
    if not control_probes:
        raise TraceInputError("the control capture holds no TTL-limited probe (TCP PSH to a port < 1024 or DNS query)")
    test = Side(test_probes, unsent(test_packets, test_probes, test_client, test_server))
    control = Side(control_probes, unsent(control_packets, control_probes, control_client, control_server))
    return analyze(test, control, test_server or control_server)


def unsent(packets: list[Pkt], probes: dict[int, list[Probe]], client: str | None, server: str | None) -> int:
    """How many connections the client opened to the server after its last probe without sending a request
    on them (a SYN from a port no probe used): a handshake that was refused or never answered."""
    used = {p.sport for ps in probes.values() for p in ps}
    last = max((p.packet.ts for ps in probes.values() for p in ps), default=0.0)
    ports = {
        p.sport
        for p in packets
        if p.proto == TCP
        and p.src == client
        and p.dst == server
        and p.has(SYN)
        and not p.has(ACK)
        and p.ts > last
        and p.sport not in used
    }
    return len(ports)


def _went_silent(test: Side, control: Side) -> int | None:
    """The TTL from which the test heard nothing while the control's probes drew an ICMP there: every test
    probe at that TTL unanswered, and no ICMP for the test at any TTL after it; None if there is none."""
    for ttl in sorted(test.probes):
        probes = test.at(ttl)
        if probes and all(p.kind == "timeout" for p in probes) and control.icmp_ip(ttl):
            if not any(test.icmp_ip(t) for t in test.probes if t > ttl):
                return ttl
    return None


def analyze(test: Side, control: Side, server: str | None = None) -> Report:
    """Compare the two traces (see the module docstring)."""
    report = Report("cannot-identify", test, control, server)
    ttls = sorted(set(test.probes) | set(control.probes))
    report.diverge_ttl = next(
        (
            t
            for t in ttls
            if {p.describe().split(" ttl=")[0] for p in test.at(t)}
            != {p.describe().split(" ttl=")[0] for p in control.at(t)}
        ),
        None,
    )
    t_t, t_c = test.terminating_ttl(), control.terminating_ttl()
    if t_c is None:
        report.outcome = "terminated-early"
        report.detail = "the control never got an answer other than ICMP: the path or the server is down"
        return report
    # The test stopped before the control's answer. A drop whose residual block then refused the later
    # handshakes (so no probe past it was sent) is still a drop: the test went silent where the control's
    # probes drew an ICMP, and the connections opened after it never carried a request.
    cut_short = t_t is None and test.max_ttl() <= t_c
    if cut_short and not (test.unsent and _went_silent(test, control)):
        report.outcome = "terminated-early"
        report.detail = f"the test trace stopped at TTL {test.max_ttl()}, before the control's answer at {t_c}"
        return report
    if t_t is None:  # dropped: one TTL past the last hop that answered the test (CenTrace)
        report.interference = "drop"
        last = max((t for t in test.probes if t < t_c and test.icmp_ip(t)), default=0)
        t_t = last + 1
        report.interference_ttl = t_t
        if t_t >= t_c:
            report.outcome = "endpoint-firewall"
            report.detail = f"every hop answered the test up to the server's (TTL {t_c}), which did not"
            return report
        report.path = "in-path"
        report.detail = f"the test's packets stop after hop {last}; the control's go on to TTL {t_c}"
        if cut_short:
            report.detail += (
                f"; then {test.unsent} connection(s) failed before a request could be sent (a residual block)"
            )
        return _locate(report, t_t, t_c, skip_silent=True)
    report.interference_ttl = t_t
    probe = test.terminating(t_t)
    assert probe is not None
    report.interference = _interference(probe)
    if t_t > t_c:
        report.detail = f"the test terminates past the control (TTL {t_t} > {t_c}): something answers for the server"
        return report
    if t_t == t_c:
        same = {p.answer() for p in test.at(t_t) if p.terminating} == {
            p.answer() for p in control.at(t_c) if p.terminating
        }
        report.outcome = "no-censorship" if same else "endpoint-firewall"
        report.interference = None if same else report.interference
        report.detail = f"both terminate at TTL {t_t}" + ("" if same else " with different answers")
        return report
    report.copies_probe_ttl, report.injected = _copies(test, t_t, t_c)
    if probe.icmp:
        report.path = "on-path"
        report.detail = f"the probe at TTL {t_t} drew both the interference and an ICMP from {probe.icmp_ip}"
    else:
        report.path = "in-path" if control.responder(t_t) else "unknown"
        report.detail = f"the probe at TTL {t_t} drew the interference and no ICMP"
    return _locate(report, t_t, t_c, skip_silent=False)


def _locate(report: Report, t_t: int, t_c: int, *, skip_silent: bool) -> Report:
    """The censor at the test's terminating TTL, with the address that answered the control there (CenTrace's
    middlebox; for a drop, the first TTL on from it at which the control was answered), the control's
    answers one hop before and after as ``candidates``; the server's own address there is an endpoint
    firewall (CenTrace's NAT_FIREWALL)."""
    control = report.control
    ttl = t_t
    while skip_silent and ttl < t_c and control.responder(ttl) is None:
        ttl += 1
    found = control.responder(ttl)
    report.candidates = {"before": control.responder(t_t - 1), "after": control.responder(t_t + 1)}
    if found is None:
        report.outcome = "cannot-identify"
        report.detail += f"; the control drew no answer at TTL {t_t} to name the hop"
        return report
    if report.server is not None and found == report.server:
        report.outcome = "endpoint-firewall"
        report.detail += f"; the hop at TTL {t_t} is the server itself ({found})"
        return report
    report.outcome, report.censor_ttl, report.censor_ip = "censor-identified", t_t, found
    report.detail += f"; the control's answer at TTL {ttl} came from {found}"
    return report


__all__ = ["OUTCOMES", "PATHS", "Probe", "Report", "Side", "analyze", "analyze_packets", "probes_from_packets"]
