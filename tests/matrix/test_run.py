"""The matrix's fixed order and its cell-by-cell matrix.json, with a stand-in session (no lab: the only
transport used cannot run here, so every cell is an error cell decided before anything starts)."""

from __future__ import annotations

import json

from chokepoint.matrix.model import MatrixConfig
from chokepoint.matrix.run import Matrix
from chokepoint.transports.runner import Placement


class FakeSession:
    tor = None

    def __init__(self) -> None:
        self.censors: list[tuple] = []

    def use_censor(self, profile, mode, **options) -> None:
        self.censors.append((profile, mode))

    def placement(self, spec) -> Placement:
        return Placement("x-client", "x-vps", "198.19.64.10", "198.18.0.2", "198.19.0.10")

    def events_offset(self) -> int:
        return 0

    def events_since(self, offset, started):
        return [], []


def test_cells_in_fixed_order_written_one_by_one(tmp_path):
    config = MatrixConfig(
        profiles=("russia-tspu", "demo"), transports=("snowflake",), modes=("inline", "mirror"), out_dir=tmp_path
    )
    session = FakeSession()
    matrix = Matrix(config, session)
    seen = []

    def progress(cell, done, total):
        seen.append((cell.profile, cell.mode, done, total))
        assert len(json.loads((tmp_path / "matrix.json").read_text())["cells"]) == done  # written cell by cell

    cells = matrix.run(progress)
    assert [(c.profile, c.mode) for c in cells] == [
        ("baseline", "inline"),
        ("russia-tspu", "inline"),
        ("demo", "inline"),
        ("russia-tspu", "mirror"),
        ("demo", "mirror"),
    ]
    assert seen[-1][2:] == (5, 5) and matrix.total == 5
    assert session.censors[0] == (None, "inline") and ("russia-tspu", "mirror") in session.censors
    tspu = cells[1]
    assert tspu.outcome == "error" and "broker" in tspu.how
    assert tspu.expected["outcome"] == "blocked" and tspu.agrees is None  # an error is never compared
    assert cells[3].expected is None  # the published outcome is for inline only
    doc = json.loads((tmp_path / "matrix.json").read_text())
    assert doc["interrupted"] is False and doc["transports"]["snowflake"]["unavailable"]
    assert doc["config"]["profiles"] == ["russia-tspu", "demo"] and doc["finished"] >= doc["started"]
