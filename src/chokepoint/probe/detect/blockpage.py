"""The blockpage finder: an HTTP response from the server's address that the server did not send."""

from __future__ import annotations

from collections.abc import Sequence

from chokepoint.dissect.errors import DissectError
from chokepoint.dissect.http import parse_response
from chokepoint.enforce.personality import DEFAULT, Personality
from chokepoint.flow.flow import C2S, S2C, Flow
from chokepoint.packet.record import RST
from chokepoint.probe.detect.fields import PAIR_WINDOW, TTL_JUMP, _ttl_text
from chokepoint.probe.detect.finder import _Finder
from chokepoint.probe.detect.ranking import _STRONG, _finding, _fingerprint, _ip_checks, _rank
from chokepoint.probe.detect.report import Check, Finding
from chokepoint.probe.detect.state import _Baseline, _Conn, _Http, _Obs


class _BlockpageFinder(_Finder):
    """The blockpage finder's part of :class:`~chokepoint.probe.detect.detector.Detector` (its presets,
    fingerprints and header constants)."""

    def _blockpage_finding(
        self, flow: Flow, conn: _Conn, response: _Http, base: tuple[_Baseline, _Baseline]
    ) -> Finding | None:
        head = bytes(response.head)
        try:
            parsed = parse_response(head)
        except DissectError:
            self.counters["http_unparsed"] += 1
            return None
        server = base[S2C]
        packets = list(response.packets)
        tags: list[str] = []
        evidence: list[str] = []
        first = packets[0]
        for pkt in packets:
            if server.ttl is not None and abs(pkt.ttl - server.ttl) >= TTL_JUMP:
                tags.append("ttl")
                evidence.append(
                    f"#{pkt.index}: TTL {_ttl_text(pkt.ttl)} where the server's {server.source} had "
                    f"{_ttl_text(server.ttl)}"
                )
                break
        for note in self._constants(first):
            tags.append("constant")
            evidence.append(f"#{first.index}: {note}")
        indexes = {p.index for p in packets}
        for direction, a, b in conn.conflicts:
            if direction != S2C:
                continue
            # The injector's copy: the one whose TTL is off the server's, else the earlier (it races).
            off_a, off_b = (server.ttl is not None and abs(x.ttl - server.ttl) >= TTL_JUMP for x in (a, b))
            forged = b if off_b and not off_a else a
            if forged.index in indexes:
                tags.append("race")
                evidence.append(
                    f"#{a.index} and #{b.index}: different bytes at the same sequence number (two "
                    f"responses raced; #{forged.index} is the injected one)"
                )
                break
        body = parsed.body_prefix
        match = None
        if self.fingerprints is not None:
            match = self.fingerprints.match_http(body, parsed.headers)
            if match is not None and not match.is_false_positive:
                tags.append("fingerprint")
                evidence.append(
                    f"blockpage fingerprint {match.name} ({match.scope}, "
                    f"{','.join(match.countries) or 'any country'}) in {match.location}"
                )
        if body and any(page.startswith(body) or body.startswith(page) for page in self.preset_bodies):
            tags.append("preset-page")
            evidence.append("the body is a chokepoint preset's blockpage")
        if not any(t in _STRONG for t in tags):
            return None
        closing = []
        if response.fin:
            closing.append("FIN on its last segment")
        if response.rst is not None:
            closing.append(f"RST #{response.rst.index}")
            packets.append(response.rst)
        last = packets[-1].index
        for record in conn.rsts:  # the server's side reset in the client's name (``reset_server``)
            if (
                record.side == C2S
                and record.pkt.index > first.index
                and record.peer_last_nonrst <= last
                and record.pkt.ts - first.ts <= PAIR_WINDOW
            ):
                closing.append(f"RST #{record.pkt.index} toward the server in the client's name")
                packets.append(record.pkt)
        if closing:
            evidence.append("closed by " + " and ".join(closing))
        evidence.insert(
            0,
            f"HTTP {parsed.status} {parsed.reason}".rstrip()
            + (f" -> {parsed.header('location')}" if parsed.header("location") else ""),
        )
        details = (
            ("status", parsed.status),
            ("location", parsed.header("location")),
            ("fingerprint", match.name if match is not None and not match.is_false_positive else None),
        )
        client = base[C2S]
        obs = [
            _Obs(p, "server", server.hops, flow, tags, details if p is first else ())
            if flow.direction_of(p) == S2C
            else _Obs(p, "client", client.hops, flow, ["paired"])
            for p in packets
        ]
        fingerprint = _fingerprint(obs, flow, tcp=True)
        fingerprint.insert(
            0,
            (
                "response",
                f"HTTP {parsed.status}, {len(response.packets)} segment(s), "
                f"close: {' + '.join(closing) or 'none seen'}",
            ),
        )
        candidates = _rank(
            {
                name: _blockpage_checks(p, obs, parsed.status, parsed.header("location") or "", body, response)
                for name, p in self.presets.items()
            }
        )
        summary = (
            f"HTTP {parsed.status} from the server's address, TTL {first.ttl}"
            + (f" (server's {server.source} {server.ttl})" if server.ttl is not None else "")
            + (f", {' + '.join(closing)}" if closing else "")
        )
        return _finding("blockpage", flow, summary, obs, evidence, fingerprint, candidates)


def _blockpage_checks(
    personality: Personality, obs: Sequence[_Obs], status: int, location: str, body: bytes, response: _Http
) -> list[Check]:
    style = personality.blockpage
    checks = [
        Check("status", str(style.status), str(status), status == style.status, 1 if style.status in (403, 200) else 2)
    ]
    if style.location or location:
        checks.append(Check("location", style.location or "none", location or "none", location == style.location, 3))
    if body:
        ok = style.body.startswith(body) or body.startswith(style.body)
        checks.append(Check("body", f"{len(style.body)} bytes", f"{len(body)} bytes", ok, 3))
    close = "fin" if response.fin else "rst" if response.rst is not None else None
    if close is not None:
        checks.append(Check("close", style.close, close, close == style.close, 1))
    page = [o for o in obs if not o.pkt.tcp_flags & RST] or list(obs)
    checks += _ip_checks(style.ip, page, tcp=True, window_common=DEFAULT.blockpage.ip.window.lo)
    return checks
