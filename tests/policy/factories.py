"""Fixture factories for the policy tests (one place)."""

from __future__ import annotations

from pathlib import Path

from chokepoint.policy.input import MatchInput
from chokepoint.policy.profile import Profile, load_rules_text

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def flow(**facts) -> MatchInput:
    """A TCP client-to-server MatchInput with the given facts on top."""
    base = dict(
        transport="tcp",
        client_ip="192.0.2.10",
        server_ip="203.0.113.10",
        client_port=50000,
        server_port=443,
        direction="c2s",
        packet_index_in_flow=1,
    )
    base.update(facts)
    return MatchInput(**base)


def rules(text: str, base_dir: Path | str = ".", source: str = "rules.yaml") -> Profile:
    """Load a rule file from text (``profile:`` optional)."""
    return load_rules_text(text, source, base_dir)


def one_rule(when: str, action: str = "drop", lists: str = "") -> Profile:
    """A rule file with one rule ``r`` whose condition is the flow-style YAML ``when``."""
    return rules(f"{lists}\nrules:\n  - id: r\n    action: {action}\n    when: {when}\n")


def ids(profile: Profile, inp: MatchInput) -> list[str]:
    return [v.rule_id for v in profile.policy.evaluate(inp)]
