"""Indexes behind the compiled policy: each answers "which sources match this value" in one lookup.

A *source* is a small integer standing for one inline atom (``tls.sni: {suffix: [a, b]}``) or one list
used on one index; the compiler maps sources back to the atoms that use them. Every index stores
sources as bit masks (``1 << source``), so an entry shared by several lists costs one dict slot. A lookup
returns ``[(source, shown)]`` where ``shown`` is the pattern or list entry that matched (the evidence).

- ``DomainIndex``: a suffix trie over reversed labels, stored flat: each node is keyed by its suffix
  string, so walking ``a.b.example.com`` from the root is one dict probe per label
  (``com``, ``example.com``, ...). It also keeps an exact-name dict and a hyperscan database for
  ``*substr*``, ``~regex``, keyword and regex patterns. All domain fields share one.
- ``IpIndex``: one dict per prefix length per address family, keyed by the network as an int.
- ``PatternSet``: one hyperscan block-mode database (``HS_FLAG_SINGLEMATCH``, no SOM), compiled once.
- ``TextIndex``, ``ValueIndex``, ``PortIndex``, ``IntIndex``, ``BytesIndex``: the other kinds.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import hyperscan

from chokepoint.policy.errors import PolicyError, SourcePos

Hits = list[tuple[int, str]]

LITERAL = hyperscan.HS_FLAG_SINGLEMATCH
REGEX = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY
CASELESS = hyperscan.HS_FLAG_CASELESS
DOTALL = hyperscan.HS_FLAG_DOTALL


def bits(mask: int) -> Iterator[int]:
    """Source numbers set in ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _put(table: dict[Any, int], key: Any, bit: int) -> None:
    old = table.get(key)
    table[key] = bit if old is None else old | bit


class PatternSet:
    """Many patterns, one hyperscan database; identical (pattern, flags) pairs are compiled once."""

    __slots__ = ("_ids", "_exprs", "_flags", "_owners", "_pos", "_db")

    def __init__(self) -> None:
        self._ids: dict[tuple[bytes, int], int] = {}
        self._exprs: list[bytes] = []
        self._flags: list[int] = []
        self._owners: list[list[tuple[int, str]]] = []
        self._pos: list[SourcePos | None] = []
        self._db: hyperscan.Database | None = None

    def __len__(self) -> int:
        return len(self._exprs)

    def add(self, source: int, expr: bytes, flags: int, shown: str, pos: SourcePos | None = None) -> None:
        key = (expr, flags)
        pid = self._ids.get(key)
        if pid is None:
            pid = self._ids[key] = len(self._exprs)
            self._exprs.append(expr)
            self._flags.append(flags)
            self._owners.append([])
            self._pos.append(pos)
        owners = self._owners[pid]
        if all(s != source for s, _ in owners):
            owners.append((source, shown))

    def compile(self, where: SourcePos) -> None:
        """Compile once; a pattern hyperscan rejects is reported at its own position."""
        self._ids = {}
        if not self._exprs:
            return
        try:
            self._db = self._build(self._exprs, self._flags)
        except hyperscan.error as exc:
            bad = self._first_bad()
            own = self._pos[bad] if bad is not None else None
            pos = own if own is not None else where
            shown = self._owners[bad][0][1] if bad is not None else "patterns"
            raise PolicyError.at(pos, f"hyperscan cannot compile {shown!r}: {exc}") from None

    @staticmethod
    def _build(exprs: list[bytes], flags: list[int]) -> hyperscan.Database:
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
        return db

    def _first_bad(self) -> int | None:
        """Index of the pattern that breaks compilation: the shortest failing prefix ends with it
        (bisection: about log2(n) compiles, only on the error path)."""

        def compiles(n: int) -> bool:
            try:
                self._build(self._exprs[:n], self._flags[:n])
            except hyperscan.error:
                return False
            return True

        if not compiles(1):
            return 0
        good, bad = 1, len(self._exprs)
        if compiles(bad):
            return None  # only the combination fails (e.g. size limits): no single culprit
        while bad - good > 1:
            mid = (good + bad) // 2
            if compiles(mid):
                good = mid
            else:
                bad = mid
        return bad - 1

    def scan(self, data: bytes) -> Hits:
        if self._db is None:
            return []
        found: list[int] = []
        self._db.scan(data, match_event_handler=lambda pid, start, end, flags, ctx: found.append(pid))
        owners = self._owners
        return [hit for pid in found for hit in owners[pid]]


