"""Ground truth from the censor's event log: the technique class of each enforced verdict (an on-path injection
that lost the race to the server's answer did nothing), and the primary class of a list of them or of the
probe's techniques.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chokepoint.validate.scenarios import NOT_CENSORSHIP

CLIENT_ADDRESSES = frozenset({"198.18.0.2", "2001:db8:0:1::2"})

#: The order in which a measurement meets the layers: the first interference is the primary technique.
LAYER_ORDER = ("dns", "tcp", "tls", "http", "quic", "fet", "throttled", "delayed")
#: Probe technique kinds (webconnectivity.TechniqueKind, runner extras) -> matrix class; None: not a class
#: of its own (residual is a consequence of the primary technique, not a second one).
_KIND_CLASS = {"dns-bogon": "dns-forged", "http-diff": "http-blockpage", "residual": None}


@dataclass(frozen=True, slots=True)
class TruthAction:
    """One enforced verdict from the censor's event log, reduced to what the scoring needs."""

    label: str | None  # technique class; None: not interference (log) or not enforceable (mirror drop)
    action: str
    rule: str
    app_proto: str
    proto: str
    server: str
    injected: int
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        extra = f", {self.injected} injected" if self.injected else ""
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.action} by rule {self.rule} on {self.proto}/{self.app_proto or '?'} {self.server}{extra}{notes}"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "action": self.action,
            "rule": self.rule,
            "app_proto": self.app_proto,
            "proto": self.proto,
            "server": self.server,
            "injected": self.injected,
            "notes": list(self.notes),
        }


def _layer(app_proto: str, proto: str) -> str:
    if app_proto in ("tls", "http", "dns", "quic"):
        return app_proto
    return "udp" if proto == "UDP" else "tcp"


def _fully_encrypted(evidence: Iterable[Any]) -> bool:
    return any("fully_encrypted" in json.dumps(e) for e in evidence)


def truth_action(event: dict[str, Any]) -> TruthAction:
    """The technique class of one ``chokepoint`` event: what was done on the wire (mirror mode cannot
    drop: a drop there with nothing injected did nothing)."""
    cp = event.get("chokepoint", {})
    action = str(cp.get("action", ""))
    app_proto = str(event.get("app_proto") or "")
    proto = str(event.get("proto") or "")
    injected = list(cp.get("injected") or ())
    layer = _layer(app_proto, proto)
    notes = tuple(str(n) for n in cp.get("notes") or ())
    rst = any("R" in str(p.get("tcp_flags", "")) for p in injected)
    label: str | None
    if action == "dns-forge":
        label = "dns-forged"
    elif action == "blockpage":
        label = "http-blockpage"
    elif action == "throttle":
        label = "throttled"
    elif action == "delay":
        label = "delayed"
    elif action == "icmp-unreachable":
        label = "tcp-unreachable"
    elif action == "tls-intercept":  # the censor's own certificate, unless it could not intercept (mirror)
        label = None if any("untouched" in n for n in notes) else "tls-mitm"
    elif action == "reset":
        label = f"{layer}-reset" if layer in ("tcp", "tls", "http") else "tcp-reset"
    elif action == "drop":
        if cp.get("mode") == "mirror" and not injected:
            label = None
        elif cp.get("mode") == "mirror" and rst:
            label = f"{layer}-reset" if layer in ("tcp", "tls", "http") else "tcp-reset"
        elif layer in ("quic", "udp"):
            label = "quic-dropped"
        elif layer == "tcp" and _fully_encrypted(cp.get("evidence") or ()):
            label = "fet-blocked"
        elif layer == "dns":  # a query that is never answered: what the probe calls a DNS failure
            label = "dns-failure"
        else:
            label = f"{layer}-dropped"
    else:  # log, allow: not interference
        label = None
    server = f"{event.get('dest_ip')}:{event.get('dest_port')}"
    return TruthAction(label, action, str(cp.get("rule", "")), app_proto, proto, server, len(injected), notes)


