"""chokepoint.lab.topology.consistency: ``check()`` on topologies built in code."""

from __future__ import annotations

import pytest

from chokepoint.lab import topology as topo


def test_check_rejects_inconsistent_topologies_built_in_code():
    base = topo.default_topology()
    with pytest.raises(topo.TopologyError, match="link to unknown host 'ghost'"):
        topo.check(topo.Topology(base.hosts, (*base.links, topo.Link(("ghost", "g0"), ("censor", "ce0")))))
    with pytest.raises(topo.TopologyError, match="interface 'sv0' of 'server' is already linked"):
        topo.check(topo.Topology(base.hosts, (*base.links, topo.Link(("server", "sv0"), ("censor", "ce0")))))
    with pytest.raises(topo.TopologyError, match="interface 'cl0' of 'client' is not on any link"):
        topo.check(topo.Topology(base.hosts, base.links[1:]))
    with pytest.raises(topo.TopologyError, match="duplicate host 'client'"):
        topo.check(topo.Topology((*base.hosts, base.host("client")), base.links))
