"""Does a server's reaction to probes give it away? The signatures a profile's ``confirm`` rule names.

A reaction is how the server answered one probe: ``data`` (it sent bytes), ``fin`` (it closed), ``rst`` (it
reset), ``timeout`` (it kept waiting until the prober gave up), or ``refused``/``error`` (no connection).
Signatures, each from the paper that describes it (Alice et al., IMC 2020, section 5; Frolov et al., NDSS 2020
on the close behaviour of proxies):

- ``content-dependent-close``: probes of the same length got an immediate close without data (FIN or
  RST) in some cases and a timeout in others. A server that decrypts random bytes into a target and acts on it
  behaves so (Shadowsocks stream ciphers: about 3 in 16 random address types are valid, section 5.2.1;
  Table 3 "T/F" for byte-changed replays); an ordinary server treats same-length garbage alike.
- ``length-threshold-close``: short probes time out while every probe from some length on is closed at once
  without data (Shadowsocks-libev up to 3.2.5 with AEAD: timeout up to 50 bytes, RST from 51; OutlineVPN
  1.0.6: FIN at exactly 50, RST above; section 5.2.1).
- ``replay-data-only``: an identical replay (R1) got data back while byte-changed replays did not (a server
  without a replay filter, e.g. OutlineVPN 1.0.6-1.0.8, Table 3 "D" vs "T").
- ``tor-handshake``: the server answered the Tor probe with a VERSIONS cell (Winter and Lindskog, FOCI 2012:
  one probe confirms a bridge).

``decide`` applies a rule: enough reactions (``min_reactions``) and any of its signatures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

CLOSED = ("fin", "rst")


@dataclass(frozen=True, slots=True)
class Reaction:
    type: str  # R1, R2, ..., NR1, NR2, tor
    kind: str  # replay | random | tor
    length: int
    reaction: str  # data | fin | rst | timeout | refused | error | tor
    bytes_back: int = 0
    after_s: float = 0.0


def content_dependent_close(reactions: Iterable[Reaction]) -> str | None:
    by_length: dict[int, set[str]] = defaultdict(set)
    for r in reactions:
        if r.kind in ("replay", "random") and r.reaction in (*CLOSED, "timeout") and r.bytes_back == 0:
            by_length[r.length].add("closed" if r.reaction in CLOSED else "timeout")
    hits = sorted(n for n, seen in by_length.items() if seen == {"closed", "timeout"})
    return f"probes of {hits[0]} bytes were closed at once in some cases and timed out in others" if hits else None


def length_threshold_close(reactions: Iterable[Reaction]) -> str | None:
    rs = sorted((r for r in reactions if r.kind == "random" and r.bytes_back == 0), key=lambda r: r.length)
    timeouts = [r.length for r in rs if r.reaction == "timeout"]
    closes = [r.length for r in rs if r.reaction in CLOSED]
    if timeouts and closes and max(timeouts) < min(closes):
        return f"timeouts up to {max(timeouts)} bytes, immediate close from {min(closes)} bytes"
    return None


def replay_data_only(reactions: Iterable[Reaction]) -> str | None:
    rs = list(reactions)
    r1 = [r for r in rs if r.type == "R1"]
    changed = [r for r in rs if r.kind == "replay" and r.type != "R1"]
    if any(r.reaction == "data" for r in r1) and changed and not any(r.reaction == "data" for r in changed):
        return "identical replays answered with data, byte-changed replays not"
    return None


def tor_handshake(reactions: Iterable[Reaction]) -> str | None:
    return "answered a Tor VERSIONS cell" if any(r.reaction == "tor" for r in reactions) else None


SIGNATURES = {
    "content-dependent-close": content_dependent_close,
    "length-threshold-close": length_threshold_close,
    "replay-data-only": replay_data_only,
    "tor-handshake": tor_handshake,
}


def decide(reactions: list[Reaction], any_of: Iterable[str], min_reactions: int = 1) -> tuple[str, str] | None:
    """(signature, detail) of the first of ``any_of`` that matches, once there are ``min_reactions``
    conclusive reactions; None otherwise."""
    conclusive = [r for r in reactions if r.reaction not in ("refused", "error")]
    if len(conclusive) < min_reactions:
        return None
    for name in any_of:
        detail = SIGNATURES[name](conclusive)
        if detail:
            return name, detail
    return None


__all__ = ["Reaction", "SIGNATURES", "decide"]