def client_events(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The censor's verdict events (``event_type`` chokepoint) for flows from the lab's client, from event-log
    lines; blank lines, other JSON and anything that is not JSON are skipped."""
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(event, dict)
            and event.get("event_type") == "chokepoint"
            and event.get("src_ip") in CLIENT_ADDRESSES
        ):
            yield event


def truth_from_events(lines: Iterable[str], capture: Path | None = None) -> list[TruthAction]:
    """The enforced verdicts among event-log lines (flow records and other sources are skipped). With the
    client's ``capture``, an on-path (mirror) injection into an HTTP exchange whose real answer reached the
    client first lost the race: it did nothing (label None)."""
    out = []
    for event in client_events(lines):
        action = truth_action(event)
        if (
            capture is not None
            and action.label in ("http-reset", "http-blockpage")
            and event["chokepoint"].get("mode") == "mirror"
            and lost_race(capture, event)
        ):
            action = TruthAction(
                None,
                action.action,
                action.rule,
                action.app_proto,
                action.proto,
                action.server,
                action.injected,
                (*action.notes, "lost the race: the server's answer reached the client before the injected packets"),
            )
        out.append(action)
    return out


def lost_race(capture: Path, event: dict[str, Any]) -> bool:
    """Did the server's own payload reach the client before the first packet the censor injected toward
    it (``event``: a ``chokepoint`` event)? Packets are matched in the client's capture by direction and
    ports; injected ones by their TCP sequence number, flags and TTL as the event records them."""
    from chokepoint.packet.decode import Decoder
    from chokepoint.packet.pcap import CaptureFormatError, open_capture
    from chokepoint.packet.record import TCP, tcp_flags_text

    client, server = str(event.get("src_ip")), str(event.get("dest_ip"))
    client_port, server_port = event.get("src_port"), event.get("dest_port")
    injected = {
        (p.get("seq"), p.get("tcp_flags"), p.get("ttl"))
        for p in event["chokepoint"].get("injected") or ()
        if p.get("to") == "client" and p.get("proto") == "TCP"
    }
    if not injected:
        return False
    decoder = Decoder()
    try:
        with open_capture(capture) as reader:
            for frame in reader:
                pkt = decoder.decode(frame)
                if pkt is None or pkt.proto != TCP or (pkt.sport, pkt.dport) != (server_port, client_port):
                    continue
                if str(ipaddress.ip_address(pkt.src)) != server or str(ipaddress.ip_address(pkt.dst)) != client:
                    continue
                if (pkt.seq, tcp_flags_text(pkt.tcp_flags), pkt.ttl) in injected:
                    return False
                if pkt.payload:
                    return True
    except (CaptureFormatError, OSError):
        return False
    return False


def _rank(label: str) -> int:
    head = label.split("-")[0]
    return LAYER_ORDER.index(head) if head in LAYER_ORDER else len(LAYER_ORDER)


def primary(labels: Iterable[str | None]) -> str:
    """The first interference a measurement meets (by layer), or "none"."""
    present = [x for x in labels if x and x != NOT_CENSORSHIP]
    return min(present, key=_rank) if present else NOT_CENSORSHIP


def classified_class(techniques: Iterable[dict[str, Any]]) -> list[str]:
    """Matrix classes of the probe's techniques, in their order."""
    out = []
    for t in techniques:
        kind = str(t.get("technique", ""))
        cls = _KIND_CLASS.get(kind, kind)
        if cls and cls not in out:
            out.append(cls)
    return out


def trace_truth(mode: str, censor_hop: int, beyond_ip: str, lines: Iterable[str]) -> dict[str, Any]:
    """What ``chokepoint trace`` should report, from the topology and the censor's event log during the trace:
    ``outcome``, ``censor`` ({ttl, ip}) and ``path``, with ``basis`` saying why.

    With routers on the path the lab's censor is a transparent box (lab/geometry.py): a client's packet first
    gets past it at TTL ``censor_hop`` (hops_client + 1), and the hop that answers that TTL is the first one
    beyond it, ``beyond_ip`` — where CenTrace places such a device, and so the censor's hop and address. The first
    interference the censor logged for the client (``truth_action``: an enforced verdict, not a mirror-mode drop
    that did nothing) decides the path: ``in-path`` when the trigger was withheld inline (``trigger.dropped``:
    the hop beyond never hears from the test), ``on-path`` when it went on (a mirrored copy, or an inline
    injection that forwards the trigger) and expired beyond the censor, whose ICMP answers beside the
    injection. None: ``no-censorship``.
    """
    for event in client_events(lines):
        action = truth_action(event)
        if action.label is None:
            continue
        cp = event.get("chokepoint", {})
        what = f"{action.action} by rule {action.rule}"
        censor = {"ttl": censor_hop, "ip": beyond_ip}
        if mode == "mirror":
            return {
                "outcome": "censor-identified",
                "censor": censor,
                "path": "on-path",
                "basis": f"{what} on a mirrored copy at hop {censor_hop}; the original expires beyond the censor",
            }
        trigger = cp.get("trigger") or {}
        dropped = bool(trigger["dropped"]) if "dropped" in trigger else action.action == "drop"
        if dropped:
            return {
                "outcome": "censor-identified",
                "censor": censor,
                "path": "in-path",
                "basis": f"{what}, the trigger dropped inline: nothing of the test passes hop {censor_hop}",
            }
        return {
            "outcome": "censor-identified",
            "censor": censor,
            "path": "on-path",
            "basis": f"{what}, the trigger forwarded inline: it expires beyond the censor, which answers beside the "
            "injection",
        }
    return {"outcome": "no-censorship", "censor": None, "path": "unknown", "basis": "the censor did not interfere"}
