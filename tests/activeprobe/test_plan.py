"""Probe planning: the documented delay distribution, byte positions, lengths and staging."""

from __future__ import annotations

import random

from chokepoint.activeprobe.plan import TOR_VERSIONS_CELL, Planner, entropy, interpolate, mutate, sample_delay
from chokepoint.policy import load_profile

SS = load_profile("gfw").active_probing.probe_sets["shadowsocks"]


def test_delays_follow_the_papers_cdf():
    rng = random.Random(7)
    delays = sorted(sample_delay(SS.delay_quantiles, rng) for _ in range(20000))
    share = lambda limit: sum(d <= limit for d in delays) / len(delays)  # noqa: E731
    # Alice et al. 3.5: >20% within 1 s, >50% within 1 min, >75% within 15 min; 0.28 s to 570 h
    assert 0.18 < share(1.0) < 0.22 and 0.48 < share(60) < 0.52 and 0.73 < share(900) < 0.77
    assert delays[0] >= 0.28 and delays[-1] <= 570 * 3600


def test_mutate_changes_exactly_the_given_positions():
    rng = random.Random(1)
    payload = bytes(range(100))
    for changes in (((0, 0),), ((0, 7), (62, 63)), ((16, 16),), ((6, 6), (16, 16))):
        out = mutate(payload, changes, rng)
        want = {i for a, b in changes for i in range(a, b + 1)}
        assert {i for i in range(100) if out[i] != payload[i]} == want
    assert mutate(b"abc", ((62, 63),), rng) == b"abc"  # past the end: nothing


def test_entropy_and_interpolation():
    assert entropy(b"") == 0 and entropy(b"aaaa") == 0 and abs(entropy(bytes(range(256))) - 8) < 1e-9
    assert interpolate(((3.0, 0.2), (7.2, 0.8)), 7.2) == 0.8 and interpolate(((3.0, 0.2), (7.2, 0.8)), 0) == 0.2
    assert abs(interpolate(((3.0, 0.2), (7.2, 0.8)), 5.1) - 0.5) < 1e-9


def test_a_flagged_connection_schedules_replays_random_probes_and_staged_types():
    rng = random.Random(3)
    planner = Planner(SS, rng, time_scale=1.0, hops=2)
    payload = random.Random(0).randbytes(300)  # high entropy, in the 160-700 window
    probes = []
    for _ in range(50):
        probes += planner.for_flow(payload, ("198.19.64.10", 443), 100.0, trigger="t", flow="f")
    types = {p.type for p in probes}
    assert {"R1", "R2", "R3", "R4", "R5", "NR1", "NR2"} == types
    assert all(p.after_data for p in probes if p.type in ("R3", "R4", "R5"))
    assert all(p.payload == payload for p in probes if p.type == "R1")
    assert all(len(p.payload) == 221 for p in probes if p.type == "NR2")
    assert all(48 <= p.ttl <= 52 for p in probes)  # 46-50 at the server, 2 hops away
    nr2 = sum(p.type == "NR2" for p in probes)
    nr1 = sum(p.type == "NR1" for p in probes)
    assert nr2 == 3 * nr1  # NR2 about three times as common as all NR1 (Figure 3)
    short = planner.for_flow(payload[:100], ("198.19.64.10", 443), 100.0, trigger="t", flow="f")
    assert not any(p.kind == "replay" for p in short)  # outside the replayed lengths


def test_the_tor_probe_is_a_versions_cell():
    tor = load_profile("gfw").active_probing.probe_sets["tor"]
    (probe,) = Planner(tor, random.Random(1)).for_flow(b"", ("198.19.65.15", 443), 0.0, trigger="t", flow="f")
    assert probe.kind == "tor" and probe.payload == TOR_VERSIONS_CELL and probe.payload[2] == 7
