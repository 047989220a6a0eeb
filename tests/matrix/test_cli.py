"""``chokepoint matrix`` through its entry point: bad input is refused before any lab exists."""

from __future__ import annotations

import subprocess
import sys

CLI = [sys.executable, "-m", "chokepoint.cli", "matrix"]


def test_unknown_transport_or_profile_is_a_usage_error_with_the_reason(tmp_path):
    bad = subprocess.run([*CLI, "-t", "teleport", "-o", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no transport 'teleport'" in bad.stderr
    bad = subprocess.run([*CLI, "-p", "atlantis", "-o", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no bundled profile 'atlantis'" in bad.stderr
    spec = tmp_path / "mine.yaml"
    spec.write_text("name: mine\ntitle: x\nproto: sctp\nfetch: {via: direct}\n")
    bad = subprocess.run([*CLI, "-t", str(spec), "-o", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and f"{spec}:3:8" in bad.stderr
    assert not (tmp_path / "matrix.json").exists()
