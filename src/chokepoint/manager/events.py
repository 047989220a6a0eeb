"""The event store: EVE-shaped records from the nodes, bounded in size and age, queryable, streamed live.

A node's agent sends the records its censor daemons write (``events.jsonl``: ``event_type`` ``chokepoint`` per
enforced verdict and ``flow`` per ended flow, :mod:`chokepoint.output.eve`). Each is stored whole, with the
fields the query API filters on pulled out into indexed columns: time, deployment, node, event type, action
(``chokepoint.action``, or the flow's ``chokepoint.verdict``), rule, ``app_proto``, server name (TLS/QUIC SNI,
HTTP Host or DNS name, from the protocol objects or the verdict's evidence) and addresses.

Nothing is lost silently. Every record that does not end up stored is counted by reason in the manager's
persistent counters (``events_rejected_<reason>``: malformed, oversized, no timestamp, outside the lab's
address ranges), and so is every record removed later (``events_evicted_size``: the store holds at most
``max_events``, oldest removed first; ``events_expired_retention``: older than ``retention_s``). The agent
reports what it dropped itself (a full buffer while the manager was away) in its heartbeats; the live stream
counts what slow subscribers missed (``sse_dropped``).

Only the lab's own hosts: by default a record whose addresses are outside the lab's ranges (RFC 2544
198.18.0.0/15 and RFC 3849 2001:db8::/32, as ``chokepoint.lab.topology.LAB_RANGES``) is refused, so the store
can never hold traffic of people. Records carry addresses and ports of lab hosts, never identities.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, select

from chokepoint.manager.schema import events

#: One record's JSON at most this long; longer ones are refused (counted).
MAX_RECORD_BYTES = 64 * 1024
#: Evidence fields that name a server.
_NAME_FIELDS = ("tls.sni", "quic.sni", "http.host", "dns.qname")
LAB_NETWORKS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))
FILTERS = ("node_id", "rule", "action", "app_proto", "server_name", "event_type")


class Rejected(ValueError):
    """One record refused; ``reason`` names the counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_timestamp(value: Any) -> float:
    """Epoch seconds from an EVE timestamp (``2026-11-27T02:30:00.123456+0000``) or a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise Rejected("no_timestamp", "no timestamp")
    text = value.strip()
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = text[:-2] + ":" + text[-2:]  # +0000 -> +00:00 for fromisoformat
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("no_timestamp", f"bad timestamp {value!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def server_name(record: Mapping[str, Any]) -> str | None:
    """The server name a record is about: TLS/QUIC SNI, HTTP Host, DNS name, else a name in the evidence."""
    for obj, key in (("tls", "sni"), ("quic", "sni"), ("http", "hostname"), ("dns", "rrname")):
        value = (record.get(obj) or {}).get(key) if isinstance(record.get(obj), dict) else None
        if value:
            return str(value)[:255]
    cp = record.get("chokepoint")
    if isinstance(cp, dict):
        for item in cp.get("evidence") or ():
            if isinstance(item, dict) and item.get("field") in _NAME_FIELDS and item.get("value"):
                return str(item["value"])[:255]
    return None


def _lab_address(value: Any) -> bool:
    try:
        addr = ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return any(addr in net for net in LAB_NETWORKS)


def row_of(record: Any, *, lab_only: bool = True) -> dict[str, Any]:
    """The indexed columns of one record (``Rejected`` with the reason when it cannot be stored)."""
    if not isinstance(record, dict):
        raise Rejected("malformed", "a record must be a JSON object")
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_RECORD_BYTES:
        raise Rejected("oversized", f"record over {MAX_RECORD_BYTES} bytes")
    event_type = record.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise Rejected("malformed", "no event_type")
    ts = parse_timestamp(record.get("timestamp"))
    if lab_only:
        for key in ("src_ip", "dest_ip"):
            if record.get(key) is not None and not _lab_address(record[key]):
                raise Rejected("outside_lab", f"{key} {record[key]!r} is not a lab address")
    cp = record.get("chokepoint") if isinstance(record.get("chokepoint"), dict) else {}
    action = cp.get("action") or cp.get("verdict")
    port = record.get("dest_port")
    return {
        "ts": ts,
        "event_type": event_type[:32],
        "action": str(action)[:32] if action else None,
        "rule": str(cp["rule"])[:128] if cp.get("rule") else None,
        "app_proto": str(record["app_proto"])[:32] if record.get("app_proto") else None,
        "server_name": server_name(record),
        "src_ip": str(record["src_ip"])[:64] if record.get("src_ip") else None,
        "dest_ip": str(record["dest_ip"])[:64] if record.get("dest_ip") else None,
        "dest_port": port if isinstance(port, int) and not isinstance(port, bool) else None,
        "proto": str(record["proto"])[:16] if record.get("proto") else None,
        "record": text,
    }


@dataclass(slots=True)
class Ingested:
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


class EventStore:
    def __init__(
        self,
        engine: Engine,
        bump: Callable[[str, int], None],
        *,
        max_events: int = 2_000_000,
        retention_s: float = 7 * 86400.0,
        lab_only: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.bump = bump
        self.max_events = max_events
        self.retention_s = retention_s
        self.lab_only = lab_only
        self.clock = clock
        self._lock = threading.Lock()
        self._since_prune = 0

    def ingest(self, dep_id: int, node_id: int, records: Iterable[Any]) -> Ingested:
        """Store what can be stored; count the rest by reason (``events_rejected_<reason>``)."""
        result = Ingested()
        rows = []
        for record in records:
            try:
                row = row_of(record, lab_only=self.lab_only)
            except Rejected as exc:
                result.rejected[exc.reason] += 1
                result.first_error = result.first_error or str(exc)
                continue
            row["deployment_id"] = dep_id
            row["node_id"] = node_id
            rows.append(row)
        if rows:
            with self._lock, self.engine.begin() as conn:
                conn.execute(insert(events), rows)
            result.stored = len(rows)
            result.rows = rows
        for reason, n in result.rejected.items():
            self.bump(f"events_rejected_{reason}", n)
        self.bump("events_stored", result.stored)
        self._since_prune += result.stored
        if self._since_prune >= max(1000, self.max_events // 100):
            self.enforce_bound()
        return result

    def enforce_bound(self) -> int:
        """Remove the oldest records beyond ``max_events`` (counted as ``events_evicted_size``)."""
        self._since_prune = 0
        with self._lock, self.engine.begin() as conn:
            newest = conn.execute(select(func.max(events.c.id))).scalar()
            if newest is None:
                return 0
            cut = newest - self.max_events  # ids are increasing: at most max_events remain above the cut
            removed = conn.execute(delete(events).where(events.c.id <= cut)).rowcount if cut > 0 else 0
        self.bump("events_evicted_size", removed)
        return removed

    def expire(self) -> int:
        """Remove records older than the retention (counted as ``events_expired_retention``)."""
        horizon = self.clock() - self.retention_s
        with self._lock, self.engine.begin() as conn:
            removed = conn.execute(delete(events).where(events.c.ts < horizon)).rowcount
        self.bump("events_expired_retention", removed)
        return removed

    def count(self, dep_id: int | None = None) -> int:
        query = select(func.count()).select_from(events)
        if dep_id is not None:
            query = query.where(events.c.deployment_id == dep_id)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def query(
        self,
        dep_ids: Sequence[int],
        *,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """Newest first, each record as the JSON text stored. ``filters``: exact values for the columns in
        ``FILTERS``."""
        where = (
            [events.c.deployment_id.in_(list(dep_ids))] if len(dep_ids) != 1 else [events.c.deployment_id == dep_ids[0]]
        )
        if since is not None:
            where.append(events.c.ts >= since)
        if until is not None:
            where.append(events.c.ts < until)
        if before_id is not None:
            where.append(events.c.id < before_id)
        for key, value in filters.items():
            if key not in FILTERS:
                raise ValueError(f"unknown filter {key!r}")
            if value is not None:
                where.append(events.c[key] == value)
        query = (
            select(events.c.id, events.c.node_id, events.c.deployment_id, events.c.record)
            .where(and_(*where))
            .order_by(events.c.ts.desc(), events.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [{"id": r.id, "deployment_id": r.deployment_id, "node_id": r.node_id, "record": r.record} for r in rows]

    def top(self, dep_id: int, column: str, *, since: float, limit: int = 10, **filters: Any) -> list[dict[str, Any]]:
        """The most frequent values of ``column`` since ``since`` (e.g. rules, app_protos, blocked names)."""
        if column not in ("rule", "action", "app_proto", "server_name"):
            raise ValueError(f"cannot rank by {column!r}")
        col = events.c[column]
        where = [events.c.deployment_id == dep_id, events.c.ts >= since, col.is_not(None)]
        for key, value in filters.items():
            if value is not None:
                where.append(events.c[key] == value)
        query = (
            select(col, func.count().label("n"))
            .where(and_(*where))
            .group_by(col)
            .order_by(func.count().desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [{"value": v, "count": n} for v, n in conn.execute(query).all()]


class Hub:
    """Live subscribers (SSE): each gets a bounded queue of the records of the deployments it may read; a
    subscriber too slow to keep up loses records, counted per subscriber and in ``dropped`` (which the app
    adds to the persistent ``sse_dropped`` counter)."""

    QUEUE = 1000

    def __init__(self) -> None:
        self.dropped = 0
        self.flushed = 0  # the part of ``dropped`` already added to the persistent counter
        self._subs: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue, frozenset[int] | None, dict]] = {}
        self._next = 0
        self._lock = threading.Lock()

    def unflushed(self) -> int:
        return self.dropped - self.flushed

    def flush(self, bump: Callable[[str, int], None]) -> None:
        delta = self.dropped - self.flushed
        self.flushed += delta
        bump("sse_dropped", delta)

    def subscribe(
        self, loop: asyncio.AbstractEventLoop, deployments: frozenset[int] | None
    ) -> tuple[int, asyncio.Queue, dict]:
        with self._lock:
            self._next += 1
            queue: asyncio.Queue = asyncio.Queue(self.QUEUE)
            state = {"dropped": 0}
            self._subs[self._next] = (loop, queue, deployments, state)
            return self._next, queue, state

    def unsubscribe(self, sub_id: int) -> None:
        with self._lock:
            self._subs.pop(sub_id, None)

    def __len__(self) -> int:
        return len(self._subs)

    def publish(self, dep_id: int, node_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Hand stored rows to the subscribers (thread-safe: called from the request threads)."""
        with self._lock:
            subs = list(self._subs.values())
        for loop, queue, allowed, state in subs:
            if allowed is not None and dep_id not in allowed:
                continue
            items = [{"deployment_id": dep_id, "node": node_name, "record": json.loads(r["record"])} for r in rows]
            loop.call_soon_threadsafe(self._put, queue, items, state)

    def _put(self, queue: asyncio.Queue, items: list[dict], state: dict) -> None:
        for item in items:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                state["dropped"] += 1
                self.dropped += 1


__all__ = ["EventStore", "Hub", "Rejected", "parse_timestamp", "row_of", "server_name"]
