"""Our side of a comparison: the facts of one EVE ``flow`` record, in normal form.

Reads the records ``chokepoint analyze --format eve`` writes (Suricata EVE field names, see
``chokepoint.output.eve``): ``src_ip src_port dest_ip dest_port proto app_proto`` and the protocol
objects ``dns http tls quic ssh``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from chokepoint.compare.normalize import FlowKey, flow_key, host_name, quic_version_number, ssh_banner
from chokepoint.dissect.errors import Malformed


@dataclass(frozen=True, slots=True)
class EveFlow:
    """What we said about one flow. Names are normalised (``normalize.host_name``)."""

    key: FlowKey
    app_proto: str | None
    names: tuple[str, ...]  # tls.sni, quic.sni, http.hostname, CONNECT authority, dns names
    ssh_client: str | None  # "SSH-2.0-OpenSSH_8.2p1" (comments dropped)
    ssh_server: str | None
    quic_version: int | None
    quic_version_text: str | None
    ech: bool | None  # None: our record says nothing about ECH
    ja3: str | None  # lower-case MD5 hex
    ja4: str | None
    alpn: tuple[str, ...] | None  # the client's advertised ALPN list, in order
    start: datetime | None = None  # EVE "timestamp": when the flow began


def read_eve(path: str | Path) -> list[dict[str, Any]]:
    """All JSON objects of an EVE file (one per line; blank lines skipped). Raises ``Malformed``."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise Malformed(f"{path}:{line_no}: not JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise Malformed(f"{path}:{line_no}: a JSON {type(record).__name__}, not an object")
            records.append(record)
    return records


def flow_records(records: Iterable[Mapping[str, Any]]) -> list[EveFlow]:
    """The ``event_type: "flow"`` records as ``EveFlow``; other event types are skipped."""
    return [eve_flow(r) for r in records if r.get("event_type") == "flow"]


def eve_flow(record: Mapping[str, Any]) -> EveFlow:
    """One EVE flow record in normal form. Raises ``Malformed`` when its 5-tuple is unusable."""
    try:
        key = flow_key(
            record["proto"], record["src_ip"], record.get("src_port"), record["dest_ip"], record.get("dest_port")
        )
    except KeyError as exc:
        raise Malformed(f"EVE flow record without {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise Malformed(f"EVE flow record with a bad 5-tuple: {exc}") from exc
    tls = _object(record, "tls")
    quic = _object(record, "quic")
    ssh = _object(record, "ssh")
    version_text = quic.get("version")
    app_proto = record.get("app_proto")
    return EveFlow(
        key=key,
        app_proto=app_proto if isinstance(app_proto, str) else None,
        names=_names(record),
        ssh_client=_ssh_banner(_object(ssh, "client")),
        ssh_server=_ssh_banner(_object(ssh, "server")),
        quic_version=quic_version_number(version_text),
        quic_version_text=None if version_text is None else str(version_text),
        ech=bool(tls["ech"]) if "ech" in tls else (bool(quic["ech"]) if "ech" in quic else None),
        ja3=_ja3(tls.get("ja3")),
        ja4=_text(tls.get("ja4")) or _text(quic.get("ja4")),
        alpn=_alpn(tls, quic),
        start=_timestamp(record.get("timestamp")),
    )


def _object(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = record.get(name)
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return (value.strip().lower() or None) if isinstance(value, str) else None


def _names(record: Mapping[str, Any]) -> tuple[str, ...]:
    raw: list[object] = [_object(record, "tls").get("sni"), _object(record, "quic").get("sni")]
    http = _object(record, "http")
    raw.append(http.get("hostname"))
    url = http.get("url")
    if isinstance(url, str) and str(http.get("http_method", "")).upper() == "CONNECT":
        raw.append(url)  # authority-form target (RFC 9110 9.3.6)
    dns = _object(record, "dns")
    raw.append(dns.get("rrname"))
    for key in ("queries", "responses"):  # a capture can hold a response whose query it missed
        items = dns.get(key)
        if isinstance(items, list):
            raw.extend(q.get("rrname") if isinstance(q, Mapping) else q for q in items)
    names: list[str] = []
    for value in raw:
        name = host_name(value)
        if name is not None and name not in names:
            names.append(name)
    return tuple(names)


def _ssh_banner(side: Mapping[str, Any]) -> str | None:
    proto, software = side.get("proto_version"), side.get("software_version")
    if not isinstance(proto, str) or not isinstance(software, str):
        return None
    return ssh_banner(f"SSH-{proto}-{software}")


def _ja3(value: object) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("hash")
    return _text(value)


def _alpn(tls: Mapping[str, Any], quic: Mapping[str, Any]) -> tuple[str, ...] | None:
    for obj, name in ((tls, "client_alpns"), (tls, "alpn"), (quic, "alpn")):
        value = obj.get(name)
        if isinstance(value, list):
            return tuple(str(v) for v in value)
        if isinstance(value, str):
            return tuple(v for v in value.split(";") if v)
    return None


def _timestamp(value: object) -> datetime | None:
    """Suricata's ``2009-11-24T21:27:09.534255+0000``; ``None`` for anything else."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return None
