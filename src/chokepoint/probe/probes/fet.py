"""Fully-encrypted-traffic probe: send a random first packet that the GFW's FET test would flag to a TCP
echo service (RFC 862) and see whether the echo comes back.

Wu et al., "How the Great Firewall of China Detects and Blocks Fully Encrypted Traffic", USENIX Security
2023: the censor looks at the first client data packet; if no exemption (Ex1-Ex5, see
`chokepoint.dissect.fet`) applies it may drop the connection (probabilistically, then residually per server
port). The probe first sends a *control* packet of the same length that is exempt (printable text), then
up to `attempts` fully-encrypted packets, each on a new connection, stopping at the first one that does
not come back (later attempts would only measure the residual block). The payloads are checked with
`chokepoint.dissect.fet.classify_first_packet` (the variant is a knob) before they are sent.
"""

from __future__ import annotations

import random
import string
import time
from dataclasses import dataclass
from typing import Any

from chokepoint.dissect.fet import PAPER, FetVariant, classify_first_packet
from chokepoint.probe.measurement import TCPConnect, failure_from_exception
from chokepoint.probe.probes import tcp
from chokepoint.probe.probes.common import ProbeContext, ProbeError, join_host_port

__all__ = ["FetAttempt", "FetObservation", "control_payload", "encrypted_payload", "probe_fet"]

DEFAULT_SIZE = 256
DEFAULT_ATTEMPTS = 5
_TEXT = (string.ascii_letters + string.digits + " ").encode()


def encrypted_payload(rng: random.Random, size: int, variant: FetVariant = PAPER) -> bytes:
    """Uniformly random bytes that no exemption covers (rejection sampling; nearly every draw passes)."""
    if size < 1:
        raise ProbeError("the FET payload needs at least one byte")
    for _ in range(1000):
        payload = rng.randbytes(size)
        if classify_first_packet(payload, variant=variant).fully_encrypted:
            return payload
    raise ProbeError(f"could not draw a {size}-byte payload the {variant.name} FET test treats as encrypted")


def control_payload(rng: random.Random, size: int, variant: FetVariant = PAPER) -> bytes:
    """Printable text of the same length: exempt (Ex2/Ex3), so the FET test never flags it."""
    payload = bytes(rng.choice(_TEXT) for _ in range(size))
    if classify_first_packet(payload, variant=variant).fully_encrypted:  # pragma: no cover - Ex3 always holds
        raise ProbeError("the control payload is not exempt")
    return payload


@dataclass(frozen=True, slots=True)
class FetAttempt:
    """One connection: what was sent, how much came back, and how it ended."""

    kind: str  # "control" or "encrypted"
    connect: TCPConnect
    sent: int
    echoed: int
    failure: str | None
    exemptions: tuple[str, ...]
    popcount_per_byte: float
    t0: float
    t: float

    @property
    def echo_ok(self) -> bool:
        return self.failure is None and self.echoed == self.sent

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tcp_connect": self.connect.to_json(),
            "sent": self.sent,
            "echoed": self.echoed,
            "echo_ok": self.echo_ok,
            "failure": self.failure,
            "exemptions": list(self.exemptions),
            "popcount_per_byte": round(self.popcount_per_byte, 4),
            "t0": self.t0,
            "t": self.t,
        }


@dataclass(frozen=True, slots=True)
class FetObservation:
    """The control attempt and the encrypted attempts against one echo endpoint."""

    target: str
    variant: str
    control: FetAttempt
    attempts: tuple[FetAttempt, ...]

    @property
    def blocked(self) -> bool:
        """The exempt packet came back and a fully-encrypted one did not."""
        return self.control.echo_ok and any(not a.echo_ok for a in self.attempts)

    @property
    def failure(self) -> str | None:
        """How the first failed encrypted attempt ended (None when all came back)."""
        return next((a.failure or "echo_mismatch" for a in self.attempts if not a.echo_ok), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "variant": self.variant,
            "blocked": self.blocked,
            "failure": self.failure,
            "control": self.control.to_json(),
            "attempts": [a.to_json() for a in self.attempts],
        }


def _echo(ctx: ProbeContext, ip: str, port: int, payload: bytes, kind: str, variant: FetVariant) -> FetAttempt:
    verdict = classify_first_packet(payload, variant=variant)
    t0 = ctx.clock.now()
    connection = tcp.connect(ctx, ip, port, tags=(f"fet={kind}",))
    echoed, failure = 0, connection.record.failure
    if connection.sock is not None:
        sock = connection.sock
        deadline = time.monotonic() + ctx.timeout
        try:
            sock.sendall(payload)  # one write: the first data segment carries it (it fits one MSS)
            while echoed < len(payload):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the echo did not come back in time")
                sock.settimeout(remaining)
                chunk = sock.recv(len(payload) - echoed)
                if not chunk:
                    raise EOFError("the connection closed before the echo came back")
                if chunk != payload[echoed : echoed + len(chunk)]:
                    failure = "unknown_failure: the echo differs from what was sent"
                    break
                echoed += len(chunk)
        except (OSError, EOFError) as exc:
            failure = failure_from_exception(exc)
        finally:
            sock.close()
    return FetAttempt(
        kind,
        connection.record,
        len(payload),
        echoed,
        failure,
        verdict.exemptions,
        verdict.popcount_per_byte,
        t0,
        ctx.clock.now(),
    )


def probe_fet(
    ctx: ProbeContext,
    ip: str,
    port: int,
    *,
    size: int = DEFAULT_SIZE,
    attempts: int = DEFAULT_ATTEMPTS,
    seed: int | None = None,
    variant: FetVariant = PAPER,
) -> FetObservation:
    """Control (exempt) packet first, then fully-encrypted packets until one fails or `attempts` are done."""
    if attempts < 1:
        raise ProbeError("the FET probe needs at least one attempt")
    if not 1 <= size <= 1400:
        raise ProbeError("the FET payload size must be 1-1400 bytes (one segment)")
    rng = random.Random(seed)
    control = _echo(ctx, ip, port, control_payload(rng, size, variant), "control", variant)
    done: list[FetAttempt] = []
    for _ in range(attempts):
        attempt = _echo(ctx, ip, port, encrypted_payload(rng, size, variant), "encrypted", variant)
        done.append(attempt)
        if not attempt.echo_ok:
            break
    return FetObservation(join_host_port(ip, port), variant.name, control, tuple(done))
