"""``analyze --format parquet``: read back with pyarrow, every row equals its EVE record (the EVE fields are the
columns; a field a flow does not have is null in its row)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chokepoint.packet.samples import write_demo_capture, write_mixed_capture
from tests._corpus import NDPI_PCAPS, capture_paths, not_found

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (make setup installs the scale extra)")
CLI = [sys.executable, "-m", "chokepoint.cli", "analyze"]


def without_nulls(value):
    """``value`` with null members left out (a Parquet row has every column; an EVE record only its own)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def check(paths: list[str], profile: str, tmp_path) -> int:
    eve = subprocess.run([*CLI, *paths, "-p", profile, "-f", "eve"], capture_output=True, text=True, timeout=300)
    out = tmp_path / "flows.parquet"
    done = subprocess.run(
        [*CLI, *paths, "-p", profile, "-f", "parquet", "-o", str(out)], capture_output=True, text=True
    )
    assert eve.returncode == done.returncode == 0, done.stderr
    records = [json.loads(line) for line in eve.stdout.splitlines()]
    table = pq.read_table(out)
    assert {"timestamp", "flow_id", "src_ip", "dest_port", "app_proto", "flow", "chokepoint"} <= set(table.column_names)
    rows = [without_nulls(row) for row in table.to_pylist()]
    assert rows == [without_nulls(r) for r in records]
    return len(rows)


def test_generated_captures_round_trip(tmp_path):
    write_mixed_capture(tmp_path / "mixed.pcap", 200, seed=4)
    demo = write_demo_capture(tmp_path / "demo.pcap")
    assert check([str(demo), str(tmp_path / "mixed.pcap")], "demo", tmp_path) > 200


def test_ndpi_captures_round_trip(tmp_path):
    paths = [str(p) for p in capture_paths()]
    if not paths:
        if os.environ.get("CI") == "true":
            pytest.fail(not_found(NDPI_PCAPS))
        pytest.skip(not_found(NDPI_PCAPS))
    assert check(paths, "gfw", tmp_path) > 100


def test_parquet_needs_an_output_file(tmp_path):
    demo = write_demo_capture(tmp_path / "demo.pcap")
    done = subprocess.run([*CLI, str(demo), "-f", "parquet"], capture_output=True, text=True)
    assert done.returncode == 2 and "--output" in done.stderr and "Traceback" not in done.stderr
