"""Agreement with nDPI: ``compare()`` matches our EVE flows to nDPI's per 5-tuple (either direction), scores the
``Confidence: DPI`` ones (flow, app_proto, name) and lists the other differences (QUIC version, ECH, JA3, JA4,
ALPN) in an ``AgreementReport``."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from chokepoint.appproto import AppProto
from chokepoint.compare.eve import EveFlow, eve_flow
from chokepoint.compare.ndpi.labels import expected_app_protos
from chokepoint.compare.ndpi.out import NdpiFlow
from chokepoint.compare.normalize import FlowKey, format_key, host_name, quic_version_number, ssh_banner

#: The confidence nDPI gives a label found by inspecting payload; the only one we score.
DPI = "DPI"
#: The agreement the project aims for on the protocols we dissect.
TARGET_PERCENT = 95.0

#: What nDPI's ``Hostname/SNI`` means for each of our protocols (for the reason text).
_NAME_KIND: Mapping[str, str] = MappingProxyType(
    {
        AppProto.DNS: "DNS query name",
        AppProto.HTTP: "Host",
        AppProto.HTTP_CONNECT: "CONNECT host",
        AppProto.TLS: "SNI",
        AppProto.TOR: "SNI",
        AppProto.QUIC: "SNI",
    }
)
_HANDSHAKE_PROTOS = frozenset({AppProto.TLS, AppProto.TOR, AppProto.QUIC})
_TLS_PROTOS = frozenset({AppProto.TLS, AppProto.TOR})
#: Checks that decide whether a flow agrees. Others (QUIC version, ECH, JA3, JA4, ALPN) are reported only.
SCORED_CHECKS = ("flow", "app_proto", "name")


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One point on which we and nDPI differ, with a one-line reason."""

    capture: str
    flow: str  # "TCP 10.0.0.1:5 <-> 10.0.0.2:443"
    ndpi_label: str  # "TLS.Tor"
    check: str  # "flow" | "app_proto" | "name" | "quic_version" | "ech" | "ja3" | "ja4" | "alpn"
    ours: str | None
    ndpi: str | None
    reason: str
    scored: bool  # counts against the agreement score (SCORED_CHECKS)

    def __str__(self) -> str:
        where = f"{self.capture}: " if self.capture else ""
        return f"{where}{self.flow} [{self.ndpi_label}] {self.reason}"


@dataclass(frozen=True, slots=True)
class FlowOutcome:
    """How one nDPI flow fared (a row of the per-capture table)."""

    flow: str
    ndpi_label: str
    confidence: str
    expected: str | None  # "tls", "ike/ipsec"; None when excluded
    ours: str | None  # our app_proto; None when we have no such flow
    ndpi_name: str | None
    our_names: tuple[str, ...]
    status: str  # "agree" | "disagree" | "not DPI" | "not dissected"


