"""End to end through the real CLI: ``chokepoint validate --scenarios`` with one trace scenario, in the lab.

gfw's SNI reset inline with two routers on each side (``hops_client`` 2, ``hops_server`` 2): the transparent censor
is first passed at TTL 3, and it forwards the ClientHello (its residual block spares the trigger), which expires
at far1, beside the injected resets; so trace must name hop 3 with far1's address, on-path, as the ground truth
from the topology says (``validate.truth.trace_truth``). Root only.

The CLI's own Typer app runs in this process (``typer.testing.CliRunner``), not as a child: it takes the lab session
lock, which is re-entrant within a process, and a session-wide fixture of this worker may already hold it
(``tests/backends/conftest.py``'s ``netpath``). A child process would wait for its own parent's lock until its
``--wait`` ran out. The lab is named by ``CHOKEPOINT_LAB`` as usual.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from chokepoint.cli import app
from chokepoint.lab import topology as topo
from chokepoint.validate.report import load_report
from tests.lab._lab import tools_reason

SCENARIO = "trace-gfw-tls-inline-c2s2"


def test_validate_runs_a_trace_scenario_through_the_cli(tmp_path):
    reason = tools_reason(["nft", "iptables"], "validate's trace scenarios")
    if reason:
        pytest.skip(reason)
    before = set(topo.lab_namespaces())  # a crashed session's, if any (then the CLI refuses: exit 4)
    proc = CliRunner().invoke(app, ["validate", "--scenarios", SCENARIO, "--report", str(tmp_path)])
    assert set(topo.lab_namespaces()) <= before, "the lab was not taken down"
    assert proc.exit_code == 0, proc.output[-3000:] + repr(proc.exception)
    assert "trace accuracy (outcome, hop and path right) 100.0%" in proc.output
    report = load_report(tmp_path / "report.json")
    (result,) = report.results
    assert report.matrix.total == 0 and report.trace_accuracy == 1.0
    expected, got = result["trace"]["expected"], result["trace"]["got"]
    assert expected["censor"] == {"ttl": 3, "ip": "198.19.201.2"} and expected["path"] == "on-path", expected
    assert {k: got[k] for k in ("outcome", "censor", "path")} == {k: expected[k] for k in ("outcome", "censor", "path")}
    assert got["interference"] == "rst"
    assert json.loads((tmp_path / "report.json").read_text())["accuracies"]["trace_hop"]["ok"] == 1
    assert 'id="traces"' in (tmp_path / "report.html").read_text()
