"""The matrix's values: what was asked (``MatrixConfig``), what one run and one cell measured, and their JSON.

A *cell* is one (profile, transport, mode) — and, in a matrix at several days, one day (``as_of``); it holds ``repeat`` *runs*, each a fresh start of the transport
with fresh connections. Outcomes are ``works``, ``blocked``, ``degraded`` or ``error`` (``OUTCOMES``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OUTCOMES = ("works", "blocked", "degraded", "error")
#: The column of every transport measured with no censor at all (throughput baseline, "does it run here").
BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class MatrixConfig:
    profiles: tuple[str, ...]
    transports: tuple[str, ...]
    modes: tuple[str, ...] = ("inline",)
    repeat: int = 1
    attempts: int = 4  # downloads per run
    size: int = 256 * 1024  # bytes per download
    timeout_s: float = 6.0  # per download
    ready_timeout_s: float = 20.0  # cap on a transport's own readiness timeout
    seed: int = 1
    port: int | None = None
    as_of: str | None = None  # a date for dated profiles (issue 13); passed to the censor
    #: several days (``--as-of D1,D2`` / ``--timeline FROM..TO --step``): profile as given -> its days, ISO;
    #: empty for a single-day matrix (then ``as_of`` alone)
    days: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: on a day whose loaded profile equals the previous day's (no dated element changes in between), copy
    #: that day's cells (marked ``reused_from``) instead of running them again
    reuse: bool = True
    probe_time_scale: float = 0.01  # factor on the active prober's documented delays in the lab
    probe_max_delay_s: float = 15.0  # probes due later than this after their trigger are not sent (lab horizon)
    probe_wait_s: float = 30.0  # at most this long a run waits for its scheduled probes (twice: see run.py)
    out_dir: Path = Path("matrix-out")

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["out_dir"] = str(self.out_dir)
        for key in ("profiles", "transports", "modes"):
            out[key] = list(out[key])
        if self.days:
            out["days"] = {name: list(days) for name, days in self.days.items()}
        else:  # a single-day matrix.json keeps its version-1 shape
            del out["days"], out["reuse"]
        return out


@dataclass(slots=True)
class RunResult:
    """One run of one cell: how the transport came up, its downloads and the censor's events meanwhile."""

    index: int
    outcome: str = "error"
    how: str = ""
    started_at: float = 0.0  # epoch seconds
    start_error: dict[str, str] | None = None  # {"kind", "message", "log"}
    transfers: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # condensed censor events
    probes: list[dict[str, Any]] = field(default_factory=list)  # the active prober's probes and reactions
    time_to_first_failure_s: float | None = None
    block_lasts_s: float | None = None
    kbps: float | None = None
    symptom: str = ""
    log_dir: str = ""


@dataclass(slots=True)
class Cell:
    profile: str
    transport: str
    mode: str
    outcome: str = "error"
    how: str = ""
    expected: dict[str, Any] | None = None  # the profile's published outcome, with its citation
    agrees: bool | None = None  # None: nothing to compare (no expectation, or an error cell)
    evidence: dict[str, Any] = field(default_factory=dict)
    runs: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0
    as_of: str | None = None  # the day the profile was loaded for (a matrix at several days; None otherwise)
    reused_from: str | None = None  # not run: the cells of this earlier day, whose loaded profile is the same

    def to_json(self) -> dict[str, Any]:
        out = {
            "profile": self.profile,
            "transport": self.transport,
            "mode": self.mode,
            "outcome": self.outcome,
            "how": self.how,
            "expected": self.expected,
            "agrees": self.agrees,
            "evidence": self.evidence,
            "runs": [asdict(r) for r in self.runs],
            "seconds": round(self.seconds, 2),
        }
        if self.as_of is not None:
            out["as_of"] = self.as_of
        if self.reused_from is not None:
            out["reused_from"] = self.reused_from
        return out


__all__ = ["BASELINE", "Cell", "MatrixConfig", "OUTCOMES", "RunResult"]