class DomainIndex:
    __slots__ = ("exact", "suffix", "sub", "patterns", "exact_label", "suffix_label", "sub_label")

    def __init__(self) -> None:
        self.exact: dict[str, int] = {}  # name -> sources matching exactly that name
        self.suffix: dict[str, int] = {}  # trie node (a suffix) -> sources matching it and below
        self.sub: dict[str, int] = {}  # trie node -> sources matching strictly below it
        self.patterns = PatternSet()
        self.exact_label: dict[int, str] = {}
        self.suffix_label: dict[int, str] = {}
        self.sub_label: dict[int, str] = {}

    def sizes(self) -> dict[str, int]:
        return {
            "exact": len(self.exact),
            "suffix": len(self.suffix),
            "sub": len(self.sub),
            "patterns": len(self.patterns),
        }

    def add_exact(self, source: int, name: str, label: str) -> None:
        self.exact_label[source] = label
        _put(self.exact, name, 1 << source)

    def add_suffix(self, source: int, name: str, label: str) -> None:
        self.suffix_label[source] = label
        _put(self.suffix, name, 1 << source)

    def add_sub(self, source: int, name: str, label: str) -> None:
        self.sub_label[source] = label
        _put(self.sub, name, 1 << source)

    def lookup(self, name: str) -> Hits:
        out: Hits = []
        mask = self.exact.get(name)
        if mask:
            out.extend((s, self.exact_label[s] + name) for s in bits(mask))
        if self.suffix or self.sub:
            suffix, sub = self.suffix, self.sub
            key, proper = name, False
            while True:
                mask = suffix.get(key)
                if mask:
                    out.extend((s, self.suffix_label[s] + key) for s in bits(mask))
                if proper:
                    mask = sub.get(key)
                    if mask:
                        out.extend((s, self.sub_label[s] + key) for s in bits(mask))
                dot = key.find(".")
                if dot < 0:
                    break
                key, proper = key[dot + 1 :], True
        if self.patterns:
            out.extend(self.patterns.scan(name.encode("utf-8", "surrogatepass")))
        return out


class TextIndex:
    __slots__ = ("exact", "patterns", "exact_label")

    def __init__(self) -> None:
        self.exact: dict[str, int] = {}
        self.patterns = PatternSet()
        self.exact_label: dict[int, str] = {}

    def sizes(self) -> dict[str, int]:
        return {"exact": len(self.exact), "patterns": len(self.patterns)}

    def add_exact(self, source: int, text: str, label: str) -> None:
        self.exact_label[source] = label
        _put(self.exact, text, 1 << source)

    def lookup(self, text: str) -> Hits:
        out: Hits = []
        mask = self.exact.get(text)
        if mask:
            out.extend((s, self.exact_label[s] + text) for s in bits(mask))
        if self.patterns:
            out.extend(self.patterns.scan(text.encode("utf-8", "surrogatepass")))
        return out


class ValueIndex:
    """Exact values (enums, strings, booleans, integers)."""

    __slots__ = ("table", "label")

    def __init__(self) -> None:
        self.table: dict[Any, int] = {}
        self.label: dict[int, str] = {}

    def sizes(self) -> dict[str, int]:
        return {"values": len(self.table)}

    def add(self, source: int, value: Any, label: str) -> None:
        self.label[source] = label
        _put(self.table, value, 1 << source)

    def lookup(self, value: Any) -> Hits:
        mask = self.table.get(value)
        if not mask:
            return []
        shown = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return [(s, self.label[s] + shown) for s in bits(mask)]


class IntIndex(ValueIndex):
    __slots__ = ("compare",)

    def __init__(self) -> None:
        super().__init__()
        self.compare: list[tuple[str, int, int]] = []

    def sizes(self) -> dict[str, int]:
        return {"values": len(self.table), "comparisons": len(self.compare)}

    def add_compare(self, source: int, op: str, bound: int) -> None:
        self.compare.append((op, bound, source))

    def lookup(self, value: Any) -> Hits:
        out = super().lookup(value)
        for op, bound, source in self.compare:
            if (
                value < bound
                if op == "lt"
                else value <= bound
                if op == "le"
                else value > bound
                if op == "gt"
                else value >= bound
            ):
                out.append((source, f"{op} {bound}"))
        return out


