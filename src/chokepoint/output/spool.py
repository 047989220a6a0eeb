"""EVE records of one analysis, kept in memory up to a bound and spilled to disk in sorted runs beyond it.

A capture of millions of flows (a SYN flood of distinct sources is one) would otherwise hold every record
until the end. :class:`EveSpool` holds up to ``spill_at`` records as a list; past that it sorts them and
writes them to an anonymous temporary file (a "run"), so memory stays bounded by ``spill_at`` whatever the
number of flows. Reading back merges the runs and what is in memory in sort order (``heapq.merge``).
Records are ``(timestamp, flow id, EVE JSON line)``; a JSON line never holds a raw tab or newline.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

EveLine = tuple[str, int, str]

#: Records kept in memory before a run is spilled (about 1 kB each).
SPILL_AT = 50_000
#: Runs kept before they are merged into one: bounds the open files (a common limit is 1024) while keeping
#: the rewrites rare (10M records make 200 runs: one merge).
MAX_RUNS = 128


class EveSpool:
    """A list of EVE records that spills sorted runs to disk past ``spill_at`` records.

    Before the first spill it behaves as the list it holds (indexing, assignment, insertion order); once
    spilled, iteration yields every record in sort order."""

    def __init__(self, items: Iterable[EveLine] = (), spill_at: int = SPILL_AT) -> None:
        self.spill_at = spill_at
        self.memory: list[EveLine] = []
        self.runs: list[IO[str]] = []
        self.spilled = 0
        self.extend(items)

    def append(self, item: EveLine) -> None:
        self.memory.append(item)
        if len(self.memory) >= self.spill_at:
            self._spill()

    def extend(self, items: Iterable[EveLine]) -> None:
        for item in items:
            self.append(item)

    def sort(self) -> None:
        self.memory.sort()

    def __len__(self) -> int:
        return self.spilled + len(self.memory)

    def __iter__(self) -> Iterator[EveLine]:
        if not self.runs:
            return iter(self.memory)
        return heapq.merge(*(_read(run) for run in self.runs), sorted(self.memory))

    def __getitem__(self, index: int) -> EveLine:
        self._in_memory()
        return self.memory[index]

    def __setitem__(self, index: int, item: EveLine) -> None:
        self._in_memory()
        self.memory[index] = item

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EveSpool | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __getstate__(self) -> dict:
        """Pickled (to a worker's parent) as the records themselves: a run's file does not cross processes."""
        return {"spill_at": self.spill_at, "items": list(self)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["items"], state["spill_at"])

    def close(self) -> None:
        """Delete the runs (they are deleted anyway when the spool is garbage-collected)."""
        for run in self.runs:
            run.close()
        self.runs = []
        self.memory = []
        self.spilled = 0

    def _spill(self) -> None:
        self.memory.sort()
        self.runs.append(_write(self.memory))
        self.spilled += len(self.memory)
        self.memory = []
        if len(self.runs) > MAX_RUNS:
            merged = _write(heapq.merge(*(_read(run) for run in self.runs)))
            for run in self.runs:
                run.close()
            self.runs = [merged]

    def _in_memory(self) -> None:
        if self.runs:
            raise IndexError("the records were spilled to disk: iterate instead of indexing")


def _write(records: Iterable[EveLine]) -> IO[str]:
    run = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="chokepoint-eve-")
    run.writelines(f"{ts}\t{ident}\t{line}\n" for ts, ident, line in records)
    return run


def _read(run: IO[str]) -> Iterator[EveLine]:
    run.seek(0)
    for text in run:
        ts, ident, line = text.rstrip("\n").split("\t", 2)
        yield (ts, int(ident), line)
