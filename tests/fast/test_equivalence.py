"""The fast path gives what the reference path gives: for every nDPI capture in ../shared/data/ndpi and the
captures the tests generate (the demo capture, the benchmarks' mix, every profile's examples, damaged copies),
``analyze_capture(engine="fast")`` (the compiled core when built) writes the same EVE lines and counts the same
frames, packets, skipped frames and engine counters as ``engine="reference"``, which reads frame by frame and
runs ``Engine.step`` as the inline censor does. A difference is shown as a diff of the first differing flow.

``make test`` runs a reduced set of profiles (each a different engine setting: reassembly on and off, deferred
rules, payload rules, a local clock); ``CHOKEPOINT_FULL_MATRIX=1`` runs every bundled profile.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from chokepoint.backends.offline import CaptureResult, analyze_capture
from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter
from chokepoint.packet.samples import tls_client_hello, write_demo_capture, write_mixed_capture, write_wrapped_copy
from chokepoint.policy import load_profile
from chokepoint.policy.profile import list_profiles
from tests._corpus import NDPI_PCAPS, capture_paths, not_found
from tests.profiles._scenarios import example_packets, write_capture

REDUCED = ("gfw", "iran", "tsg", "russia-tspu", "myanmar")
PROFILES = list_profiles() if os.environ.get("CHOKEPOINT_FULL_MATRIX") else list(REDUCED)


def compared(result: CaptureResult) -> dict:
    return {
        "frames": result.frames,
        "packets": result.packets,
        "truncated": result.truncated,
        "error": result.error,
        "skipped": dict(+result.skipped),
        "engine": dict(+result.engine),
    }


def explain(reference: CaptureResult, fast: CaptureResult) -> str:
    """A readable account of how two results differ: counters, then the first differing flow record."""
    out = []
    ref_c, fast_c = compared(reference), compared(fast)
    for key in ref_c:
        if ref_c[key] != fast_c[key]:
            out.append(f"{key}: reference {ref_c[key]!r}\n{'':>{len(key)}}  fast      {fast_c[key]!r}")
    ref_lines, fast_lines = sorted(reference.lines()), sorted(fast.lines())
    if ref_lines != fast_lines:
        out.append(f"flows: reference {len(ref_lines)}, fast {len(fast_lines)}")
        by_id = {json.loads(line)["flow_id"]: line for line in fast_lines}
        for line in ref_lines:
            if line in by_id.values():
                continue
            ident = json.loads(line)["flow_id"]
            other = by_id.get(ident)
            a = json.dumps(json.loads(line), indent=1, sort_keys=True).splitlines()
            b = json.dumps(json.loads(other), indent=1, sort_keys=True).splitlines() if other else ["(missing)"]
            out.append(f"first differing flow {ident}:")
            out.extend(difflib.unified_diff(a, b, "reference", "fast", lineterm="", n=2))
            break
        else:
            extra = sorted(set(fast_lines) - set(ref_lines))[:1]
            out.append(f"only in fast: {extra}")
    return "\n".join(out)


def check(path: Path, profile_name: str, engine: str = "fast") -> None:
    profile = load_profile(profile_name)
    reference = analyze_capture(str(path), profile, engine="reference")
    fast = analyze_capture(str(path), profile, engine=engine)
    same = compared(reference) == compared(fast) and sorted(reference.lines()) == sorted(fast.lines())
    assert same, f"{path.name} with {profile_name}:\n{explain(reference, fast)}"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """The captures the tests build: demo, the benchmarks' mix, each profile's examples, damaged copies."""
    folder = tmp_path_factory.mktemp("equivalence")
    out = {"demo": write_demo_capture(folder / "demo.pcap")}
    write_mixed_capture(folder / "mixed.pcap", 600, seed=5)
    out["mixed"] = folder / "mixed.pcap"
    for name in list_profiles():
        profile = load_profile(name)
        packets = []
        for i, ex in enumerate(profile.examples):
            packets.extend(example_packets(ex, profile, client_port=20000 + i))
        out[f"examples-{name}"] = write_capture(folder / f"examples-{name}.pcap", packets)
    write_wrapped_copy(out["mixed"], folder / "mixed-vlan-pppoe.pcap")  # decapsulated natively
    out["mixed-vlan-pppoe"] = folder / "mixed-vlan-pppoe.pcap"
    write_wrapped_copy(out["mixed"], folder / "mixed-qinq.pcap", vlans=((0x88A8, 30), (0x8100, 7)), pppoe_session=None)
    out["mixed-qinq"] = folder / "mixed-qinq.pcap"
    out.update(every_encapsulation(folder))  # by the reference decoder's _descend
    raw = out["mixed"].read_bytes()
    for cut in (len(raw) - 7, len(raw) // 2 + 3, 30):
        damaged = folder / f"mixed-cut-{cut}.pcap"
        damaged.write_bytes(raw[:cut])
        out[damaged.stem] = damaged
    return out


def every_encapsulation(folder: Path) -> dict[str, Path]:
    """One capture per link type of every wrapper of tests/packet/test_decap.py around a TLS and a UDP exchange."""
    from tests.packet.test_decap import WRAPPERS

    hello = tls_client_hello("wrapped.example")
    by_linktype: dict[int, list[tuple[float, bytes]]] = {}
    for n, (linktype, wrap, _labels) in enumerate(WRAPPERS.values()):
        cport = 30000 + n
        packets = build.tcp_conversation("10.9.8.7", "203.0.113.77", cport, 443, [hello], [bytes(900)], 1000.0 + n)
        packets += [(1000.5 + n, build.ipv4_udp("10.9.8.7", "203.0.113.53", cport, 53, bytes(40)))]
        by_linktype.setdefault(linktype, []).extend((ts, wrap(ip)) for ts, ip in packets)
    out = {}
    for linktype, frames in by_linktype.items():
        path = folder / f"wrapped-linktype-{linktype}.pcap"
        with CaptureWriter(path, linktype=linktype) as writer:
            for ts, frame in sorted(frames):
                writer.write(ts, frame)
        out[path.stem] = path
    return out


def test_wrapped_copies_keep_their_labels(generated):
    result = analyze_capture(str(generated["mixed-vlan-pppoe"]), load_profile("gfw"), engine="fast")
    assert result.records and all(r["encap"] == ["vlan:100", "pppoe:0x1a2b"] for r in result.records)
    for name in ("wrapped-linktype-1", "wrapped-linktype-101", "wrapped-linktype-9"):
        records = analyze_capture(str(generated[name]), load_profile("gfw"), engine="fast").records
        assert records and all(r.get("encap") for r in records), name
    for name in ("mixed-vlan-pppoe", "mixed-qinq", "wrapped-linktype-1"):
        check(generated[name], "gfw", engine="pure")  # the uncompiled core unwraps as the compiled one


@pytest.mark.parametrize("profile_name", PROFILES)
def test_generated_captures(generated, profile_name):
    for path in generated.values():
        check(path, profile_name)


@pytest.mark.shared_data
@pytest.mark.parametrize("profile_name", PROFILES)
def test_ndpi_captures(profile_name):
    paths = capture_paths()
    if not paths:
        if os.environ.get("CI") == "true":
            pytest.fail(not_found(NDPI_PCAPS))
        pytest.skip(not_found(NDPI_PCAPS))
    for path in paths:
        check(path, profile_name)


@pytest.mark.shared_data
def test_pure_python_core_on_ndpi_captures():
    """The uncompiled core (the fallback) agrees too."""
    paths = capture_paths()
    if not paths:
        pytest.skip(not_found(NDPI_PCAPS))
    for path in paths:
        check(path, "gfw", engine="pure")


def test_explain_shows_the_differing_flow(generated):
    reference = analyze_capture(str(generated["demo"]), load_profile("demo"), engine="reference")
    fast = analyze_capture(str(generated["demo"]), load_profile("demo"), engine="fast")
    ts, ident, line = fast.eve[0]
    fast.eve[0] = (ts, ident, line.replace('"pkts_toserver":', '"pkts_toserver":1'))
    fast.engine["packets"] += 1
    text = explain(reference, fast)
    assert f"first differing flow {ident}" in text and "pkts_toserver" in text and "engine:" in text
