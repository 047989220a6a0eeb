"""chokepoint.lab.topology.kernelcheck: the check passes on this machine and cleans up after itself (root)."""

from __future__ import annotations

import os

from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX
from tests.lab._lab import lab_guard  # noqa: F401 (fixture)


def test_kernel_check_passes_here_and_leaves_no_probe_namespace(lab_guard):
    result = topo.check_kernel()
    assert result.missing == ()
    assert f"{PREFIX}probe-{os.getpid()}" not in topo.lab_namespaces()
