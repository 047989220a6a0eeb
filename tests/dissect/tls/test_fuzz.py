"""Fuzzing the TLS parsers from real hellos: only typed errors, and every prefix of a hello needs more data."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.dissect import tls
from chokepoint.dissect.errors import DissectError, NeedMoreData
from tests._corpus import mutations, tcp_flows
from tests.dissect._tls_hellos import python_client_hello, split_into_records
from tests.dissect.tls._shared import _record_offsets, sslv2_hello_from


@cache
def fuzz_seeds() -> tuple[bytes, ...]:
    seeds = [
        python_client_hello("fuzz.example"),
        python_client_hello(None, alpn=()),
        split_into_records(python_client_hello("split.example"), [60, 7]),
        sslv2_hello_from(python_client_hello()),
    ]
    try:
        for name in ("chrome.pcap", "tls_ech.pcapng", "tor.pcap", "encrypted_sni.pcap"):
            for flow in tcp_flows(name)[:2]:
                if flow.c2s[:1] == b"\x16":
                    seeds.append(flow.c2s[:2048])
                if flow.s2c[:1] == b"\x16":
                    seeds.append(flow.s2c[:1024])
    except pytest.skip.Exception:
        pass
    return tuple(seeds)


def mutated():
    """The seeds above damaged by the shared strategy (drawn lazily: the seeds are built on first use)."""
    return st.deferred(lambda: mutations(fuzz_seeds()))


def _only_typed_errors(fn, data):
    try:
        return fn(data)
    except DissectError:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_parsers_raise_only_typed_errors(data):
    ch = _only_typed_errors(tls.parse_client_hello_records, data)
    if ch is not None:
        assert ch.ja3 and ch.ja4 and len(ch.ja3_hash) == 32  # fingerprints work on whatever parsed
    _only_typed_errors(tls.parse_server_hello_records, data)
    if data[5:6] == b"\x01":
        _only_typed_errors(tls.parse_client_hello_message, data[5:])
    sh = _only_typed_errors(tls.parse_server_hello_records, data)
    if sh is not None:
        assert len(sh.ja3s_hash) == 32 and sh.ja3s.count(",") == 2
    stats = tls.tls_record_stats(data)
    assert sum(5 + n for _, n in stats.records) <= len(data)
    assert isinstance(tls.looks_like_tls_record(data), bool)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_prefixes_of_real_hellos_need_more_data(data):
    seed = data.draw(st.sampled_from([s for s in fuzz_seeds() if s[:1] == b"\x16" and s[5:6] == b"\x01"]))
    try:
        tls.parse_client_hello_records(seed)
    except NeedMoreData:  # seeds cut at 2 KiB may be incomplete themselves
        return
    cut = data.draw(st.integers(0, len(seed) - 1))
    end = 0
    for off, n in _record_offsets(seed):  # the hello ends inside the handshake records
        end = off + 5 + n
        try:
            tls.parse_client_hello_records(seed[:end])
            break
        except NeedMoreData:
            continue
    if cut < end:
        with pytest.raises(NeedMoreData):
            tls.parse_client_hello_records(seed[:cut])