@dataclass(frozen=True, slots=True)
class AgreementReport:
    """Agreement with nDPI over one capture (or several: ``combine``)."""

    capture: str
    scored: int  # DPI flows whose label we dissect
    agreed: int
    per_protocol: Mapping[str, tuple[int, int]]  # expected app_proto -> (agreed, scored)
    checks: Mapping[str, tuple[int, int]]  # check -> (agreed, compared)
    disagreements: tuple[Disagreement, ...]
    excluded_labels: Mapping[str, int]  # DPI labels we do not dissect -> flows
    excluded_confidence: Mapping[str, int]  # confidences other than DPI -> flows
    unmatched_ours: tuple[str, ...]  # our flows nDPI does not list ("key app_proto")
    flows: tuple[FlowOutcome, ...] = ()

    @property
    def percent(self) -> float | None:
        """Agreement in percent on the scored flows; ``None`` when nothing was scored."""
        return None if self.scored == 0 else 100.0 * self.agreed / self.scored

    @property
    def scored_disagreements(self) -> tuple[Disagreement, ...]:
        return tuple(d for d in self.disagreements if d.scored)

    @classmethod
    def combine(cls, reports: Iterable[AgreementReport], capture: str = "total") -> AgreementReport:
        reports = list(reports)
        per_protocol: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        checks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        labels: Counter[str] = Counter()
        confidence: Counter[str] = Counter()
        for report in reports:
            for table, source in ((per_protocol, report.per_protocol), (checks, report.checks)):
                for name, (agreed, total) in source.items():
                    table[name][0] += agreed
                    table[name][1] += total
            labels.update(report.excluded_labels)
            confidence.update(report.excluded_confidence)
        return cls(
            capture=capture,
            scored=sum(r.scored for r in reports),
            agreed=sum(r.agreed for r in reports),
            per_protocol=_frozen_pairs(per_protocol),
            checks=_frozen_pairs(checks),
            disagreements=tuple(d for r in reports for d in r.disagreements),
            excluded_labels=MappingProxyType(dict(labels)),
            excluded_confidence=MappingProxyType(dict(confidence)),
            unmatched_ours=tuple(f"{r.capture}: {u}" if r.capture else u for r in reports for u in r.unmatched_ours),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "capture": self.capture,
            "scored": self.scored,
            "agreed": self.agreed,
            "percent": None if self.percent is None else round(self.percent, 2),
            "target_percent": TARGET_PERCENT,
            "per_protocol": {k: {"agreed": a, "scored": s} for k, (a, s) in sorted(self.per_protocol.items())},
            "checks": {k: {"agreed": a, "compared": c} for k, (a, c) in sorted(self.checks.items())},
            "disagreements": [
                {
                    "capture": d.capture,
                    "flow": d.flow,
                    "ndpi_label": d.ndpi_label,
                    "check": d.check,
                    "ours": d.ours,
                    "ndpi": d.ndpi,
                    "reason": d.reason,
                    "scored": d.scored,
                }
                for d in self.disagreements
            ],
            "excluded_labels": dict(sorted(self.excluded_labels.items())),
            "excluded_confidence": dict(sorted(self.excluded_confidence.items())),
            "unmatched_ours": list(self.unmatched_ours),
            "flows": [
                {
                    "flow": f.flow,
                    "ndpi_label": f.ndpi_label,
                    "confidence": f.confidence,
                    "expected": f.expected,
                    "ours": f.ours,
                    "ndpi_name": f.ndpi_name,
                    "our_names": list(f.our_names),
                    "status": f.status,
                }
                for f in self.flows
            ],
        }


def compare(
    eve_records: Iterable[Mapping[str, Any] | EveFlow], ndpi_flows: Iterable[NdpiFlow], *, capture: str = ""
) -> AgreementReport:
    """Match our flows to nDPI's per 5-tuple (either direction) and score the DPI-confidence ones.

    A scored flow agrees when we have it, our ``app_proto`` is one nDPI's label maps to, and, where
    nDPI or we report a name, the names agree (SNI / Host / DNS query name, case-insensitive, any of
    our DNS queries may match; for SSH nDPI's banner is the first one seen, so either of ours may match).
    Where several of our flows share a 5-tuple, the earliest (EVE ``timestamp``) is matched first.
    QUIC version, ECH, JA3, JA4 and ALPN are compared where nDPI reports them, listed, but not scored.
    Raises ``Malformed`` for an unusable EVE flow record.
    """
    by_key: dict[FlowKey, list[EveFlow]] = defaultdict(list)
    for record in eve_records:
        if isinstance(record, EveFlow):
            by_key[record.key].append(record)
        elif record.get("event_type") == "flow":
            flow = eve_flow(record)
            by_key[flow.key].append(flow)
    # Where we split one 5-tuple into several flows (idle timeout) nDPI has one: match the earliest first.
    ours = {key: deque(sorted(flows, key=_start_order)) for key, flows in by_key.items()}
    tally = _Tally(capture)
    for nflow in ndpi_flows:
        candidates = ours.get(nflow.key)
        mine = candidates.popleft() if candidates else None
        tally.add(nflow, mine)
    unmatched = tuple(f"{format_key(f.key)} {f.app_proto}" for queue in ours.values() for f in queue)
    return tally.report(unmatched)


