"""Lab sweep: does ``chokepoint trace`` name the right hop and path for each profile, mode and censor position?

For every bundled profile with an HTTP Host or TLS SNI example whose rule resets, drops or answers with a block
page (a probabilistic rule pinned to probability 1), for each mode and each ``--positions`` value N: ``lab up
PROFILE --mode MODE --hops-client N --hops-server 2 --delay-ms 10``, then ``chokepoint trace 198.19.0.10
--domain EXAMPLE`` from the client. Ground truth from the topology (``chokepoint.validate.truth.trace_truth``, as validate's trace scenarios, which
cover the same cells: ``chokepoint validate --scenarios 'trace-*'``): the censor is hop N + 1 with its ``ce0``
address; in mirror mode the request is copied (on-path); in inline mode, when the censor's event log says it
dropped the triggering packet (``trigger.dropped``), in-path; when it let it through, the trace sees it on the
link to the next router (on-path, that router's hop and address: the lab's censor inspects after its own TTL
check). A
drop rule cannot act in mirror mode (unenforceable): that cell expects ``no-censorship``. For a rule that sees only
20-byte TCP headers (henan) the client's TCP timestamps are turned off. Prints one line per
cell and the share of cells right.

Usage: ``sudo .venv/bin/python bench/trace_positions.py [--profiles gfw,iran] [--positions 1,3] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab.instance import PREFIX
from chokepoint.policy import load_profile
from chokepoint.policy.profile import list_profiles
from chokepoint.validate.truth import trace_truth

SITE = "198.19.0.10"
ACTIONS = ("reset", "drop", "blockpage")


def pick(name: str) -> tuple[str, str, str, str] | None:
    """(protocol, domain, rule id, action) of the profile's first host/SNI example a trace can see."""
    profile = load_profile(name)
    for example in profile.examples:
        if example.protocol not in ("http", "tls") or not example.rule:
            continue
        rule = profile.policy.rule(example.rule)
        if rule.action in ACTIONS and ("sni" in rule.id or "http" in rule.id) and "ip" not in rule.id.split("-"):
            return example.protocol, example.target, rule.id, rule.action
    return None


def _dropped(state: Any, rule_id: str) -> bool | None:
    """Whether the censor dropped the packet that triggered ``rule_id`` (its event log's ``trigger.dropped``)."""
    try:
        lines = state.path("events.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        event = json.loads(line).get("chokepoint", {})
        if event.get("rule") == rule_id and "trigger" in event:
            return bool(event["trigger"].get("dropped"))
    return None


def cell(name: str, mode: str, hops: int, choice: tuple[str, str, str, str]) -> dict[str, Any]:
    protocol, domain, rule_id, action = choice
    rule = load_profile(name).policy.rule(rule_id)
    params = {f"{rule_id}.probability": "1"} if "probability" in dict(rule.params) else {}
    state = lab.up(name, mode, hops_client=hops, hops_server=2, delay_ms=10, params=params)
    if "tcp_header_len" in repr(rule):  # henan sees only 20-byte TCP headers: no timestamp option (S&P 2025)
        system.sysctl({"net.ipv4.tcp_timestamps": 0}, f"{PREFIX}client")
    proc = system.run(
        [sys.executable, "-m", "chokepoint.cli", "trace", SITE, "-d", domain, "-p", protocol, "-f", "json"],
        netns=f"{PREFIX}client",
        check=False,
        timeout=300,
    )
    got = json.loads(proc.stdout or b"{}")
    dropped = _dropped(state, rule_id)
    # the same ground truth as validate's trace scenarios (chokepoint.validate.truth.trace_truth)
    next_ip = str(state.topology.host("far1").interface("rt0").addresses[0].ip)
    try:
        lines = state.path("events.jsonl").read_text().splitlines()
    except OSError:
        lines = []
    truth = trace_truth(mode, hops + 1, next_ip, lines)
    expected = {k: truth[k] for k in ("outcome", "censor", "path")}
    if expected["outcome"] == "no-censorship":
        expected = {"outcome": "no-censorship"}
    right = all(got.get(k) == v for k, v in expected.items())
    return {
        "profile": name,
        "rule": rule_id,
        "protocol": protocol,
        "mode": mode,
        "censor_hop": hops + 1,
        "request_dropped": dropped,
        "expected": expected,
        "got": {k: got.get(k) for k in ("outcome", "censor", "path", "interference", "interference_ttl")},
        "right": right,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(list_profiles()))
    parser.add_argument("--positions", default="1,3")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cells = []
    with st.session_lock(timeout=600):
        try:
            for name in args.profiles.split(","):
                choice = pick(name)
                if choice is None:
                    print(f"{name}: no HTTP Host / TLS SNI example a trace can see; skipped", flush=True)
                    continue
                for mode in ("inline", "mirror"):
                    for hops in map(int, args.positions.split(",")):
                        lab.down()
                        result = cell(name, mode, hops, choice)
                        cells.append(result)
                        print(json.dumps(result), flush=True)
        finally:
            lab.down()
    right = sum(c["right"] for c in cells)
    print(f"trace right in {right}/{len(cells)} cells")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(cells, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
