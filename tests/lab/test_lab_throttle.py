"""The throttle's token bucket on the wire: with the lab veths' segmentation offloads off
(``topology.OFFLOADS_OFF``), the bytes a throttled download gets ahead of the policed rate stay near the
personality's ``burst_bytes`` (russia-tspu: 140 kbit/s, 15 kB; Xue et al., IMC 2021).

Before, TSO/GSO super-packets of up to 64 KB crossed the censor whole and HTB charged its bucket per
super-packet, so ~47 kB went through at line rate for a 15 kB bucket.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from chokepoint import lab
from chokepoint.enforce import Personality, parse_personality
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX
from chokepoint.policy.profile import load_profile

from ._conformance import capture
from ._lab import lab_guard  # noqa: F401 (fixture)

SITE = "198.19.0.10"
THROTTLE_ERA = "2021-06-01"  # russia-tspu.yaml: Twitter throttled 2021-03-10 to 2022-03-03, then blocked
BYTES = 100_000
ETHERNET = 14  # HTB on a veth charges skb->len, which includes the Ethernet header


def burst_ahead(packets: list[dict[str, Any]], src: str) -> tuple[float, float]:
    """(bytes ahead of the policed rate, steady rate in bytes/s) of the data ``src`` sent. The steady rate R
    is a least-squares line through the second half (in time) of the transfer; the bytes ahead are the most
    the cumulative bytes received ever exceed ``R (t - t0)``, t0 being the first data packet: what got through
    at line rate before the limit bit (a token bucket: its burst plus the one packet that overdraws it).
    Frame sizes, as HTB counts them."""
    data = sorted((p for p in packets if p.get("src_ip") == src and p.get("payload_len")), key=lambda p: p["time"])
    assert len(data) >= 8, f"too few data packets from {src}: {len(data)}"
    t0, total, points = data[0]["time"], 0, []
    for p in data:
        total += p["size"] + ETHERNET
        points.append((p["time"] - t0, total))
    half = [(t, c) for t, c in points if t >= points[-1][0] / 2]
    assert len(half) >= 4, f"too few packets in the steady half: {points}"
    mean_t = sum(t for t, _ in half) / len(half)
    mean_c = sum(c for _, c in half) / len(half)
    rate = sum((t - mean_t) * (c - mean_c) for t, c in half) / sum((t - mean_t) ** 2 for t, _ in half)
    return max(c - rate * t for t, c in points), rate


def test_burst_estimate_recovers_a_token_bucket() -> None:
    """A simulated HTB-like bucket (rate 17.5 kB/s, burst 15 kB) behind a sender that is always ready: the
    estimate is the burst plus the one packet that overdraws the bucket; with 64 KB super-packets it is far
    more, which is what the test on the wire must rule out."""

    def shaped(sizes: list[int], rate: float, burst: float) -> list[dict[str, Any]]:
        tokens, t, out = burst, 0.0, []
        for size in sizes:
            if tokens < 0:
                t += -tokens / rate
                tokens = 0.0
            out.append({"src_ip": SITE, "time": t, "size": size - ETHERNET, "payload_len": size - 66})
            tokens -= size
        return out

    rng = random.Random(5)
    wire = shaped([1514] * 80 + [rng.choice([600, 1514]) for _ in range(20)], 17_500, 15_000)
    ahead, rate = burst_ahead(wire + [{"src_ip": "198.18.0.2", "time": 0.5, "size": 40, "payload_len": 9}], SITE)
    assert 15_000 <= ahead <= 15_000 + 2 * 1514 and abs(rate - 17_500) < 0.02 * 17_500
    merged = shaped([65_000] + [1514] * 120, 17_500, 15_000)
    assert burst_ahead(merged, SITE)[0] > 60_000


def test_throttled_download_bursts_within_twice_burst_bytes(lab_guard) -> None:
    profile = load_profile("russia-tspu", as_of=THROTTLE_ERA)
    personality = profile.personality
    style = (personality if isinstance(personality, Personality) else parse_personality(personality)).throttle
    rate_kbps = float(dict(profile.policy.rule("tspu-twitter-throttle").params)["rate_kbps"])
    burst = style.burst_bytes
    assert burst and rate_kbps == 140

    if system.which("ethtool") is None:
        pytest.skip(
            "`ethtool` is not installed (Debian package ethtool): the lab keeps the veth offloads on "
            "and warns that throttle bursts overshoot burst_bytes"
        )
    state = lab.up("russia-tspu", seed=1, as_of=THROTTLE_ERA)
    for host in state.topology.hosts:
        for iface in host.interfaces:
            assert not any(topo.offloads(host.namespace, iface.name).values()), (host.namespace, iface.name)
    with capture(f"host {SITE} and tcp port 443") as wire:
        curl = system.run(
            [
                "curl",
                "-sS",
                "-m",
                "40",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                "--resolve",
                f"twitter.com:443:{SITE}",
                f"https://twitter.com/large?bytes={BYTES}",
            ],
            netns=f"{PREFIX}client",
            check=False,
            timeout=60,
        )
    assert curl.returncode == 0 and curl.stdout == str(BYTES).encode(), curl
    ahead, rate = burst_ahead(wire.packets, SITE)
    detail = f"{ahead:.0f} B ahead of the rate, steady {rate * 8 / 1000:.1f} kbit/s; burst_bytes {burst}"
    print(detail)
    assert 0.85 * rate_kbps <= rate * 8 / 1000 <= 1.15 * rate_kbps, detail
    assert 0.5 * burst <= ahead <= 2 * burst, detail
