"""The fully-encrypted rule agrees with Algorithm 1 of Wu et al. (USENIX Security 2023) on 100k payloads.

The oracle (``fet_oracle``) is written from the paper's description, separately from
``chokepoint.dissect.fet``; the corpus mixes uniformly random payloads (lengths 1-1500) with crafted boundary
cases: average popcount exactly at and one bit around 3.4 and 4.6, printable prefixes of 5/6/7 bytes,
printable shares at and around 50%, printable runs of 19-22 bytes, TLS/HTTP starts and near misses. Then the
gfw-2023 profile itself (engine, dispatcher, policy) decides a sample of them as real TCP flows.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator

from chokepoint.dissect.fet import classify_first_packet
from chokepoint.policy.profile import load_profile
from tests.profiles import fet_oracle
from tests.profiles._scenarios import CLIENT, AlwaysRng, tcp_flow

RANDOM_PAYLOADS = 50_000
CRAFTED_PER_KIND = 6_250  # 8 kinds: 50,000 crafted payloads
NON_PRINTABLE = [b for b in range(256) if not 0x20 <= b <= 0x7E]
PRINTABLE = list(range(0x20, 0x7F))
BY_POPCOUNT = {k: [b for b in NON_PRINTABLE if bin(b).count("1") == k] for k in range(9)}


def _with_popcount(rng: random.Random, n: int, ones: int) -> bytes:
    """``n`` non-printable bytes with exactly ``ones`` set bits in total (0 <= ones <= 8n): per-byte bit
    counts drawn binomially around the target average, then nudged one bit at a time to the exact total."""
    p = ones / (8 * n)
    weights = [math.comb(8, k) * p**k * (1 - p) ** (8 - k) for k in range(9)]
    counts = rng.choices(range(9), weights=weights, k=n)
    missing = ones - sum(counts)
    while missing:
        i = rng.randrange(n)
        if missing > 0 and counts[i] < 8:
            counts[i] += 1
            missing -= 1
        elif missing < 0 and counts[i] > 0:
            counts[i] -= 1
            missing += 1
    values = {k: iter(rng.choices(BY_POPCOUNT[k], k=counts.count(k))) for k in set(counts)}
    return bytes(next(values[k]) for k in counts)


def _non_printable(rng: random.Random, n: int) -> bytearray:
    return bytearray(rng.choices(NON_PRINTABLE, k=n))


def _printable(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choices(PRINTABLE, k=n))


def popcount_boundaries(rng: random.Random) -> bytes:
    n = 5 * rng.randint(1, 300)  # 3.4 n and 4.6 n are whole numbers of bits
    bound = rng.choice((17, 23)) * n // 5
    return _with_popcount(rng, n, bound + rng.randint(-2, 2))


def popcount_middle(rng: random.Random) -> bytes:
    n = rng.randint(1, 1500)
    return _with_popcount(rng, n, rng.randint(int(3.3 * n), int(4.7 * n) + 1) if n > 1 else rng.randint(0, 8))


def printable_prefix(rng: random.Random) -> bytes:
    k = rng.choice((5, 6, 7))
    return _printable(rng, k) + bytes(_non_printable(rng, rng.randint(10, 600)))


def printable_half(rng: random.Random) -> bytes:
    n = 2 * rng.randint(5, 700)
    wanted = n // 2 + rng.choice((-1, 0, 1))
    data = _non_printable(rng, n)
    slots = [i for i in range(1, n) if i % 20]  # never 20 printable in a row, never at byte 0
    chosen = rng.sample(slots, min(wanted, len(slots)))
    for i, value in zip(chosen, _printable(rng, len(chosen))):
        data[i] = value
    return bytes(data)


def printable_run(rng: random.Random) -> bytes:
    n = rng.randint(60, 1500)
    data = _non_printable(rng, n)
    length = rng.choice((19, 20, 21, 22))
    start = rng.randint(1, n - length)
    data[start : start + length] = _printable(rng, length)
    return bytes(data)


PREFIXES = (
    [bytes([0x16, 0x03, v]) for v in range(0x10)]
    + [bytes([0x17, 0x03, v]) for v in range(0x10)]
    + [
        b"\x15\x03\x01",
        b"\x16\x03\x10",
        b"\x17\x03\x11",
        b"\x16\x02\x01",
        b"\x14\x03\x03",
        b"\x16\x03",
        b"GET ",
        b"PUT ",
        b"POST ",
        b"HEAD ",
        b"GET",
        b"POST",
        b"DELETE ",
        b"get ",
        b"CONNECT ",
        b"OPTIONS ",
    ]
)


def protocol_start(rng: random.Random) -> bytes:
    return rng.choice(PREFIXES) + bytes(_non_printable(rng, rng.randint(0, 800)))


def mixed(rng: random.Random) -> bytes:
    n = rng.randint(1, 1500)
    data = bytearray(rng.randbytes(n))
    chosen = rng.sample(range(n), round(rng.random() * n))
    for i, value in zip(chosen, _printable(rng, len(chosen))):
        data[i] = value
    return bytes(data)


def short(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 10))


CRAFTED = (
    popcount_boundaries,
    popcount_middle,
    printable_prefix,
    printable_half,
    printable_run,
    protocol_start,
    mixed,
    short,
)


def corpus(seed: int = 2023) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for _ in range(RANDOM_PAYLOADS):
        yield "random", rng.randbytes(rng.randint(1, 1500))
    for make in CRAFTED:
        for _ in range(CRAFTED_PER_KIND):
            yield make.__name__, make(rng)


def test_engine_fet_test_agrees_with_the_oracle_on_100k_payloads() -> None:
    seen = Counter()
    sole = Counter()
    total = 0
    for kind, payload in corpus():
        expected = fet_oracle.exemptions(payload)
        result = classify_first_packet(payload)
        assert result.exemptions == expected, (kind, payload.hex())
        assert result.fully_encrypted == (not expected), (kind, payload.hex())
        total += 1
        seen[(kind, bool(expected))] += 1
        if len(expected) == 1:
            sole[expected[0]] += 1
    assert total >= 100_000
    # the corpus reaches both sides of every boundary, and every exemption alone
    for kind in ("popcount_boundaries", "printable_prefix", "printable_half", "printable_run", "protocol_start"):
        assert seen[(kind, True)] and seen[(kind, False)], (kind, seen)
    assert all(sole[ex] for ex in ("ex1", "ex2", "ex3", "ex4", "ex5")), sole
    print(f"\n{total} payloads; blocked/exempt by kind: {dict(seen)}")


def test_the_oracle_reads_the_paper_boundaries() -> None:
    """Hand-made cases of the paper's thresholds (the oracle itself can be wrong too)."""
    seventeen_bits = bytes([0x07, 0x07, 0x07, 0x0F, 0x0F])  # 3+3+3+4+4 = 17 bits in 5 bytes: exactly 3.4
    assert fet_oracle.exemptions(seventeen_bits) == ("ex1",)
    eighteen_bits = bytes([0x07, 0x07, 0x0F, 0x0F, 0x0F])  # 3.6: none of the printable rules apply
    assert fet_oracle.exemptions(eighteen_bits) == ()
    assert fet_oracle.exemptions(bytes([0x1F, 0x1F, 0x1F, 0x1F, 0xFF])) == ("ex1",)  # 5+5+5+5+8 = 28 bits: 5.6
    assert "ex2" in fet_oracle.exemptions(b"abcdef" + bytes([0x8F] * 40))
    assert "ex2" not in fet_oracle.exemptions(b"abcde" + bytes([0x8F] * 40))
    assert "ex4" in fet_oracle.exemptions(bytes([0x8F] * 30) + b"a" * 21 + bytes([0x8F] * 30))
    assert "ex4" not in fet_oracle.exemptions(bytes([0x8F] * 30) + b"a" * 20 + bytes([0x8F] * 30))
    assert fet_oracle.exemptions(b"\x17\x03\x0f" + bytes([0x8F, 0x8E] * 20)) == ("ex5",)
    assert fet_oracle.exemptions(b"\x17\x03\x10" + bytes([0x8F, 0x8E] * 20)) == ()


