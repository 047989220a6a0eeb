"""nDPI's ``.out`` files (``ndpiReader -v 2``): ``parse_ndpi_out`` / ``parse_ndpi_text`` read the flow lines into
``NdpiFlow`` records (format: :mod:`chokepoint.compare.ndpi`); a broken line is ``Malformed`` with its line number."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from chokepoint.compare.normalize import FlowKey, flow_key, ip_text, l4_name
from chokepoint.dissect.errors import Malformed

_FLOW_LINE = re.compile(
    r"^\t(?P<index>\d+)\t(?P<l4>[A-Za-z0-9_-]+) (?P<a>\S+) (?P<dir><->|->) (?P<b>\S+) "
    r"(?P<groups>\[.*\])\s*$"
)
_ENDPOINT = re.compile(r"^(?:\[(?P<ip6>[^\[\]]+)\]|(?P<ip4>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?$")
_PROTO = re.compile(
    r"^(?:(?P<tunnel>[A-Za-z0-9_]+):)?(?P<master_id>[0-9]+)(?:\.(?P<app_id>[0-9]+))?/"
    r"(?P<names>.+)$"
)
_FIELD = re.compile(r"^(?P<key>[A-Za-z(][^:\[\]]*?): (?P<value>.*)$", re.DOTALL)
_UNDETECTED = "Undetected flows:"


@dataclass(frozen=True, slots=True)
class NdpiFlow:
    """One flow line of an nDPI ``.out`` file. Text fields are as nDPI printed them."""

    index: int
    l4: str  # "TCP", "UDP", "ICMP", ... (numbers become names)
    ip_a: str  # canonical address text (no brackets)
    port_a: int
    ip_b: str
    port_b: int
    bidirectional: bool  # False for "->": traffic seen one way only
    master: str  # "TLS" of "TLS.Tor"
    app: str | None  # "Tor" of "TLS.Tor"; None when nDPI printed one name
    confidence: str  # "DPI", "Match by port", "Unknown", ...
    hostname: str | None = None  # [Hostname/SNI: ...]: SNI, Host, DNS query name or SSH banner
    quic_version: str | None = None  # [QUIC ver: V-1]
    ech: str | None = None  # [ECH: version 0xfe0d]
    esni: bool = False  # [ESNI: ...] present
    alpn: tuple[str, ...] = ()  # [(Advertised) ALPNs: h2;http/1.1]
    ja3c: str | None = None
    ja4: str | None = None
    risks: tuple[str, ...] = ()  # [Risk: ** A **** B **]
    tunnel: str | None = None  # "GTP" of [proto: GTP:91/TLS]
    vlan: int | None = None
    master_id: int = 0
    app_id: int | None = None
    detected: bool = True  # False below "Undetected flows:"
    line_no: int = 0

    @property
    def label(self) -> str:
        return self.master if self.app is None else f"{self.master}.{self.app}"

    @property
    def key(self) -> FlowKey:
        return flow_key(self.l4, self.ip_a, self.port_a, self.ip_b, self.port_b)


def parse_ndpi_out(path: str | Path) -> list[NdpiFlow]:
    """Every flow line of an nDPI ``.out`` file, in file order. Raises ``Malformed`` (with file:line)."""
    return parse_ndpi_text(Path(path).read_text(encoding="utf-8", errors="replace"), source=str(path))


def parse_ndpi_text(text: str, *, source: str = "<text>") -> list[NdpiFlow]:
    """As ``parse_ndpi_out`` for text already read. Lines that are not flow lines are skipped.

    Lines end at ``\\n`` only (``\\r\\n`` is accepted): a flow line's values may hold any other character.
    """
    flows = []
    detected = True
    for line_no, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if line.strip() == _UNDETECTED:
            detected = False
        elif _looks_like_flow(line):
            try:
                flows.append(parse_flow_line(line, line_no=line_no, detected=detected))
            except Malformed as exc:
                raise Malformed(f"{source}:{line_no}: {exc}") from exc
    return flows


def _looks_like_flow(line: str) -> bool:
    return line.startswith("\t") and "[proto:" in line and line[1:2].isdigit()


def parse_flow_line(line: str, *, line_no: int = 0, detected: bool = True) -> NdpiFlow:
    """One ``\\t<n>\\t<L4> a <-> b [..][..]`` line. Raises ``Malformed`` for anything else."""
    match = _FLOW_LINE.match(line)
    if match is None:
        raise Malformed("not an nDPI flow line")
    ip_a, port_a = _endpoint(match["a"])
    ip_b, port_b = _endpoint(match["b"])
    fields = _fields(match["groups"])
    proto = _PROTO.match(fields.get("proto") or "")
    if proto is None:
        raise Malformed(f"no valid [proto: ...] group: {fields.get('proto')!r}")
    confidence = fields.get("Confidence")
    if not confidence:
        raise Malformed("no [Confidence: ...] group")
    master, app = _names(proto["names"], two_ids=proto["app_id"] is not None)
    return NdpiFlow(
        index=int(match["index"]),
        l4=l4_name(match["l4"]),
        ip_a=ip_a,
        port_a=port_a,
        ip_b=ip_b,
        port_b=port_b,
        bidirectional=match["dir"] == "<->",
        master=master,
        app=app,
        confidence=confidence,
        hostname=fields.get("Hostname/SNI") or None,
        quic_version=fields.get("QUIC ver") or None,
        ech=fields.get("ECH") or None,
        esni="ESNI" in fields,
        alpn=tuple(v for v in (fields.get("(Advertised) ALPNs") or "").split(";") if v),
        ja3c=fields.get("JA3C") or None,
        ja4=fields.get("JA4") or None,
        risks=tuple(r.strip() for r in (fields.get("Risk") or "").split("**") if r.strip()),
        tunnel=proto["tunnel"],
        vlan=_vlan(fields.get("VLAN")),
        master_id=int(proto["master_id"]),
        app_id=None if proto["app_id"] is None else int(proto["app_id"]),
        detected=detected,
        line_no=line_no,
    )


def _endpoint(text: str) -> tuple[str, int]:
    match = _ENDPOINT.match(text)
    if match is None:
        raise Malformed(f"bad endpoint {text!r}")
    port = int(match["port"] or 0)
    if port > 0xFFFF:
        raise Malformed(f"port out of range in {text!r}")
    try:
        return ip_text(match["ip6"] or match["ip4"]), port
    except ValueError as exc:
        raise Malformed(f"bad address in {text!r}") from exc


def _fields(groups: str) -> dict[str, str | None]:
    """``[k: v][flag]...`` -> {k: v, flag: None}; the first occurrence of a key wins.

    Groups are split at ``][`` so that a ``]`` inside a value (PLAIN TEXT excerpts) does not end it.
    """
    fields: dict[str, str | None] = {}
    for group in groups[1:-1].split("]["):
        match = _FIELD.match(group)
        key, value = (match["key"], match["value"].strip()) if match else (group, None)
        fields.setdefault(key, value)
    return fields


def _names(names: str, *, two_ids: bool) -> tuple[str, str | None]:
    if two_ids and "." in names:
        master, app = names.split(".", 1)
        return master, app
    return names, None


def _vlan(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise Malformed(f"bad VLAN {value!r}")
    return int(value)
