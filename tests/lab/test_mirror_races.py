"""With the far side's distance (gfw's ``distance``, ``lab up --distance``), the on-path censor wins its races as
the real one does: dig gets the forged answer first, curl's connection is reset before the server's answer.
Without the distance the same censor loses most of them (bench/mirror_races.py measures both over 200 tries)."""

from __future__ import annotations

import ipaddress

import pytest

from chokepoint import lab
from chokepoint.lab import system
from chokepoint.lab.instance import PREFIX

from ._lab import lab_guard, tools_reason  # noqa: F401 (fixture)

TRIES = 30
FLOOR = 0.95
CLIENT = f"{PREFIX}client"


def test_mirror_injection_wins_with_distance(lab_guard) -> None:
    reason = tools_reason(["dig", "curl"], "the race tests")
    if reason:
        pytest.skip(reason)
    state = lab.up(
        "gfw",
        "mirror",
        distance=True,
        params={"gfw-http-host-reset.probability": "1", "gfw-http-host-reset.residual_s": "0"},
    )
    assert state.geometry["delay_ms"] > 0
    forged = 0
    for _ in range(TRIES):
        dig = system.run(
            ["dig", "+short", "+tries=1", "+time=2", "www.google.com", "@198.19.0.53"], netns=CLIENT, check=False
        )
        first = dig.stdout.decode().split()
        forged += bool(first) and ipaddress.ip_address(first[0]) not in ipaddress.ip_network("198.19.0.0/16")
    reset = 0
    for _ in range(TRIES):
        curl = system.run(
            ["curl", "-s", "-m", "3", "-o", "/dev/null", "-H", "Host: www.google.com", "http://198.19.0.10/"],
            netns=CLIENT,
            check=False,
            timeout=10,
        )
        reset += curl.returncode in (52, 56)  # empty reply / connection reset: the injection came first
    print(f"mirror wins with {state.geometry['delay_ms']:g} ms far side: DNS {forged}/{TRIES}, RST {reset}/{TRIES}")
    assert forged / TRIES >= FLOOR
    assert reset / TRIES >= FLOOR
