"""Chokepoint's own observations, which OONI has no field for (`test_keys.x_chokepoint`): throughput and residual
blocking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chokepoint.probe.measurement.reader import MalformedMeasurement, _emit, _Reader


@dataclass(frozen=True, slots=True)
class ThroughputObservation:
    """A timed download through the censor and the same download over the control path."""

    target: str
    bytes: int
    seconds: float
    control_bytes: int
    control_seconds: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rate_bps(self) -> float | None:
        return self.bytes * 8 / self.seconds if self.seconds > 0 else None

    @property
    def control_rate_bps(self) -> float | None:
        return self.control_bytes * 8 / self.control_seconds if self.control_seconds > 0 else None

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ThroughputObservation:
        r = _Reader(obj, path)
        target, nbytes, cbytes = r.text("target"), r.integer("bytes"), r.integer("control_bytes")
        seconds, cseconds = r.number("seconds"), r.number("control_seconds")
        if target is None or nbytes is None or cbytes is None or seconds is None or cseconds is None:
            raise MalformedMeasurement(path, "needs target, bytes, seconds, control_bytes, control_seconds")
        if min(nbytes, cbytes, seconds, cseconds) < 0:
            raise MalformedMeasurement(path, "negative byte count or duration")
        return cls(target, nbytes, float(seconds), cbytes, float(cseconds), r.extra())

    def to_json(self) -> dict[str, Any]:
        known = {
            "target": self.target,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "control_bytes": self.control_bytes,
            "control_seconds": self.control_seconds,
        }
        return _emit(known, (), self.extra)


@dataclass(frozen=True, slots=True)
class ResidualObservation:
    """After a triggering request, how long innocuous connections to `target` kept failing."""

    target: str
    trigger: str
    duration_s: float
    failure: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ResidualObservation:
        r = _Reader(obj, path)
        target, trigger, duration = r.text("target"), r.text("trigger"), r.number("duration_s")
        if target is None or trigger is None or duration is None:
            raise MalformedMeasurement(path, "needs target, trigger and duration_s")
        if duration < 0:
            raise MalformedMeasurement(f"{path}.duration_s", "negative duration")
        return cls(target, trigger, float(duration), r.text("failure"), r.extra())

    def to_json(self) -> dict[str, Any]:
        known = {"target": self.target, "trigger": self.trigger, "duration_s": self.duration_s, "failure": self.failure}
        return _emit(known, ("failure",), self.extra)


@dataclass(frozen=True, slots=True)
class ChokepointObservations:
    """`test_keys.x_chokepoint`: throughput vs control, residual blocking, and the technique analysis."""

    throughput: tuple[ThroughputObservation, ...] = ()
    residual: tuple[ResidualObservation, ...] = ()
    techniques: tuple[Mapping[str, Any], ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, obj: Any, path: str) -> ChokepointObservations:
        r = _Reader(obj, path)
        techniques = r.array("techniques")
        if techniques is not None and not all(isinstance(t, dict) for t in techniques):
            raise MalformedMeasurement(f"{path}.techniques", "expected a list of objects")
        return cls(
            r.objects("throughput", ThroughputObservation.from_json) or (),
            r.objects("residual", ResidualObservation.from_json) or (),
            None if techniques is None else tuple(techniques),
            r.extra(),
        )

    def to_json(self) -> dict[str, Any]:
        known = {
            "throughput": [o.to_json() for o in self.throughput] or None,
            "residual": [o.to_json() for o in self.residual] or None,
            "techniques": None if self.techniques is None else [dict(t) for t in self.techniques],
        }
        return _emit(known, ("throughput", "residual", "techniques"), self.extra)
