"""Header-field arithmetic (:mod:`chokepoint.probe.detect.fields`): the TSG generator relation and its key recovery."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.enforce.craft import Stamper
from chokepoint.enforce.personality import parse_personality
from chokepoint.packet import build
from chokepoint.probe.detect import flag_text, initial_ttl, recover_seed_keys, tsg_relation
from tests.probe.detect._censored import CLIENT, SERVER


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    key=st.integers(2, 64),
    client=st.binary(min_size=4, max_size=4),
    server=st.binary(min_size=4, max_size=4),
)
def test_tsg_relation_holds_exactly_for_the_generator_s_key(seed, key, client, server):
    style = parse_personality({"reset": {"ip_id": "tsg", "window": "tsg", "tsg": {"seed_key": key}}}).reset.ip
    stamper = Stamper(random.Random(seed))
    a, b = (stamper.stamp(style, sip=client, dip=server) for _ in range(2))
    assert tsg_relation(a.ip_id, a.window, client, server, key)
    samples = [(s.ip_id, s.window, client, server) for s in (a, b)]
    keys = recover_seed_keys(samples, keys=range(1, 257))
    assert key in keys
    if (a.ip_id, a.window) != (b.ip_id, b.window):
        assert len(keys) <= 2  # two independent samples pin k down (a rare second k fits by chance)


@settings(max_examples=300, deadline=None)
@given(ip_id=st.integers(0, 0xFFFF), window=st.integers(0, 0xFFFF), pick=st.booleans())
def test_tsg_relation_accepts_what_the_enforcer_s_generator_makes_and_nothing_else(ip_id, window, pick):
    """The oracle is ``chokepoint.enforce.craft.Stamper`` pinned to the one ``val`` the window allows."""
    sip, dip = build.address(CLIENT), build.address(SERVER)
    val = window - int.from_bytes(dip, "big") % 13
    made = None
    if 1 <= val <= 65535 // 13:
        style = parse_personality({"reset": {"ip_id": "tsg", "window": "tsg", "tsg": {"val": [val, val]}}}).reset.ip
        made = Stamper(random.Random(0)).stamp(style, sip=sip, dip=dip)
        if pick:  # half the examples are the generator's own output
            ip_id = made.ip_id
    generated = made is not None and (made.ip_id, made.window) == (ip_id, window)
    assert tsg_relation(ip_id, window, sip, dip) == generated


def test_helpers():
    assert [initial_ttl(t) for t in (1, 52, 64, 65, 118, 128, 200, 255)] == [64, 64, 64, 128, 128, 128, 255, 255]
    assert flag_text(0x14) == "RA" and flag_text(0x19) == "FPA" and flag_text(0x12) == "SA"