class _Tally:
    """Accumulates one capture's outcomes."""

    def __init__(self, capture: str) -> None:
        self.capture = capture
        self.scored = 0
        self.agreed = 0
        self.per_protocol: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.checks: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.disagreements: list[Disagreement] = []
        self.excluded_labels: Counter[str] = Counter()
        self.excluded_confidence: Counter[str] = Counter()
        self.flows: list[FlowOutcome] = []

    def add(self, nflow: NdpiFlow, mine: EveFlow | None) -> None:
        expected = expected_app_protos(nflow)
        bucket = "/".join(sorted(expected)) or None
        if nflow.confidence != DPI:
            self.excluded_confidence[nflow.confidence] += 1
            status = "not DPI"
        elif not expected:
            self.excluded_labels[nflow.label] += 1
            status = "not dissected"
        else:
            issues = _check(nflow, mine, expected, self.capture, self.checks)
            self.disagreements.extend(issues)
            agreed = not any(d.scored for d in issues)
            self.scored += 1
            self.agreed += agreed
            self.per_protocol[bucket][0] += agreed
            self.per_protocol[bucket][1] += 1
            status = "agree" if agreed else "disagree"
        self.flows.append(
            FlowOutcome(
                flow=format_key(nflow.key),
                ndpi_label=nflow.label,
                confidence=nflow.confidence,
                expected=bucket if status in ("agree", "disagree") else None,
                ours=None if mine is None else mine.app_proto,
                ndpi_name=nflow.hostname,
                our_names=() if mine is None else mine.names,
                status=status,
            )
        )

    def report(self, unmatched: tuple[str, ...]) -> AgreementReport:
        return AgreementReport(
            capture=self.capture,
            scored=self.scored,
            agreed=self.agreed,
            per_protocol=_frozen_pairs(self.per_protocol),
            checks=_frozen_pairs(self.checks),
            disagreements=tuple(self.disagreements),
            excluded_labels=MappingProxyType(dict(self.excluded_labels)),
            excluded_confidence=MappingProxyType(dict(self.excluded_confidence)),
            unmatched_ours=unmatched,
            flows=tuple(self.flows),
        )


def _frozen_pairs(table: Mapping[str, list[int]]) -> Mapping[str, tuple[int, int]]:
    return MappingProxyType({name: (pair[0], pair[1]) for name, pair in table.items()})


def _check(
    nflow: NdpiFlow, mine: EveFlow | None, expected: frozenset[AppProto], capture: str, checks: dict[str, list[int]]
) -> list[Disagreement]:
    """Every disagreement on one scored flow; counts each comparison made in ``checks``."""

    def issue(check: str, ours: str | None, ndpi: str | None, reason: str) -> Disagreement:
        return Disagreement(
            capture, format_key(nflow.key), nflow.label, check, ours, ndpi, reason, check in SCORED_CHECKS
        )

    def count(check: str, ok: bool) -> bool:
        checks[check][0] += ok
        checks[check][1] += 1
        return ok

    said = "/".join(sorted(expected))
    if mine is None:
        count("flow", False)
        return [issue("flow", None, said, "no flow in our output")]
    count("flow", True)
    if not count("app_proto", mine.app_proto in expected):
        return [
            issue(
                "app_proto",
                mine.app_proto,
                said,
                f"we said {mine.app_proto}, nDPI said {said}"
                + ("" if said.lower() == nflow.label.lower() else f" ({nflow.label})"),
            )
        ]
    issues: list[Disagreement] = []
    name_issue = _name_issue(nflow, mine)
    if name_issue is not None:
        ok, ours_text, ndpi_text, reason = name_issue
        if not count("name", ok):
            issues.append(issue("name", ours_text, ndpi_text, reason))
    for check, ok, ours_text, ndpi_text, reason in _field_checks(nflow, mine, expected):
        if not count(check, ok):
            issues.append(issue(check, ours_text, ndpi_text, reason))
    return issues


