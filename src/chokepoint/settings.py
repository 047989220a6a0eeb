"""Engine knobs a profile sets (its ``engine:`` section). One typed declaration: the profile schema,
the loader and the engine all read this dataclass."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class EngineSettings:
    #: Reassemble each TCP direction in order before dissecting. Some censors do not (Henan firewall,
    #: Iran's protocol filter), so a profile can switch it off: dissectors then see one segment at a time.
    reassembly: bool = True
    #: Bytes of each direction kept by the reassembler (the first N bytes of the stream).
    reassembly_max_bytes: int = 16384
    #: Out-of-order segments buffered per direction while waiting for a gap to fill.
    reassembly_max_segments: int = 64
    #: Inspection budget: a flow is inspected for its first K packets per direction ...
    inspect_max_packets: int = 32
    #: ... or its first B payload bytes per direction, whichever ends first; then it takes the fast path.
    inspect_max_bytes: int = 32768
    #: Reassemble IPv4/IPv6 fragments (off by default: many censors do not).
    ip_fragment_reassembly: bool = False
    #: At most this many fragments per datagram (the leaked TSG gateway uses 101).
    ip_fragment_limit: int = 64
    #: Seconds of silence after which a flow expires, by transport.
    tcp_timeout: float = 300.0
    tcp_closed_timeout: float = 10.0
    udp_timeout: float = 120.0  # Linux conntrack's timeout for a UDP flow seen both ways
    other_timeout: float = 60.0
    #: LRU bound on the flow table (evictions are counted).
    max_flows: int = 1_000_000
    #: Memory budget of the flow table in MiB, charged by an estimate per flow (``chokepoint.flow.memcap``):
    #: what a flow without payload costs, plus what dissection and reassembly state cost once data arrives.
    #: A flow that would pass it, or ``max_flows``, puts the table in emergency mode (Suricata's flow memcap
    #: and emergency mode; Linux conntrack's early drop): unassured flows (TCP without a completed handshake,
    #: UDP never answered) are evicted first, least recently active first, and expire after
    #: ``emergency_new_timeout``.
    flow_memcap_mb: int = 256
    #: Idle timeout of an unassured flow (see ``flow_memcap_mb``) while the table is in emergency mode.
    emergency_new_timeout: float = 10.0

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def field_types(cls) -> dict[str, type]:
        return {f.name: type(f.default) for f in fields(cls)}
