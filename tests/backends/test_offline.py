"""The offline backend on the demo capture and on damaged input."""

import pytest

from chokepoint.backends.offline import CaptureFormatError, analyze, analyze_capture
from chokepoint.packet.samples import write_demo_capture
from chokepoint.policy import load_profile


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_capture(tmp_path_factory.mktemp("offline") / "demo.pcap")


def test_shards_partition_the_flows(demo):
    profile = load_profile("demo")
    whole = analyze_capture(str(demo), profile)
    parts = [analyze_capture(str(demo), profile, shard=s, shards=3) for s in range(3)]
    ids = sorted(r["flow_id"] for p in parts for r in p.records)
    assert ids == sorted(r["flow_id"] for r in whole.records)
    assert sum(p.engine["packets"] for p in parts) == whole.engine["packets"] == whole.packets


def test_truncated_capture_reports_the_damage(demo, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(demo.read_bytes()[:-7])
    (result,) = analyze([str(cut)], load_profile("demo"))
    assert result.truncated and "frame" in result.error and result.records


def test_not_a_capture(tmp_path):
    bogus = tmp_path / "x.pcap"
    bogus.write_text("nope")
    with pytest.raises(CaptureFormatError):
        analyze([str(bogus)], load_profile("demo"), workers=2)