def _name_issue(nflow: NdpiFlow, mine: EveFlow) -> tuple[bool, str | None, str | None, str] | None:
    """(agrees, ours, nDPI's, reason) for the flow's name; ``None`` when there is nothing to compare."""
    if mine.app_proto == AppProto.SSH:
        # nDPI keeps the first banner it sees, from either side (ssh.c: stage 0 ignores the direction).
        ndpi_banner = ssh_banner(nflow.hostname)
        ours = [b for b in (mine.ssh_client, mine.ssh_server) if b is not None]
        if ndpi_banner is None and not ours:
            return None
        ours_text = ", ".join(ours) or None
        reason = f"SSH banner differs: ours {_quoted(ours_text)} vs nDPI {_quoted(ndpi_banner)}"
        return ndpi_banner in ours, ours_text, ndpi_banner, reason
    kind = _NAME_KIND.get(mine.app_proto or "")
    if kind is None:
        return None
    ndpi_name = host_name(nflow.hostname)
    if ndpi_name is None and not mine.names:
        return None
    ours_text = ", ".join(mine.names) or None
    ok = ndpi_name is not None and ndpi_name in mine.names
    reason = f"{kind} differs: ours {_quoted(ours_text)} vs nDPI {_quoted(ndpi_name)}"
    return ok, ours_text, ndpi_name, reason


def _field_checks(nflow: NdpiFlow, mine: EveFlow, expected: frozenset[AppProto]):
    """Unscored comparisons, made only where nDPI reports the field (ECH: where either side does)."""
    if AppProto.QUIC in expected and nflow.quic_version:
        ndpi_version = quic_version_number(nflow.quic_version)
        yield (
            "quic_version",
            ndpi_version is not None and ndpi_version == mine.quic_version,
            mine.quic_version_text,
            nflow.quic_version,
            f"QUIC version differs: ours {_quoted(mine.quic_version_text)} vs nDPI {nflow.quic_version}",
        )
    if expected & _HANDSHAKE_PROTOS and (nflow.ech is not None or mine.ech is not None):
        ndpi_ech, our_ech = nflow.ech is not None, bool(mine.ech)
        yield (
            "ech",
            ndpi_ech == our_ech,
            _yes_no(mine.ech),
            nflow.ech or "no",
            f"ECH differs: ours {_yes_no(mine.ech)} vs nDPI {nflow.ech or 'no'}",
        )
    if expected & _TLS_PROTOS and nflow.ja3c:
        yield (
            "ja3",
            nflow.ja3c.lower() == mine.ja3,
            mine.ja3,
            nflow.ja3c,
            f"JA3 differs: ours {_quoted(mine.ja3)} vs nDPI {nflow.ja3c}",
        )
    if expected & _HANDSHAKE_PROTOS and nflow.ja4:
        yield (
            "ja4",
            nflow.ja4.lower() == mine.ja4,
            mine.ja4,
            nflow.ja4,
            f"JA4 differs: ours {_quoted(mine.ja4)} vs nDPI {nflow.ja4}",
        )
    if expected & _HANDSHAKE_PROTOS and nflow.alpn:
        ours_text = None if mine.alpn is None else ";".join(mine.alpn)
        yield (
            "alpn",
            mine.alpn == nflow.alpn,
            ours_text,
            ";".join(nflow.alpn),
            f"ALPN differs: ours {_quoted(ours_text)} vs nDPI {';'.join(nflow.alpn)}",
        )


def _start_order(flow: EveFlow) -> tuple[bool, float]:
    """Sort key: flows with a start time by that time, then those without (stable: output order)."""
    return (flow.start is None, 0.0 if flow.start is None else flow.start.timestamp())


def _quoted(value: str | None) -> str:
    return "none" if value is None else repr(value)


def _yes_no(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")
