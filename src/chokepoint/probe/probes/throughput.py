"""Throughput probe: download `/large?bytes=N` from the target with its real Host/SNI and with a control
Host/SNI over the same path, and compare the rates (kbit/s).

A throttling censor (e.g. Russia's 2021 Twitter slowdown, ~130-150 kbit/s per flow: Xue et al., "Throttling
Twitter: An Emerging Censorship Technique in Russia", IMC 2021) slows only the flows whose Host/SNI it
matches, so the control download shows what the path can do. The control goes first. A rate is the body
bytes over the time from sending the request to the last body byte (connect and TLS handshake excluded);
a download still running after `max_seconds` is cut off and its rate is computed over what arrived
(`complete: false`). A download that never delivered a body byte has no rate:
it is reported with its failure and no `ThroughputObservation` is made (a block is not a slow link).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chokepoint.probe.measurement import Failure, ThroughputObservation
from chokepoint.probe.probes import http
from chokepoint.probe.probes.common import ProbeContext, ProbeError, Target, join_host_port

__all__ = ["DEFAULT_MAX_SECONDS", "DEFAULT_SIZE", "Download", "ThroughputResult", "download", "measure"]

DEFAULT_SIZE = 1 << 20
DEFAULT_MAX_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Download:
    """One timed download."""

    host: str
    result: http.FetchResult
    total_bytes: int
    seconds: float
    complete: bool

    @property
    def failure(self) -> str | None:
        return None if self.complete else self.result.failure

    @property
    def usable(self) -> bool:
        """A rate sample: the whole body, or a 200 body cut off by the time budget. A block page, an
        error status or a body that ended early is not a slow download."""
        fetched = self.result.fetched
        if fetched is None or fetched.status != 200 or self.total_bytes == 0 or self.seconds <= 0:
            return False
        return self.complete or fetched.failure == Failure.GENERIC_TIMEOUT_ERROR

    @property
    def kbit_s(self) -> float | None:
        return round(self.total_bytes * 8 / self.seconds / 1000, 3) if self.seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "bytes": self.total_bytes,
            "seconds": self.seconds,
            "kbit_s": self.kbit_s,
            "complete": self.complete,
            "failure": self.result.failure,
        }


def download(
    ctx: ProbeContext,
    target: Target,
    ip: str,
    host: str,
    *,
    size: int = DEFAULT_SIZE,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> Download:
    """GET `/large?bytes=size` with Host/SNI `host` from `ip`, timing the body."""
    large = Target(target.url, target.scheme, target.host, target.port, f"/large?bytes={size}")
    arrivals: list[tuple[float, int]] = []
    result = http.fetch(
        ctx,
        large,
        ip,
        host=host,
        tags=("throughput",),
        body_limit=size,
        total_timeout=max_seconds,
        on_chunk=lambda n: arrivals.append((time.monotonic(), n)),
    )
    total = sum(n for _, n in arrivals)
    seconds = arrivals[-1][0] - arrivals[0][0] if total else 0.0
    fetched = result.fetched
    complete = fetched is not None and fetched.failure is None and fetched.status == 200 and total == size
    return Download(host, result, total, round(seconds, 6), complete)


@dataclass(frozen=True, slots=True)
class ThroughputResult:
    """Both downloads; `observation` only when both are rate samples (see `Download.usable`)."""

    target: str
    download: Download
    control: Download

    @property
    def observation(self) -> ThroughputObservation | None:
        if not (self.download.usable and self.control.usable):
            return None
        extra = {
            "kbit_s": self.download.kbit_s,
            "control_kbit_s": self.control.kbit_s,
            "complete": self.download.complete,
            "control_complete": self.control.complete,
            "failure": self.download.result.failure,
            "control_failure": self.control.result.failure,
            "host": self.download.host,
            "control_host": self.control.host,
        }
        return ThroughputObservation(
            self.target,
            self.download.total_bytes,
            self.download.seconds,
            self.control.total_bytes,
            self.control.seconds,
            extra,
        )

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "download": self.download.to_json(), "control": self.control.to_json()}


def measure(
    ctx: ProbeContext,
    target: Target,
    ip: str,
    control_host: str,
    *,
    size: int = DEFAULT_SIZE,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> ThroughputResult:
    """The control download, then the real one, from the same address and port."""
    if size < 1:
        raise ProbeError("the throughput download needs at least one byte")
    if not max_seconds > 0:
        raise ProbeError("the throughput time budget must be positive")
    control = download(ctx, target, ip, control_host, size=size, max_seconds=max_seconds)
    real = download(ctx, target, ip, target.host, size=size, max_seconds=max_seconds)
    return ThroughputResult(join_host_port(ip, target.port), real, control)