#: A server in the lab's "vps" range: the block applied to data-centre ranges only (Wu et al. 2023).
VPS = "198.19.64.10"


def test_gfw_2023_profile_drops_exactly_what_the_oracle_blocks() -> None:
    """A sample of the corpus as real TCP flows to a data-centre server through the engine with the gfw-2023
    profile (every probabilistic draw firing): a flow is dropped by gfw-fet-drop exactly when the oracle
    blocks its first data packet."""
    from chokepoint.engine import Engine
    from chokepoint.packet.decode import Decoder
    from chokepoint.packet.pcap import Frame

    profile = load_profile("gfw-2023")
    rng = random.Random(7)
    sample = [rng.randbytes(rng.randint(1, 1500)) for _ in range(80)]
    sample += [make(rng) for make in CRAFTED for _ in range(40)]
    packets = []
    for i, payload in enumerate(sample):
        packets += tcp_flow(CLIENT, VPS, 20000 + i, 8388, [payload], 1_000.0 + i)
    decoder = Decoder.from_settings(profile.engine)
    engine = Engine(profile, rng=AlwaysRng())
    flows = []
    for index, (ts, raw) in enumerate(sorted(packets, key=lambda p: p[0]), 1):
        flows += engine.process(decoder.decode(Frame(ts, 101, raw, len(raw), index)))
    flows += engine.finish()
    by_port = {f.client_port: f for f in flows}
    blocked = 0
    for i, payload in enumerate(sample):
        flow = by_port[20000 + i]
        dropped = flow.verdict is not None and flow.verdict.rule_id == "gfw-fet-drop"
        assert dropped == fet_oracle.blocked(payload), payload.hex()
        blocked += dropped
    assert 0 < blocked < len(sample)
