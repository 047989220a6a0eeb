"""The flow table's memory budget and emergency mode, shared by the reference table (:mod:`chokepoint.flow.table`)
and the fast path's core (:mod:`chokepoint.fast.core`), which apply the same rules to the same numbers.

Each live flow is charged :data:`FLOW_BYTES`, and :data:`DATA_BYTES` more once data has arrived (its dissection
facts and reassembly buffers exist then). When a new flow would take the table past ``max_flows`` or past
``flow_memcap_mb``, the table enters emergency mode (Suricata's flow memcap and emergency mode; Linux
conntrack's early drop of unassured entries) and evicts, one at a time until the new flow fits, the least
recently active *unassured* flow — a TCP flow that never completed its handshake (a SYN flood's, a scan's) or
a UDP flow never answered (a UDP flood's) — and only when there is none the least recently active flow of any
kind. While in emergency mode, unassured flows expire after ``emergency_new_timeout`` instead of their
transport's timeout; the mode ends at an expiry sweep that finds
the table below :data:`RECOVERY` of both bounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chokepoint.settings import EngineSettings

#: Estimated bytes of a live flow that has seen no payload: its Python ``Flow`` with its per-direction lists,
#: key and address texts, its first-packet policy state, and its record in the fast core (measured: an IPv4
#: SYN-only flow of the compiled core with the ``gfw`` profile, about 2.5 kB).
FLOW_BYTES = 2560
#: Estimated bytes added once a flow carries data: dissection facts, first payloads, reassembly buffers
#: (these grow up to ``reassembly_max_bytes`` per direction; most flows of a capture stay far below).
DATA_BYTES = 8192
#: Emergency mode ends when the table is below this fraction of ``max_flows`` and of the memory budget.
RECOVERY = 0.8

#: Flow-table counters of the budget and emergency mode (all start with ``flows_`` like the table's others).
EVICTED = "flows_evicted"
EVICTED_UNASSURED = "flows_evicted_unassured"
EMERGENCIES = "flows_emergency_entered"
EXPIRED_EMERGENCY = "flows_expired_emergency"


def budget_bytes(settings: EngineSettings) -> int:
    """The memory budget of ``settings`` (an ``EngineSettings``) in bytes."""
    return settings.flow_memcap_mb * 1024 * 1024


def over(nflows: int, used: int, max_flows: int, budget: int) -> bool:
    """Whether one more flow would pass either bound."""
    return nflows >= max_flows or used + FLOW_BYTES > budget


def recovered(nflows: int, used: int, max_flows: int, budget: int) -> bool:
    """Whether an emergency can end."""
    return nflows < RECOVERY * max_flows and used < RECOVERY * budget
