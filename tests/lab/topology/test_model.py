"""chokepoint.lab.topology.model: a topology as plain data (state.json) and back."""

from __future__ import annotations

import json

from chokepoint.lab import topology as topo

from ._example import EXAMPLE


def test_topology_round_trips_through_state_json_data():
    for lab in (topo.default_topology(), topo.load_topology_text(EXAMPLE, "example.yaml")):
        data = json.loads(json.dumps(lab.to_dict()))
        assert topo.Topology.from_dict(data) == lab
