"""Reaction signatures (Alice et al., IMC 2020, section 5) on the reaction patterns the paper tabulates."""

from __future__ import annotations

from chokepoint.activeprobe.confirm import Reaction, decide

ALL = ("replay-data-only", "length-threshold-close", "content-dependent-close", "tor-handshake")


def r(type_, kind, length, reaction, back=0):
    return Reaction(type_, kind, length, reaction, back)


def test_libev_stream_cipher_t_f_mixture_is_confirmed():
    reactions = [r("NR2", "random", 221, "timeout")] * 5 + [r("NR2", "random", 221, "fin")]
    assert decide(reactions, ALL, 4)[0] == "content-dependent-close"


def test_libev_3_3_aead_always_timing_out_is_not():
    reactions = [r("R1", "replay", 200, "timeout"), r("R2", "replay", 200, "timeout")]
    reactions += [r("NR1", "random", n, "timeout") for n in (7, 8, 9, 48, 49, 50)] + [
        r("NR2", "random", 221, "timeout")
    ] * 5
    assert decide(reactions, ALL, 4) is None


def test_old_aead_threshold_at_51_bytes_is_confirmed():
    reactions = [r("NR1", "random", n, "timeout") for n in (7, 8, 9, 48, 49, 50)]
    reactions += [r("NR2", "random", 221, "rst")] * 2
    assert decide(reactions, ALL, 4)[0] == "length-threshold-close"


def test_outline_without_replay_filter_is_confirmed_but_an_http_server_is_not():
    outline = [
        r("R1", "replay", 300, "data", 120),
        r("R2", "replay", 300, "timeout"),
        r("NR2", "random", 221, "timeout"),
    ]
    assert decide(outline, ALL, 3)[0] == "replay-data-only"
    web = [
        r("R1", "replay", 300, "data", 400),
        r("R2", "replay", 300, "data", 400),
        r("NR2", "random", 221, "data", 400),
    ]
    assert decide(web, ALL, 3) is None


def test_tor_and_min_reactions():
    assert decide([r("tor", "tor", 11, "tor", 2000)], ALL, 1)[0] == "tor-handshake"
    assert decide([r("NR2", "random", 221, "fin"), r("NR2", "random", 221, "timeout")], ALL, 4) is None
    assert decide([r("NR2", "random", 221, "refused")] * 9, ALL, 1) is None  # nothing listening: inconclusive
