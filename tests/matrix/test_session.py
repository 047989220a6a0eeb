"""Reading the censor's events for a run."""

from __future__ import annotations

from chokepoint.matrix.run import run_seed
from chokepoint.matrix.session import condense_action, eve_time


def test_eve_time_and_condensed_actions():
    assert eve_time("1970-01-01T00:00:10.500000+0000") == 10.5
    event = {
        "timestamp": "1970-01-01T00:00:10.500000+0000",
        "src_ip": "198.18.0.2",
        "src_port": 40000,
        "dest_ip": "198.19.64.10",
        "dest_port": 443,
        "app_proto": "fully-encrypted",
        "chokepoint": {
            "rule": "gfw-fet-drop",
            "action": "drop",
            "residual": {"scope": "3-tuple", "seconds": 180},
            "notes": ["mirror mode cannot drop"],
            "injected": [{}, {}],
        },
    }
    out = condense_action(event, 1.25)
    assert out["rule"] == "gfw-fet-drop" and out["residual_s"] == 180 and out["injected"] == 2
    assert out["flow"] == "198.18.0.2:40000 -> 198.19.64.10:443" and out["not_enforced"] == "mirror mode cannot drop"


def test_run_seeds_are_stable_and_distinct():
    assert run_seed(1, "gfw", "inline", 0) == run_seed(1, "gfw", "inline", 0)
    assert len({run_seed(1, "gfw", m, i) for m in ("inline", "mirror") for i in range(10)}) == 20
