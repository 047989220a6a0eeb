"""With the far side's distance (a profile's ``distance``, ``lab up``'s default; ``--distance`` adds the routers),
the on-path censor wins its races as the real one does: dig gets the forged answer first, curl's connection is
reset before the server's answer. Without the distance (``--flat``) the same censor loses most of them
(bench/mirror_races.py measures both over 200 tries)."""

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


@pytest.mark.parametrize(
    "profile, url, host",
    [
        (
            "turkmenistan",
            "http://198.19.0.10/",
            "twitter.com",
        ),  # tm-http-reset (validate: mirror-turkmenistan-http-reset)
        ("tsg", "https://blocked.com/", "blocked.com"),  # tsg-sni-reset (validate: mirror-tsg-sni-reset)
    ],
)
def test_mirror_injection_wins_with_the_default_distance(lab_guard, profile, url, host) -> None:
    """``lab up`` without distance options: the profile's far-side delay, no routers; the injected RST wins."""
    reason = tools_reason(["curl"], "the race tests")
    if reason:
        pytest.skip(reason)
    from chokepoint.policy import load_profile

    state = lab.up(profile, "mirror")
    assert state.geometry["delay_ms"] == load_profile(profile).meta.distance["rtt_ms"] / 2
    assert (state.geometry["hops_client"], state.geometry["hops_server"]) == (0, 0)
    target = (
        ["-H", f"Host: {host}", url] if url.startswith("http:") else ["-k", "--resolve", f"{host}:443:198.19.0.10", url]
    )
    reset = 0
    for _ in range(TRIES):
        curl = system.run(["curl", "-s", "-m", "3", "-o", "/dev/null", *target], netns=CLIENT, check=False, timeout=10)
        reset += curl.returncode in (35, 52, 56)  # TLS handshake / empty reply / reset: the injection came first
    print(f"{profile} mirror, {state.geometry['delay_ms']:g} ms far side by default: RST won {reset}/{TRIES}")
    assert reset / TRIES >= FLOOR
