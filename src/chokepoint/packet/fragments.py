"""IPv4 and IPv6 fragment reassembly, bounded and driven by packet time (no wall clock).

Datagrams are keyed as RFC 791 §3.2 (IPv4: source, destination, protocol, identification) and RFC 8200 §4.5
(IPv6: source, destination, fragment identification); the caller builds the key. Fragment data is the
fragmentable part only (what follows the IPv4 header or the IPv6 Fragment header).

Policies, each counted in the shared ``counters`` under the name given:

- **Overlap: first wins.** Bytes already held are kept; the overlapping part of a later fragment is dropped
  ("fragment-overlap"; "fragment-overlap-conflict" as well when the overlapping bytes differ, the case that
  enables insertion/evasion attacks: Ptacek & Newsham 1998, "Insertion, Evasion, and Denial of Service";
  Novak 2005, "Target-Based Fragmentation Reassembly", policy "First"). RFC 5722 would drop the whole IPv6
  datagram instead; a censor need not, and first-wins keeps every datagram that an honest sender produced.
- **Fragment limit.** A datagram that receives more than ``limit`` fragments is dropped and remembered until
  its timeout ("fragment-limit-exceeded" once, then "fragment-of-dropped-datagram"). The leaked TSG gateway
  accepts 101 (exported-gateway-leak notes: ``IPV4_FRAG_NUM_PER_IPQ`` = 100 with an off-by-one).
- **Bad fragments** are discarded alone: a non-last fragment whose length is not a multiple of 8
  ("fragment-bad-length"), one that would make the datagram larger than allowed ("fragment-too-large"),
  RFC 8200 §4.5. Fragments that contradict the datagram's known end drop the datagram
  ("fragment-inconsistent-end").
- **Bounds.** At most ``max_pending`` datagrams wait at once (the oldest is evicted: "fragment-evicted"); a
  datagram expires ``timeout`` seconds of *packet time* after its first fragment ("fragment-timeout"; RFC 791
  suggests a timer of up to 15 s, Linux uses 30 s). Expiry is checked oldest-first on every fragment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A complete datagram: its fragmentable part, what the caller attached to the offset-0 fragment,
    how many fragments built it, and the sum of their frame lengths."""

    payload: bytes
    head: Any
    fragments: int
    frame_len: int


@dataclass(slots=True)
class _Pending:
    first_ts: float
    pieces: list[tuple[int, int, bytes]] = field(default_factory=list)  # sorted, disjoint [start, end)
    covered: int = 0
    end: int = -1  # known once the last fragment (M=0) arrives
    fragments: int = 0
    frame_len: int = 0
    head: Any = None
    has_head: bool = False
    dropped: bool = False


class FragmentReassembler:
    """Collects fragments per datagram key; :meth:`add` returns a :class:`Reassembled` when one completes."""

    def __init__(
        self,
        counters: Counter[str],
        limit: int = 64,
        max_pending: int = 1024,
        timeout: float = 30.0,
    ) -> None:
        if limit < 1 or max_pending < 1 or timeout <= 0:
            raise ValueError("limit and max_pending must be >= 1 and timeout > 0")
        self.counters = counters
        self.limit = limit
        self.max_pending = max_pending
        self.timeout = timeout
        self._pending: dict[Hashable, _Pending] = {}

    @property
    def pending(self) -> int:
        """Datagrams waiting for fragments (including dropped ones remembered until their timeout)."""
        return len(self._pending)

    def add(
        self,
        key: Hashable,
        ts: float,
        offset: int,
        more: bool,
        data: bytes,
        head: Any = None,
        frame_len: int = 0,
        max_end: int = 65535,
    ) -> Reassembled | None:
        """Add one fragment (``offset`` in bytes; ``more`` is the M/MF flag). ``head`` is kept from the
        offset-0 fragment and handed back on completion; ``max_end`` bounds the reassembled length."""
        counters = self.counters
        self._expire(ts)
        end = offset + len(data)
        if more and len(data) % 8:
            counters["fragment-bad-length"] += 1
            return None
        if end > max_end:
            counters["fragment-too-large"] += 1
            return None
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self.max_pending:
                oldest = next(iter(self._pending))
                if not self._pending.pop(oldest).dropped:
                    counters["fragment-evicted"] += 1
            entry = self._pending[key] = _Pending(ts)
        if entry.dropped:
            counters["fragment-of-dropped-datagram"] += 1
            return None
        entry.fragments += 1
        entry.frame_len += frame_len
        if entry.fragments > self.limit:
            counters["fragment-limit-exceeded"] += 1
            self._drop(entry)
            return None
        if not more:
            if entry.end >= 0 and entry.end != end or entry.pieces and entry.pieces[-1][1] > end:
                counters["fragment-inconsistent-end"] += 1
                self._drop(entry)
                return None
            entry.end = end
        elif entry.end >= 0 and end > entry.end:
            counters["fragment-inconsistent-end"] += 1
            self._drop(entry)
            return None
        if offset == 0 and not entry.has_head:
            entry.head = head
            entry.has_head = True
        self._insert(entry, offset, end, data)
        if entry.end < 0 or entry.covered != entry.end or not entry.has_head:
            return None
        del self._pending[key]
        payload = b"".join(piece for _start, _end, piece in entry.pieces)
        return Reassembled(payload, entry.head, entry.fragments, entry.frame_len)

    def _insert(self, entry: _Pending, start: int, end: int, data: bytes) -> None:
        """Insert the parts of [start, end) not yet held (first wins), counting overlaps."""
        pieces = entry.pieces
        new: list[tuple[int, int, bytes]] = []
        cursor = start
        overlapped = conflict = False
        for held_start, held_end, held in pieces:
            if held_end <= cursor:
                continue
            if held_start >= end:
                break
            if held_start > cursor:
                new.append((cursor, held_start, data[cursor - start : held_start - start]))
            lo, hi = max(held_start, start), min(held_end, end)
            overlapped = True
            if held[lo - held_start : hi - held_start] != data[lo - start : hi - start]:
                conflict = True
            cursor = max(cursor, held_end)
            if cursor >= end:
                break
        if cursor < end:
            new.append((cursor, end, data[cursor - start :]))
        if overlapped:
            self.counters["fragment-overlap"] += 1
            if conflict:
                self.counters["fragment-overlap-conflict"] += 1
        if new:
            pieces.extend(new)
            pieces.sort(key=lambda piece: piece[0])
            entry.covered += sum(piece_end - piece_start for piece_start, piece_end, _ in new)

    @staticmethod
    def _drop(entry: _Pending) -> None:
        entry.dropped = True
        entry.pieces = []
        entry.head = None

    def _expire(self, now: float) -> None:
        pending = self._pending
        deadline = now - self.timeout
        while pending:
            oldest_key = next(iter(pending))
            oldest = pending[oldest_key]
            if oldest.first_ts >= deadline:
                return
            del pending[oldest_key]
            if not oldest.dropped:
                self.counters["fragment-timeout"] += 1
