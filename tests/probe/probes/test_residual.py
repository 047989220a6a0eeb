"""Residual blocking: a censor that, after a trigger, resets every connection for a while."""

from __future__ import annotations

import pytest

from chokepoint.probe.measurement import Failure
from chokepoint.probe.probes import residual
from chokepoint.probe.probes.common import ProbeContext, ProbeError, parse_target
from tests.probe.probes._servers import LOOPBACK, CensorProxy


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_residual_block_is_timed(lab, servers, scheme):
    ctx = ProbeContext(timeout=5, cafile=lab.ca_file)
    upstream = lab.http_port if scheme == "http" else lab.https_port
    censor = servers(CensorProxy(upstream, {"blocked.test": "residual"}, residual_seconds=1.0))
    result = residual.measure(
        ctx,
        parse_target(f"{scheme}://blocked.test:{censor.port}/"),
        LOOPBACK,
        "control.test",
        interval=0.2,
        max_seconds=20,
    )
    trigger = result.trigger_attempt
    assert trigger.failure == Failure.CONNECTION_RESET and result.ended
    clean = result.clean
    failed = [a for a in clean if a.failure is not None]
    success = next(a for a in clean if a.failure is None)
    assert failed and all(a.failure == Failure.CONNECTION_RESET for a in failed)
    assert len(failed) == censor.residual_resets  # every failed clean request was a residual reset
    # causality against the censor's own clock (same process, same monotonic clock):
    until = censor.residual_until - ctx.clock.zero
    assert failed[-1].t0 < until <= success.t
    assert 0 < result.lower_bound_s <= result.duration_s
    observation = result.observation
    assert observation.duration_s == result.duration_s and observation.failure == Failure.CONNECTION_RESET
    assert observation.extra["ended"] is True and observation.extra["trigger_failure"] == Failure.CONNECTION_RESET
    assert observation.target == f"127.0.0.1:{censor.port}" and "blocked.test" in observation.trigger


def test_no_residual_after_a_plain_reset(ctx, lab, servers):
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "reset"}))
    result = residual.measure(
        ctx, parse_target(f"http://blocked.test:{censor.port}/"), LOOPBACK, "control.test", interval=0.2, max_seconds=10
    )
    assert result.trigger_attempt.failure == Failure.CONNECTION_RESET
    assert result.duration_s == 0.0 and result.ended and len(result.clean) == 1
    assert result.observation.duration_s == 0.0


def test_block_that_never_ends(lab, servers):
    ctx = ProbeContext(timeout=5, cafile=lab.ca_file)
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "residual"}, residual_seconds=600))
    result = residual.measure(
        ctx,
        parse_target(f"http://blocked.test:{censor.port}/"),
        LOOPBACK,
        "control.test",
        interval=0.2,
        max_seconds=1.0,
    )
    assert not result.ended and result.duration_s > 0 and result.observation.extra["ended"] is False
    again = residual.measure(
        ctx,
        parse_target(f"http://blocked.test:{censor.port}/"),
        LOOPBACK,
        "control.test",
        interval=0.2,
        max_seconds=1.0,
    )
    assert not again.measured and again.observation is None  # still blocked: no clean baseline
    assert all(a.role == "baseline" for a in again.attempts)


def test_bad_arguments_cannot_run(ctx, lab):
    with pytest.raises(ProbeError):
        residual.measure(ctx, parse_target(f"http://x.test:{lab.http_port}/"), LOOPBACK, "c.test", interval=0)
