"""Fully-encrypted first packets to the lab echo service, directly and through a FET-blocking censor."""

from __future__ import annotations

import random
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.dissect.fet import VARIANTS, classify_first_packet
from chokepoint.probe.measurement import Failure
from chokepoint.probe.probes import fet
from chokepoint.probe.probes.common import ProbeError
from tests.probe.probes._servers import LOOPBACK, FetCensor


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(1, 1400), variant=st.sampled_from(sorted(VARIANTS)))
def test_payloads_are_what_they_claim(seed, size, variant):
    rng = random.Random(seed)
    payload = fet.encrypted_payload(rng, size, VARIANTS[variant])
    assert len(payload) == size and classify_first_packet(payload, variant=VARIANTS[variant]).fully_encrypted
    control = fet.control_payload(rng, size, VARIANTS[variant])
    assert len(control) == size and not classify_first_packet(control, variant=VARIANTS[variant]).fully_encrypted


def test_echo_comes_back(ctx, lab):
    result = fet.probe_fet(ctx, LOOPBACK, lab.echo_port, attempts=3, seed=7)
    assert not result.blocked and result.failure is None
    assert result.control.echo_ok and len(result.attempts) == 3 and all(a.echo_ok for a in result.attempts)
    assert result.control.exemptions and not result.attempts[0].exemptions
    assert result.target == f"127.0.0.1:{lab.echo_port}"
    as_json = result.to_json()
    assert as_json["blocked"] is False and as_json["attempts"][0]["tcp_connect"]["status"]["success"] is True


def test_fet_censor_is_detected(short_ctx, lab, servers):
    censor = servers(FetCensor(lab.echo_port))
    result = fet.probe_fet(short_ctx, LOOPBACK, censor.port, attempts=5, seed=1)
    assert result.control.echo_ok  # the exempt packet passes the same censor
    assert result.blocked and result.failure == Failure.GENERIC_TIMEOUT_ERROR
    assert len(result.attempts) == 1 and result.attempts[0].echoed == 0 and censor.blocked == 1


def test_nothing_to_echo_is_not_a_block(short_ctx):
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
    result = fet.probe_fet(short_ctx, LOOPBACK, port, attempts=2, seed=3)
    assert not result.blocked and result.control.failure == Failure.CONNECTION_REFUSED
    assert result.failure == Failure.CONNECTION_REFUSED


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"size": 0}, {"size": 5000}])
def test_bad_arguments_cannot_run(ctx, lab, kwargs):
    with pytest.raises(ProbeError):
        fet.probe_fet(ctx, LOOPBACK, lab.echo_port, **kwargs)
