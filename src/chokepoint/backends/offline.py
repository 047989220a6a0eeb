"""The offline backend: captures in, EVE flow records out ("what would this censor do, and why").

Records are kept as EVE JSON lines (``CaptureResult.eve``, with the timestamp and flow id they sort by), in an
:class:`~chokepoint.output.spool.EveSpool` that spills sorted runs to disk past a bound, so that memory stays
bounded by the flow table's budget and not by the number of flows; ``CaptureResult.records`` parses them for
readers that want dictionaries (tests), ``iter_records`` one at a time (the table). ``stats_line`` is the
capture's EVE ``stats`` record: frames, packets, skipped frames and the flow table's counters.

The fast path runs with automatic garbage collection off and collects the young generations after each block
it reads: the engine's live flows are many long-lived containers, and each full collection would walk all of
them (measured: a third of the run time on a 200k-packet capture); the engine makes no reference cycles of its
own, and whatever young cycles a block leaves are collected with it.

With ``workers > 1`` each capture is sharded by flow hash across processes: every worker reads and
decodes the whole capture but only runs the engine on its own share of flows, so no packet crosses a
process boundary (pickling packets costs more than decoding them again). Decoder counters are taken
from shard 0 only, so nothing is counted twice.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from chokepoint import fast
from chokepoint.engine import Engine
from chokepoint.fast.feed import feed
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key, shard_of
from chokepoint.output.eve import eve_timestamp, flow_id, flow_to_eve_json
from chokepoint.output.spool import EveSpool
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import CaptureFormatError, open_capture

ProgressFn = Callable[[int], None]
#: Frames between two progress callbacks.
PROGRESS_EVERY = 4096
#: Blocks read (``chokepoint.fast.feed.BLOCK_SIZE`` each) between two collections of the young generations on
#: the fast path: flows that end meanwhile are freed by reference counting and never scanned.
YOUNG_COLLECTION_BLOCKS = 4


EveLine = tuple[str, int, str]
"""One flow's record: (timestamp, flow id, EVE JSON line); records sort by these (the line breaks ties)."""


@dataclass(slots=True)
class CaptureResult:
    path: str
    eve: EveSpool = field(default_factory=EveSpool)
    frames: int = 0
    packets: int = 0
    skipped: Counter = field(default_factory=Counter)  # frames skipped by the decoder, by reason
    engine: Counter = field(default_factory=Counter)  # flow-table and verdict counters
    truncated: bool = False
    error: str | None = None  # why reading stopped early (truncation)
    _parsed: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)

    @property
    def records(self) -> list[dict[str, Any]]:
        """The EVE records as dictionaries (parsed once, in the order of ``eve``)."""
        if self._parsed is None or len(self._parsed) != len(self.eve):
            self._parsed = [json.loads(line) for _ts, _id, line in self.eve]
        return self._parsed

    def lines(self) -> list[str]:
        """The EVE JSON lines, in the order of ``eve``."""
        return list(self.iter_lines())

    def iter_lines(self) -> Iterator[str]:
        """The EVE JSON lines one at a time (a spilled spool is read back from disk)."""
        return (line for _ts, _id, line in self.eve)

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """The EVE records as dictionaries, parsed one at a time."""
        return (json.loads(line) for _ts, _id, line in self.eve)

    def stats(self) -> dict[str, Any]:
        """What the ``stats`` record holds: the decoder's and the flow table's counters, verdict counts."""
        table = {k.removeprefix("flows_"): v for k, v in sorted(self.engine.items()) if k.startswith("flows_")}
        engine = {k: v for k, v in sorted(self.engine.items()) if not k.startswith("flows_")}
        return {
            "capture": self.path,
            "frames": self.frames,
            "packets": self.packets,
            "flows": len(self.eve),
            "truncated": self.truncated,
            "skipped": dict(sorted(self.skipped.items())),
            "flow_table": table,
            "engine": engine,
        }

    def stats_line(self) -> str:
        """The capture's EVE ``stats`` record (as Suricata writes ``event_type: stats``), one JSON line."""
        record = {"event_type": "stats", "stats": self.stats()}
        return json.dumps(record, separators=(",", ":"), sort_keys=False)

    def merge(self, other: CaptureResult) -> None:
        self.eve.extend(other.eve)
        self.frames = max(self.frames, other.frames)
        self.packets = max(self.packets, other.packets)
        self.skipped.update(other.skipped)
        self.engine.update(other.engine)
        self.truncated = self.truncated or other.truncated
        self.error = self.error or other.error