class PortIndex:
    __slots__ = ("ports", "ranges", "label")

    def __init__(self) -> None:
        self.ports: dict[int, int] = {}
        self.ranges: list[tuple[int, int, int]] = []
        self.label: dict[int, str] = {}

    def sizes(self) -> dict[str, int]:
        return {"ports": len(self.ports), "ranges": len(self.ranges)}

    def add(self, source: int, lo: int, hi: int, label: str) -> None:
        self.label[source] = label
        if lo == hi:
            _put(self.ports, lo, 1 << source)
        else:
            self.ranges.append((lo, hi, source))

    def lookup(self, port: int) -> Hits:
        out: Hits = []
        mask = self.ports.get(port)
        if mask:
            out.extend((s, f"{self.label[s]}{port}") for s in bits(mask))
        for lo, hi, source in self.ranges:
            if lo <= port <= hi:
                out.append((source, f"{self.label[source]}{lo}-{hi}"))
        return out


class IpIndex:
    """Longest-prefix structure reduced to what a policy needs: every network containing an address."""

    __slots__ = ("nets", "lengths", "label", "shown")

    def __init__(self) -> None:
        self.nets: dict[tuple[int, int], dict[int, int]] = {}  # (version, prefix length) -> {net: mask}
        self.lengths: dict[int, list[int]] = {4: [], 6: []}
        self.label: dict[int, str] = {}
        self.shown: dict[tuple[int, int, int], str] = {}  # (version, prefix length, net) -> "net/len" (evidence)

    def sizes(self) -> dict[str, int]:
        return {"networks": sum(len(t) for t in self.nets.values()), "prefix_lengths": len(self.nets)}

    def add(self, source: int, cidr: str, label: str) -> None:
        net = ipaddress.ip_network(cidr)
        self.label[source] = label
        width = net.max_prefixlen
        key = (net.version, net.prefixlen)
        if key not in self.nets:
            self.nets[key] = {}
            self.lengths[net.version] = sorted(self.lengths[net.version] + [net.prefixlen], reverse=True)
        value = int(net.network_address) >> (width - net.prefixlen)
        _put(self.nets[key], value, 1 << source)
        self.shown[(net.version, net.prefixlen, value)] = str(net)

    def lookup(self, address: str) -> Hits:
        if ":" in address:
            version, width, family = 6, 128, socket.AF_INET6
        else:
            version, width, family = 4, 32, socket.AF_INET
        try:
            value = int.from_bytes(socket.inet_pton(family, address), "big")
        except OSError:
            raise ValueError(f"not an IP address: {address!r}") from None
        out: Hits = []
        for plen in self.lengths[version]:
            key = value >> (width - plen)
            mask = self.nets[(version, plen)].get(key)
            if mask:
                net = self.shown[(version, plen, key)]
                out.extend((s, f"{self.label[s]}{net}") for s in bits(mask))
        return out


class BytesIndex:
    __slots__ = ("prefix", "at", "patterns", "label")

    def __init__(self) -> None:
        self.prefix: dict[int, dict[bytes, int]] = {}  # length -> {prefix bytes: mask}
        self.at: dict[tuple[int, int], dict[bytes, int]] = {}  # (offset, length) -> {bytes: mask}
        self.patterns = PatternSet()
        self.label: dict[int, str] = {}

    def sizes(self) -> dict[str, int]:
        return {
            "prefixes": sum(len(t) for t in self.prefix.values()),
            "at": sum(len(t) for t in self.at.values()),
            "patterns": len(self.patterns),
        }

    def add_prefix(self, source: int, data: bytes, label: str) -> None:
        self.label[source] = label
        _put(self.prefix.setdefault(len(data), {}), data, 1 << source)

    def add_at(self, source: int, offset: int, data: bytes, label: str) -> None:
        self.label[source] = label
        _put(self.at.setdefault((offset, len(data)), {}), data, 1 << source)

    def lookup(self, data: bytes) -> Hits:
        out: Hits = []
        for length, table in self.prefix.items():
            mask = table.get(data[:length]) if len(data) >= length else None
            if mask:
                out.extend((s, f"{self.label[s]}{data[:length].hex()}") for s in bits(mask))
        for (offset, length), table in self.at.items():
            if len(data) >= offset + length:
                mask = table.get(data[offset : offset + length])
                if mask:
                    chunk = data[offset : offset + length].hex()
                    out.extend((s, f"{self.label[s]}{offset}:{chunk}") for s in bits(mask))
        if self.patterns:
            out.extend(self.patterns.scan(bytes(data)))
        return out
