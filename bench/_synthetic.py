"""The benchmarks' synthetic capture: ``chokepoint.packet.samples.write_mixed_capture`` (kept in the package so
that the tests can build the same mix)."""

from __future__ import annotations

from pathlib import Path

from chokepoint.packet.samples import write_mixed_capture


def write_synthetic(path: Path, flows: int, seed: int = 1) -> int:
    """Write ``flows`` flows of the mix to ``path``; returns the number of packets."""
    return write_mixed_capture(path, flows, seed)
