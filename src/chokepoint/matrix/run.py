"""Running the matrix: cells in a fixed order, written to ``matrix.json`` one by one.

Order: the baseline column first (every transport with no censor: does it run here, how fast), then for each
mode and each profile (in the order given) every transport (in the order given). A run starts the transport,
makes ``attempts`` downloads (stopping after two failures in a row once one failed), and, when the profile
has an active prober, waits for the probes it scheduled (the censor sends none due later than
``probe_max_delay_s``), downloads once more and waits again before stopping the transport (a probe must never
meet a server that is shutting down); then it reads the censor's events of that run. A censor that acted is restarted before the next run, so every run starts from a clean
censor (its seed is derived from the matrix seed and the run's position, so a matrix can be repeated).
A matrix at several days (``config.days``: ``--as-of D1,D2`` / ``--timeline FROM..TO --step``) runs each
profile's column once per day, its censor started with that day's profile; a day whose loaded profile is the
previous measured day's (:func:`loaded_signature`) copies that day's cells, marked ``reused_from`` (``reuse``).
``KeyboardInterrupt`` stops the running transport and re-raises after the cells measured so far are saved;
the caller tears the lab down.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chokepoint import transports
from chokepoint.matrix.classify import classify_run, summarize_cell
from chokepoint.matrix.model import BASELINE, Cell, MatrixConfig, RunResult
from chokepoint.matrix.session import LabSession
from chokepoint.policy.outcomes import expected_for
from chokepoint.transports.runner import TransportError, TransportRun, program_version
from chokepoint.transports.spec import TransportSpec

Progress = Callable[[Cell, int, int], None]


def run_seed(seed: int, *parts: str | int) -> int:
    return zlib.crc32("/".join(str(p) for p in (seed, *parts)).encode()) & 0x7FFFFFFF


class Matrix:
    """One matrix run (see the module docstring); ``cells`` grows as they are measured."""

    def __init__(self, config: MatrixConfig, session: LabSession, *, say: Callable[[str], None] = lambda _: None):
        self.config = config
        self.session = session
        self.say = say
        self.specs: dict[str, TransportSpec] = {name: transports.get(name) for name in config.transports}
        self.versions = {n: program_version(s) if not s.unavailable else "" for n, s in self.specs.items()}
        self.profiles: dict[str, Any] = {}
        self.cells: list[Cell] = []
        self.baseline_kbps: dict[str, float | None] = {}
        self.started = time.time()
        self.interrupted = False
        self.finished: float | None = None
        self._dirty = False
        self._day: str | None = None  # the day the current column's profile is loaded for (several days)
        self._done = 0
        config.out_dir.mkdir(parents=True, exist_ok=True)

    @property
    def total(self) -> int:
        c = self.config
        columns = sum(len(c.days.get(p, ())) for p in c.profiles) if c.days else len(c.profiles)
        return len(c.transports) * (1 + len(c.modes) * columns)

    def needs_tor(self) -> bool:
        return any("tor-network" in s.requires and not s.unavailable for s in self.specs.values())

    # -- the whole run ------------------------------------------------------------------------------------
    def run(self, progress: Progress = lambda cell, done, total: None) -> list[Cell]:
        from chokepoint.policy import load_profile

        c = self.config
        if not c.days:
            self.profiles = {name: load_profile(name, as_of=c.as_of) for name in c.profiles}
        self._done = 0
        try:
            self.session.use_censor(None, "inline", seed=c.seed)
            for name in c.transports:
                cell = self._cell(BASELINE, name, "inline", ())
                self.baseline_kbps[name] = next((r.kbps for r in cell.runs if r.kbps), None)
                self._done += 1
                progress(cell, self._done, self.total)
            for mode in c.modes:
                for profile_name in c.profiles:
                    if c.days:
                        self._through_time(profile_name, mode, progress)
                    else:
                        self._column(profile_name, mode, None, progress)
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        finally:
            self.finished = time.time()
            self.write()
        return self.cells

    def _column(self, profile_name: str, mode: str, day: str | None, progress: Progress) -> None:
        """Every transport under one profile (as loaded for ``day``) in one mode."""
        profile = self.profiles[profile_name]
        outcomes, as_of = profile.outcomes, getattr(profile, "as_of", None)
        self._day = day
        self._use(profile_name, mode, 0)
        for name in self.config.transports:
            expected = expected_for(outcomes, self.specs[name].name, mode, as_of)
            cell = self._cell(profile_name, name, mode, expected)
            cell.profile = profile.name
            self._done += 1
            progress(cell, self._done, self.total)

    def _through_time(self, profile_name: str, mode: str, progress: Progress) -> None:
        """One column per day of ``profile_name``; a day whose loaded profile equals the previous day's copies
        that day's cells when ``reuse`` (each copy says so in ``reused_from``; its expectation is that day's)."""
        from chokepoint.policy import load_profile

        measured: tuple[str, frozenset[Any]] | None = None  # (day, what was loaded) of the last day run
        for day in self.config.days[profile_name]:
            profile = self.profiles[profile_name] = load_profile(profile_name, as_of=day)
            loaded = loaded_signature(profile)
            if self.config.reuse and measured is not None and measured[1] == loaded:
                self._copy_column(profile_name, profile, mode, day, measured[0], progress)
                continue
            self._column(profile_name, mode, day, progress)
            measured = (day, loaded)

    def _copy_column(self, profile_name: str, profile: Any, mode: str, day: str, source: str, progress: Progress):
        from dataclasses import replace

        for name in self.config.transports:
            spec = self.specs[name]
            original = next(
                c
                for c in self.cells
                if (c.profile, c.transport, c.mode, c.as_of) == (profile.name, spec.name, mode, source)
            )
            cell = replace(original, as_of=day, reused_from=source, seconds=0.0, runs=[])
            cell.evidence = dict(original.evidence)
            expected = expected_for(profile.outcomes, spec.name, mode, getattr(profile, "as_of", None))
            if expected:
                cell.expected = expected[0].to_json()
                cell.agrees = None if cell.outcome == "error" else cell.outcome == expected[0].outcome
            else:
                cell.expected, cell.agrees = None, None
            self.cells.append(cell)
            self.write()
            self._done += 1
            progress(cell, self._done, self.total)

    def _use(self, profile: str, mode: str, index: int) -> None:
        c = self.config
        day = getattr(self, "_day", None)
        self.session.use_censor(
            profile,
            mode,
            seed=run_seed(c.seed, profile, mode, index, *((day,) if day else ())),
            as_of=day or c.as_of,
            probe_time_scale=c.probe_time_scale,
            probe_max_delay_s=c.probe_max_delay_s,
        )
        self._dirty = False

    # -- one cell -----------------------------------------------------------------------------------------
    def _cell(self, profile: str, name: str, mode: str, expectations: list[Any]) -> Cell:
        c = self.config
        spec = self.specs[name]  # ``name``: as given (a bundled name or a description file)
        cell = Cell(profile, spec.name, mode, as_of=getattr(self, "_day", None) if profile != BASELINE else None)
        began = time.monotonic()
        runs = 1 if profile == BASELINE else c.repeat
        for index in range(runs):
            if profile != BASELINE and self._dirty:
                self._use(profile, mode, len(self.cells) * 1000 + index)
            run = self._run(profile, spec, mode, index)
            censored_before = any(r.events for r in cell.runs)
            classify_run(run, baseline_kbps=self.baseline_kbps.get(name), censored_before=censored_before)
            cell.runs.append(run)
            if run.events or run.probes:
                self._dirty = True
            if run.outcome == "error" and run.start_error and run.start_error.get("kind") == "missing":
                break  # it will not appear between two runs
        summarize_cell(cell, expectations)
        cell.seconds = time.monotonic() - began
        self.cells.append(cell)
        self.write()
        return cell

    def _run(self, profile: str, spec: TransportSpec, mode: str, index: int) -> RunResult:
        c = self.config
        label = getattr(self.profiles.get(profile), "name", profile)
        day = getattr(self, "_day", None) if profile != BASELINE else None
        directory = c.out_dir / "runs" / mode / (f"{label}@{day}" if day else label) / spec.name / f"r{index}"
        result = RunResult(index=index, started_at=time.time(), log_dir=str(directory))
        offset = self.session.events_offset()
        run = TransportRun(spec, self.session.placement(spec), directory, port=c.port)
        ready = spec.ready
        if ready is not None and ready.timeout > c.ready_timeout_s:
            from dataclasses import replace

            run.spec = replace(spec, ready=replace(ready, timeout=c.ready_timeout_s))
        t0 = time.monotonic()
        try:
            if "tor-network" in spec.requires and self.session.tor is None and not spec.unavailable:
                raise TransportError("missing", "the lab's private Tor network did not come up")
            run.start()
            self._downloads(run, result, t0)
            if self._probing(profile) and result.transfers:
                self._await_probes(t0)
                self._download(run, result, t0, label="after probes")
                self._await_probes(t0)  # the last download is flagged too: let its probes finish first
        except TransportError as exc:
            result.start_error = {"kind": exc.kind, "message": exc.message, "log": exc.log[-6000:]}
        finally:
            run.stop()
        actions, probes = self.session.events_since(offset, result.started_at)
        result.events, result.probes = actions, probes
        return result

    def _downloads(self, run: TransportRun, result: RunResult, t0: float) -> None:
        failures_in_row = 0
        for _ in range(self.config.attempts):
            ok = self._download(run, result, t0)
            failures_in_row = 0 if ok else failures_in_row + 1
            if failures_in_row >= 2:
                break

    def _download(self, run: TransportRun, result: RunResult, t0: float, label: str = "") -> bool:
        transfer = run.transfer(self.config.size, self.config.timeout_s, index=len(result.transfers))
        record = transfer.to_json() | {"at_s": round(transfer.started - t0, 3)}
        if label:
            record["label"] = label
        result.transfers.append(record)
        return transfer.ok

    def _probing(self, profile: str) -> bool:
        return profile != BASELINE and getattr(self.profiles.get(profile), "active_probing", None) is not None

    def _await_probes(self, t0: float) -> None:
        """Wait until the censor's prober has nothing scheduled (its stats), at most ``probe_wait_s``."""
        deadline = time.monotonic() + self.config.probe_wait_s
        since = time.time() + 1.1  # stats written before this may predate the last flow's flag (1 s interval)
        while time.monotonic() < deadline:
            stats, age = self.session.state.read_stats()
            pending = ((stats or {}).get("active_probing") or {}).get("pending")
            if pending == 0 and age is not None and time.time() - age >= since:
                return
            time.sleep(0.25)

    # -- output -------------------------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        return {
            "version": 2 if self.config.days else 1,
            "started": self.started,
            "finished": self.finished,
            "wall_s": round((self.finished or time.time()) - self.started, 1),
            "interrupted": self.interrupted,
            "config": self.config.to_json(),
            "lab": os.environ.get("CHOKEPOINT_LAB", "cpk"),
            "transports": {
                spec.name: {
                    "title": spec.title,
                    "packages": list(spec.packages),
                    "version": self.versions[name],
                    "proto": spec.proto,
                    "port": self.config.port or spec.port,
                    "port_note": spec.port_note,
                    "unavailable": spec.unavailable,
                    "notes": spec.notes,
                }
                for name, spec in self.specs.items()
            },
            "baseline_kbps": self.baseline_kbps,
            "cells": [cell.to_json() for cell in self.cells],
        }

    def write(self) -> Path:
        """``matrix.json`` (atomically: a reader never sees half a file)."""
        target = self.config.out_dir / "matrix.json"
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.document(), indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target


def loaded_signature(profile: Any) -> frozenset[Any]:
    """What of a profile's dated elements is in force on the day it was loaded for: two days with the same
    signature load the same profile (no rule, list, personality element or example starts or stops between)."""
    day = getattr(profile, "as_of", None)
    if day is None:
        return frozenset()
    return frozenset(
        (item.kind, item.name, item.active.start, item.active.end)
        for item in getattr(profile, "timeline", ())
        if item.active.contains(day)
    )


__all__ = ["Matrix", "loaded_signature", "run_seed"]
