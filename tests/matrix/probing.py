"""A test profile made of the bundled gfw profile's active prober alone (its trigger rules and probe sets), with
more random probes per flagged connection and a shorter prober timeout, so a short lab run sees enough
reactions; written next to the test so the scenario stays tied to the bundled data it comes from."""

from __future__ import annotations

from pathlib import Path

import yaml

from chokepoint.policy.profile import BUNDLED_DIR


def write_probing_profile(directory: Path, *, nr2: int = 40, timeout_s: float = 3.0) -> Path:
    gfw = yaml.safe_load((BUNDLED_DIR / "gfw.yaml").read_text())
    probing = gfw["active_probing"]
    shadowsocks = probing["probe_sets"]["shadowsocks"]
    for random_probe in shadowsocks["random"]:
        if random_probe["name"] == "NR2":
            random_probe["count"] = nr2
    for probe_set in probing["probe_sets"].values():
        probe_set["timeout_s"] = timeout_s
    doc = {
        "profile": {
            "name": "gfw-prober-test",
            "title": "the GFW's active prober alone (test scenario)",
            "country": "CN",
            "observed": "2019-09/2020-01",
            "description": "the gfw profile's active-probing triggers and probe sets, nothing else",
            "cite": ["Alice et al., How China Detects and Blocks Shadowsocks, IMC 2020"],
        },
        "rules": [r for r in gfw["rules"] if r["id"] in ("gfw-ap-suspect", "gfw-ap-tor")],
        "active_probing": probing,
    }
    path = directory / "gfw-prober-test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
