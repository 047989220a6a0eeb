"""nDPI's regression results (``ndpiReader -v 2`` ``.out`` files) and our agreement with them.

An ``.out`` file opens with run statistics and per-protocol totals, then lists one line per flow
(research/dpi-corpora-and-performance.md section 1.3)::

    \\t<n>\\t<L4> <ip:port> <-> <ip:port> [VLAN: v][proto: [<tunnel>:]<id>[.<id>]/<Master>[.<App>]]...
        ...[Confidence: DPI]...[Hostname/SNI: ...][(Advertised) ALPNs: ...][QUIC ver: V-1][ECH: ...]

``->`` marks a flow seen in one direction only; IPv6 addresses are bracketed; flows nDPI could not
classify follow a line ``Undetected flows:``. These labels are nDPI's own output at one commit, not
independent truth, so only ``Confidence: DPI`` flows are scored, per 5-tuple regardless of direction.

Modules, in import order: ``out`` parses the ``.out`` files into ``NdpiFlow`` records, ``labels`` maps nDPI's
labels to our ``app_proto`` values, ``agreement`` matches our flows to nDPI's and scores them (``compare``).
"""

from __future__ import annotations

from chokepoint.compare.ndpi.agreement import (
    DPI,
    SCORED_CHECKS,
    TARGET_PERCENT,
    AgreementReport,
    Disagreement,
    FlowOutcome,
    compare,
)
from chokepoint.compare.ndpi.labels import NDPI_MASTER_TO_APP_PROTO, expected_app_protos, ndpi_app_protos
from chokepoint.compare.ndpi.out import NdpiFlow, parse_flow_line, parse_ndpi_out, parse_ndpi_text

__all__ = [
    "DPI",
    "NDPI_MASTER_TO_APP_PROTO",
    "SCORED_CHECKS",
    "TARGET_PERCENT",
    "AgreementReport",
    "Disagreement",
    "FlowOutcome",
    "NdpiFlow",
    "compare",
    "expected_app_protos",
    "ndpi_app_protos",
    "parse_flow_line",
    "parse_ndpi_out",
    "parse_ndpi_text",
]
