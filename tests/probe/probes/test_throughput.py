"""Throughput with the real vs the control Host through a Host/SNI-keyed throttling censor."""

from __future__ import annotations

import pytest

from chokepoint.lab.services import app
from chokepoint.probe.measurement import Failure
from chokepoint.probe.probes import throughput
from chokepoint.probe.probes.common import ProbeError, parse_target
from tests.probe.probes._servers import LOOPBACK, CensorProxy

SIZE = 32 * 1024
CHUNK, DELAY = 512, 0.05  # at most 512 B per 50 ms: <= 82 kbit/s, by construction


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_throttled_vs_control(ctx, lab, servers, scheme):
    upstream = lab.http_port if scheme == "http" else lab.https_port
    censor = servers(CensorProxy(upstream, {"slow.test": "throttle"}, throttle_chunk=CHUNK, throttle_delay=DELAY))
    target = parse_target(f"{scheme}://slow.test:{censor.port}/")
    result = throughput.measure(ctx, target, LOOPBACK, "control.test", size=SIZE, max_seconds=60)
    real, control = result.download, result.control
    assert real.complete and control.complete and real.total_bytes == control.total_bytes == SIZE
    assert real.result.fetched.body == app.large_body(SIZE)
    # the censor sleeps DELAY after each CHUNK: the transfer cannot be faster than that
    assert real.seconds >= (SIZE // CHUNK - 1) * DELAY
    assert real.kbit_s <= CHUNK * 8 / DELAY / 1000 * SIZE / (SIZE - CHUNK)
    observation = result.observation
    assert observation.target == f"127.0.0.1:{censor.port}" and observation.bytes == SIZE
    assert observation.rate_bps == pytest.approx(real.kbit_s * 1000, rel=1e-3)
    assert observation.extra["host"] == "slow.test" and observation.extra["control_host"] == "control.test"
    assert control.result.fetched.transaction.request.headers["Host"] == f"control.test:{censor.port}"
    assert censor.triggers == {"slow.test": 1}  # the control download was not throttled


def test_time_budget_cuts_the_download(ctx, lab, servers):
    censor = servers(CensorProxy(lab.http_port, {"slow.test": "throttle"}, throttle_chunk=CHUNK, throttle_delay=DELAY))
    target = parse_target(f"http://slow.test:{censor.port}/")
    real = throughput.download(ctx, target, LOOPBACK, "slow.test", size=10 * SIZE, max_seconds=0.6)
    assert not real.complete and 0 < real.total_bytes < 10 * SIZE
    assert real.result.failure == Failure.GENERIC_TIMEOUT_ERROR and real.kbit_s > 0


def test_blocked_download_has_no_rate(short_ctx, lab, servers):
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "reset"}))
    result = throughput.measure(
        short_ctx, parse_target(f"http://blocked.test:{censor.port}/"), LOOPBACK, "control.test", size=SIZE
    )
    assert result.observation is None
    assert result.download.result.failure == Failure.CONNECTION_RESET and result.control.complete
    assert result.to_json()["download"]["failure"] == Failure.CONNECTION_RESET


@pytest.mark.parametrize("kwargs", [{"size": 0}, {"max_seconds": 0}])
def test_bad_arguments_cannot_run(ctx, lab, kwargs):
    with pytest.raises(ProbeError):
        throughput.measure(ctx, parse_target(f"http://x.test:{lab.http_port}/"), LOOPBACK, "c.test", **kwargs)


def test_a_blockpage_is_not_a_slow_download(ctx, lab, servers):
    """A short block page arrives fast but is not the body asked for: no rate, no throttling verdict."""
    censor = servers(CensorProxy(lab.http_port, {"blocked.test": "blockpage"}, blockpage=b"Blocked."))
    result = throughput.measure(
        ctx, parse_target(f"http://blocked.test:{censor.port}/"), LOOPBACK, "control.test", size=SIZE
    )
    assert result.download.total_bytes == len(b"Blocked.") and not result.download.usable
    assert result.control.usable and result.observation is None
