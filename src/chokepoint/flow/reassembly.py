"""Bounded in-order reassembly of the first N bytes of one TCP direction.

Sequence numbers are handled modulo 2**32. Overlapping data is resolved first-wins (the bytes already
assembled or buffered are kept), which is what most middleboxes do and what Suricata calls the "first"
policy; retransmissions therefore never rewrite what a dissector has already seen.
"""

from __future__ import annotations

_MOD = 1 << 32


class StreamReassembler:
    __slots__ = ("max_bytes", "max_segments", "base", "data", "pending", "gaps_dropped", "overlaps", "full")

    def __init__(self, max_bytes: int, max_segments: int) -> None:
        self.max_bytes = max_bytes
        self.max_segments = max_segments
        self.base: int | None = None  # sequence number of stream byte 0
        self.data = bytearray()  # contiguous bytes from base
        self.pending: dict[int, bytes] = {}  # stream offset -> out-of-order payload
        self.gaps_dropped = 0  # out-of-order segments dropped because the buffer was full
        self.overlaps = 0  # segments that overlapped data already held
        self.full = False  # max_bytes reached: later data is ignored

    def set_isn(self, syn_seq: int) -> None:
        """Anchor the stream at the SYN (data starts at ISN + 1). Ignored once anchored."""
        if self.base is None:
            self.base = (syn_seq + 1) % _MOD

    def add(self, seq: int, payload: bytes) -> int:
        """Add one segment; return how many new contiguous bytes were appended to ``data``."""
        if not payload or self.full:
            return 0
        if self.base is None:  # mid-stream pickup: the first data segment defines offset 0
            self.base = seq
        offset = (seq - self.base) % _MOD
        if offset >= _MOD // 2:  # before the base (a retransmission of old data): ignore
            self.overlaps += 1
            return 0
        before = len(self.data)
        if offset > before:
            if offset >= self.max_bytes:
                return 0
            if offset not in self.pending:
                if len(self.pending) >= self.max_segments:
                    self.gaps_dropped += 1
                    return 0
                self.pending[offset] = payload
            else:
                self.overlaps += 1
            return 0
        self._append(offset, payload)
        while self.pending:
            end = len(self.data)
            ready = [o for o in self.pending if o <= end]
            if not ready:
                break
            for o in sorted(ready):
                self._append(o, self.pending.pop(o))
        return len(self.data) - before

    def _append(self, offset: int, payload: bytes) -> None:
        end = len(self.data)
        if offset < end:
            self.overlaps += 1
            payload = payload[end - offset :]
        room = self.max_bytes - end
        if len(payload) >= room:
            payload = payload[:room]
            self.full = True
        self.data += payload

    @property
    def bytes(self) -> bytes:
        return bytes(self.data)
