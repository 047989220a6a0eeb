"""Which probes a flagged connection schedules (I/O-free; the RNG and the clock are the caller's).

Following Alice et al., IMC 2020, section 3 (and the profile's ``active_probing`` data):

- replay-based probes are derived from the flagged connection's first data packet: ``R1`` identical, ``R2`` byte
  0 changed, ``R3`` bytes 0-7 and 62-63, ``R4`` byte 16, ``R5`` bytes 6 and 16 (section 3.2); only payloads whose
  length is in the profile's window are replayed ("virtually all ... between 160 and 700 bytes", section 4.2),
  with a probability interpolated from the profile's entropy weights (entropy 7.2 about 4 times as likely to
  be replayed as 3.0, Figure 6); types marked ``after_data`` wait until the server has answered a replay with
  data (section 4.2: R3/R4 only after the server responded to R1/R2);
- non-replay probes are random bytes of the profile's lengths (NR1 in trios around 8, 12, 16, 22, 33, 41, 49;
  NR2 exactly 221 bytes, about three times as common as NR1);
- the Tor probe (Winter and Lindskog, FOCI 2012; Ensafi et al., IMC 2015) is a TLS connection carrying a Tor
  VERSIONS cell;
- delays are drawn from the profile's delay distribution (section 3.5: >20% within 1 s, >50% within 1 min,
  >75% within 15 min, 0.28 s to 570 h), interpolated log-linearly between its quantile points and multiplied
  by ``time_scale``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from chokepoint.policy.probing import ProbeSet

#: Tor link protocol VERSIONS cell (tor-spec section 4.1): CircID 0 (2 bytes), command 7, length 6, versions 3-5.
TOR_VERSIONS_CELL = bytes.fromhex("0000070006000300040005")


@dataclass(slots=True)
class Probe:
    """One probe to send: to whom, what, when (``due``, the scheduler's clock) and from which TTL."""

    id: int
    kind: str  # replay | random | tor
    type: str  # R1.., NR1, NR2, tor
    server_ip: str
    server_port: int
    payload: bytes
    due: float
    ttl: int
    trigger: str = ""  # rule id that flagged the flow
    flow: str = ""  # the flagged flow (client:port -> server:port)
    after_data: bool = False  # replay type that waits for a data reaction to an earlier replay
    origin: bytes = field(default=b"", repr=False)  # the recorded first payload (replays)


def entropy(payload: bytes) -> float:
    """Shannon entropy of ``payload`` in bits per byte (0 for an empty payload)."""
    if not payload:
        return 0.0
    n = len(payload)
    return -sum(c / n * math.log2(c / n) for c in Counter(payload).values())


def sample_delay(quantiles: tuple[tuple[float, float], ...], rng: random.Random) -> float:
    """A delay in seconds drawn from the distribution given as (seconds, cumulative fraction) points, log-linear
    between points (the paper's CDF is drawn on a log axis)."""
    u = rng.random()
    for (s0, f0), (s1, f1) in zip(quantiles, quantiles[1:]):
        if u <= f1:
            if f1 == f0 or s1 == s0:
                return s1
            w = (u - f0) / (f1 - f0)
            return math.exp(math.log(s0) + w * (math.log(s1) - math.log(s0)))
    return quantiles[-1][0]


def interpolate(points: tuple[tuple[float, float], ...], x: float) -> float:
    """Piecewise-linear y(x) through ``points`` (sorted by x), constant beyond the ends; 1.0 with no points."""
    if not points:
        return 1.0
    pts = sorted(points)
    if x <= pts[0][0]:
        return pts[0][1]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return pts[-1][1]


def mutate(payload: bytes, changes: tuple[tuple[int, int], ...], rng: random.Random) -> bytes:
    """``payload`` with every byte in the inclusive ranges ``changes`` replaced by a different random value
    (positions past the end are ignored)."""
    data = bytearray(payload)
    for first, last in changes:
        for i in range(first, min(last, len(data) - 1) + 1):
            data[i] = (data[i] + rng.randrange(1, 256)) % 256
    return bytes(data)


class Planner:
    """Numbers probes and draws their delays, payloads and TTLs for one probe set."""

    def __init__(self, probe_set: ProbeSet, rng: random.Random, *, time_scale: float = 1.0, hops: int = 0) -> None:
        self.set = probe_set
        self.rng = rng
        self.time_scale = time_scale
        self.hops = hops  # routers between the prober and the server (the TTL is the server's view)
        self._next = 0

    def _probe(self, kind: str, type_: str, server: tuple[str, int], payload: bytes, now: float, **extra) -> Probe:
        self._next += 1
        lo, hi = self.set.ttl
        delay = sample_delay(self.set.delay_quantiles, self.rng) * self.time_scale
        return Probe(
            self._next,
            kind,
            type_,
            server[0],
            server[1],
            payload,
            now + delay,
            self.rng.randint(lo, hi) + self.hops,
            **extra,
        )

    def for_flow(
        self, first_payload: bytes, server: tuple[str, int], now: float, *, trigger: str, flow: str
    ) -> list[Probe]:
        """The probes one flagged connection schedules (replays of ``after_data`` types are returned with
        ``after_data=True``: the scheduler holds them until a replay got data back)."""
        probes: list[Probe] = []
        s = self.set
        lo, hi = s.replay_lengths
        if s.replay_types and lo <= len(first_payload) <= hi:
            if self.rng.random() < interpolate(s.entropy_weight, entropy(first_payload)):
                for rt in s.replay_types:
                    for _ in range(rt.count):
                        payload = mutate(first_payload, rt.changes, self.rng)
                        probes.append(
                            self._probe(
                                "replay",
                                rt.name,
                                server,
                                payload,
                                now,
                                trigger=trigger,
                                flow=flow,
                                after_data=rt.after_data,
                                origin=first_payload,
                            )
                        )
        for rp in s.random:
            for _ in range(rp.count):
                length = self.rng.choice(rp.lengths)
                payload = self.rng.randbytes(length)
                probes.append(self._probe("random", rp.name, server, payload, now, trigger=trigger, flow=flow))
        for _ in range(s.tor_count):
            probes.append(self._probe("tor", "tor", server, TOR_VERSIONS_CELL, now, trigger=trigger, flow=flow))
        return probes


__all__ = ["Planner", "Probe", "TOR_VERSIONS_CELL", "entropy", "interpolate", "mutate", "sample_delay"]