def analyze_capture(
    path: str,
    profile,
    *,
    shard: int = 0,
    shards: int = 1,
    progress: ProgressFn | None = None,
    engine: str = "fast",
) -> CaptureResult:
    """Run one capture through the engine. Raises ``CaptureFormatError`` for a file that is no capture.

    ``engine``: "fast" (the block reader and per-packet core of :mod:`chokepoint.fast`, compiled when built),
    "pure" (the same core, its pure-Python source) or "reference" (frame by frame through
    :class:`~chokepoint.packet.decode.Decoder` and :meth:`Engine.step`, as the inline censor runs). All three
    give the same records and counters."""
    if engine == "reference":
        return _analyze_reference(path, profile, shard, shards, progress)
    if engine not in ("fast", "pure"):
        raise ValueError(f"unknown engine {engine!r} (fast, pure or reference)")
    core_module = fast.load(compiled=None if engine == "fast" else False)
    settings = profile.engine
    decoder = Decoder(settings.ip_fragment_reassembly, settings.ip_fragment_limit)
    eng = Engine(profile)
    core = core_module.Core(eng, decoder, shard, shards)
    result = CaptureResult(path=str(path))
    name = profile.name
    eve = result.eve
    ended = core.ended

    blocks = 0

    def take() -> None:
        for flow in ended:
            eve.append(_eve_line(flow, name))
        ended.clear()

    core.on_ended = take

    def flush() -> None:
        nonlocal blocks
        take()
        blocks += 1
        if blocks % YOUNG_COLLECTION_BLOCKS == 0:
            gc.collect(1)

    with open_capture(path) as reader, _young_collections_only():
        feed(reader, core, flush, progress)
        core.finish()
        flush()
        result.truncated = reader.truncated
        result.error = reader.error
    result.frames = core.frames
    result.packets = core.decoded
    if shard == 0:
        result.skipped.update(decoder.counters)
    result.engine.update(eng.counters)
    result.engine.update({k: v for k, v in core.counters().items() if v})
    return result


def _analyze_reference(path: str, profile, shard: int, shards: int, progress: ProgressFn | None) -> CaptureResult:
    settings = profile.engine
    decoder = Decoder(settings.ip_fragment_reassembly, settings.ip_fragment_limit)
    engine = Engine(profile)
    result = CaptureResult(path=str(path))
    name = profile.name
    eve = result.eve
    with open_capture(path) as reader:
        for frame in reader:
            result.frames += 1
            if progress is not None and result.frames % PROGRESS_EVERY == 0:
                progress(reader.position)
            pkt = decoder.decode(frame)
            if pkt is None:
                continue
            result.packets += 1
            if shards > 1 and shard_of(flow_key(pkt), shards) != shard:
                continue
            for flow in engine.process(pkt):
                eve.append(_eve_line(flow, name))
        for flow in engine.finish():
            eve.append(_eve_line(flow, name))
        result.truncated = reader.truncated
        result.error = reader.error
        if progress is not None:
            progress(reader.position)
    if shard == 0:
        result.skipped.update(decoder.counters)
    result.engine.update(engine.counters)
    result.engine.update(engine.table.counters)
    return result


def _eve_line(flow: Flow, profile_name: str) -> EveLine:
    return (eve_timestamp(flow.first_ts), flow_id(flow), flow_to_eve_json(flow, profile_name))


@contextmanager
def _young_collections_only() -> Iterator[None]:
    """Automatic garbage collection off for the run (see the module docstring); restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_worker_profile = None


def _init_worker(profile) -> None:
    global _worker_profile
    _worker_profile = profile


def _run_shard(path: str, shard: int, shards: int) -> CaptureResult:
    return analyze_capture(path, _worker_profile, shard=shard, shards=shards)


def analyze(
    paths: list[str], profile, *, workers: int = 1, progress: Callable[[str, int], None] | None = None
) -> list[CaptureResult]:
    """Analyse every capture; results in the order of ``paths``, records sorted by flow start."""
    results: list[CaptureResult] = []
    if workers <= 1:
        for path in paths:
            cb = (lambda pos, p=path: progress(p, pos)) if progress else None
            results.append(analyze_capture(path, profile, progress=cb))
    else:
        for path in paths:  # fail fast, before forking, on a file that is no capture
            open_capture(path).close()
        ctx = multiprocessing.get_context("fork")  # the compiled policy is inherited, not pickled
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(profile,)) as pool:
            futures = {path: [pool.submit(_run_shard, path, s, workers) for s in range(workers)] for path in paths}
            for path in paths:
                merged = CaptureResult(path=str(path))
                for future in futures[path]:
                    merged.merge(future.result())
                if progress:
                    progress(path, os.path.getsize(path))
                results.append(merged)
    for result in results:
        result.eve.sort()
    return results


__all__ = ["CaptureFormatError", "CaptureResult", "analyze", "analyze_capture"]
