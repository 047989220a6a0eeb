"""What the finders share: the :class:`~chokepoint.probe.detect.detector.Detector` attributes they read (set in
its ``__init__``), and the header constants only an injector preset uses (RST and blockpage evidence alike).
"""

from __future__ import annotations

from collections import Counter

from chokepoint.enforce.personality import Personality, TsgSeed
from chokepoint.flow.table import FlowTable
from chokepoint.packet.record import Packet
from chokepoint.probe.detect.fields import _hex16
from chokepoint.probe.detect.report import Finding
from chokepoint.probe.fingerprints import FingerprintDB


class _Finder:
    """The base of each finder's part of the detector; declares, never sets, the detector's state."""

    presets: dict[str, Personality]
    fingerprints: FingerprintDB | None
    table: FlowTable
    findings: list[Finding]
    counters: Counter[str]
    #: header values only an injector in the presets uses
    rare_ip_ids: frozenset[int]
    rare_windows: frozenset[int]
    rare_payloads: frozenset[bytes]
    tsg_seeds: tuple[TsgSeed, ...]
    #: forged DNS answers and blockpage bodies of the presets
    dns_pools: frozenset[str]
    preset_bodies: set[bytes]

    def _constants(self, pkt: Packet) -> list[str]:
        """Header values of ``pkt`` that only an injector preset uses (its fixed IP ID or window)."""
        notes = []
        if pkt.ip_version == 4 and pkt.ip_id in self.rare_ip_ids:
            notes.append(f"IP ID {_hex16(pkt.ip_id)}, an injector constant")
        if pkt.window in self.rare_windows:
            notes.append(f"window {pkt.window}, an injector constant")
        return notes
