"""Node health and verdict rates."""

from __future__ import annotations

from chokepoint.manager.status import RateBook, node_health


def test_health_from_the_last_heartbeat():
    fresh = {"last_heartbeat": 100.0, "state_hash": "h", "health": {"interval_s": 1.0}}
    assert node_health(fresh, "h", 101.0) == "in-sync"
    assert node_health(fresh, "other", 101.0) == "updating"
    assert node_health({**fresh, "last_error": "policy.yaml:1:1: x"}, "other", 101.0) == "error"
    assert node_health(fresh, "h", 110.0) == "stale"
    assert node_health({"last_heartbeat": None}, "h", 0.0) == "registered"
    failing = {**fresh, "health": {"fail_open": {"state": "failing-open"}}}
    assert node_health(failing, "h", 101.0) == "failing-open"
    assert node_health({**fresh, "state_hash": None}, None, 101.0) == "in-sync"  # nothing pushed yet


def test_rates_are_per_second_deltas_summed_over_nodes():
    book = RateBook()
    for node, (t, n) in ((1, (10.0, 0)), (1, (11.0, 5)), (1, (12.0, 15)), (2, (11.5, 100)), (2, (12.0, 2))):
        book.add(7, node, t, {"reset": n})
    rates = {p["t"]: p["by_action"]["reset"] for p in book.rates(7, 0.0)}
    assert rates[11] == 5.0 and rates[12] == 10.0 + 4.0  # node 2 restarted: its counter began again
    assert book.rates(8, 0.0) == []
