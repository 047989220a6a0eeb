"""What the detector reports: checks, candidates, injected packets, findings, the per-capture summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from chokepoint.enforce.personality import PRESET_CITES
from chokepoint.probe.detect.fields import initial_ttl


@dataclass(frozen=True, slots=True)
class Check:
    """One field of a preset checked against the observed packets: ``ok`` True (match), False (mismatch) or
    None (not applicable); ``weight`` is how specific a match is (0 anything fits .. 3 a rare constant)."""

    field: str
    expected: str
    observed: str
    ok: bool | None
    weight: int = 1

    def to_json(self) -> dict[str, Any]:
        result = "n/a" if self.ok is None else "match" if self.ok else "mismatch"
        return {
            "field": self.field,
            "expected": self.expected,
            "observed": self.observed,
            "result": result,
            "weight": self.weight,
        }


@dataclass(frozen=True, slots=True)
class Candidate:
    """Presets the finding is checked against, merged when their checks come out the same: ``score`` is the
    summed weight of matching fields, ``mismatches`` the number of fields that rule them out."""

    personalities: tuple[str, ...]
    score: int
    mismatches: int
    checks: tuple[Check, ...]

    @property
    def consistent(self) -> bool:
        return self.mismatches == 0

    @property
    def name(self) -> str:
        return self.personalities[0]

    def matched(self) -> list[str]:
        return [f"{c.field} {c.observed}" for c in self.checks if c.ok]

    def mismatched(self) -> list[str]:
        return [f"{c.field} {c.observed} (expected {c.expected})" for c in self.checks if c.ok is False]

    def to_json(self) -> dict[str, Any]:
        return {
            "personalities": list(self.personalities),
            "score": self.score,
            "mismatches": self.mismatches,
            "consistent": self.consistent,
            "cite": [PRESET_CITES.get(n, "") for n in self.personalities],
            "matched": self.matched(),
            "mismatched": self.mismatched(),
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True, slots=True)
class InjectedPacket:
    """One packet judged injected. ``claimed``: the endpoint whose address it carries; ``signals``: why (tags
    such as ``ttl``, ``continued``, ``tsg``, ``paired``); ``details``: kind-specific fields (DNS flags and
    answers, HTTP status, ICMP code)."""

    index: int
    ts: float
    ip_version: int
    src: str
    sport: int
    dst: str
    dport: int
    claimed: str
    flags: str
    ttl: int
    ip_id: int | None
    df: bool | None
    window: int | None
    seq: int | None
    ack: int | None
    payload: bytes
    signals: tuple[str, ...]
    details: tuple[tuple[str, Any], ...] = ()

    @property
    def initial_ttl(self) -> int:
        return initial_ttl(self.ttl)

    @property
    def hops(self) -> int:
        return self.initial_ttl - self.ttl

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "ts": self.ts,
            "src": self.src,
            "sport": self.sport,
            "dst": self.dst,
            "dport": self.dport,
            "claimed": self.claimed,
            "flags": self.flags,
            "ttl": self.ttl,
            "initial_ttl": self.initial_ttl,
            "hops": self.hops,
            "ip_id": self.ip_id,
            "df": self.df,
            "window": self.window,
            "seq": self.seq,
            "ack": self.ack,
            "payload_len": len(self.payload),
            "payload_hex": self.payload[:64].hex(),
            "signals": list(self.signals),
        }
        out.update(self.details)
        return out


@dataclass(frozen=True, slots=True)
class Finding:
    """Injected packets of one kind in one flow, their fingerprint, the evidence and the ranked candidates."""

    kind: str
    proto: str
    client: str
    client_port: int
    server: str
    server_port: int
    summary: str
    packets: tuple[InjectedPacket, ...]
    evidence: tuple[str, ...]
    fingerprint: tuple[tuple[str, str], ...]
    candidates: tuple[Candidate, ...]

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "flow": {
                "proto": self.proto,
                "client": self.client,
                "client_port": self.client_port,
                "server": self.server,
                "server_port": self.server_port,
            },
            "summary": self.summary,
            "evidence": list(self.evidence),
            "fingerprint": dict(self.fingerprint),
            "packets": [p.to_json() for p in self.packets],
            "candidates": [c.to_json() for c in self.candidates],
        }


@dataclass(frozen=True, slots=True)
class CaptureSummary:
    path: str
    frames: int
    packets: int
    truncated: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "frames": self.frames,
            "packets": self.packets,
            "truncated": self.truncated,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class DetectReport:
    captures: tuple[CaptureSummary, ...]
    findings: tuple[Finding, ...]
    counters: tuple[tuple[str, int], ...]

    @property
    def truncated(self) -> bool:
        return any(c.truncated for c in self.captures)

    def message(self) -> str:
        """One line: what was found, or that nothing was and what was examined."""
        seen = dict(self.counters)
        examined = (
            f"{seen.get('tcp_connections', 0)} TCP connections, {seen.get('rst_examined', 0)} RSTs, "
            f"{seen.get('dns_responses', 0)} DNS responses, {seen.get('http_responses', 0)} HTTP "
            f"responses, {seen.get('icmp_unreachables', 0)} ICMP unreachables examined"
        )
        frames = sum(c.frames for c in self.captures)
        where = f"{len(self.captures)} capture{'s' if len(self.captures) != 1 else ''}, {frames} frames"
        if not self.findings:
            return f"nothing found: no injected packets in {where} ({examined})"
        kinds = Counter(f.kind for f in self.findings)
        listed = ", ".join(f"{n} {k}" for k, n in kinds.items())
        return (
            f"{len(self.findings)} finding{'s' if len(self.findings) != 1 else ''} ({listed}) in {where} ({examined})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "message": self.message(),
            "captures": [c.to_json() for c in self.captures],
            "counters": dict(self.counters),
            "findings": [f.to_json() for f in self.findings],
        }
