"""The node's policy reload (backends/control.py): requests applied between packets, into a real Censor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chokepoint.backends.censor import Censor
from chokepoint.backends.control import (
    APPLIED_FILE,
    REQUEST_FILE,
    PolicyControl,
    read_json,
    replace_lists,
    write_json_atomic,
)
from chokepoint.packet.build import ACK, PSH, SYN, ipv4_tcp
from chokepoint.policy import PolicyError, load_rules_file

RULES = """\
lists:
  blocked:
    kind: domain
    file: blocked.txt
rules:
  - id: block-host
    action: drop
    when:
      http.host: {in_list: blocked}
"""


def write_policy(directory: Path, names: list[str], rules: str = RULES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "blocked.txt").write_text("".join(f"{n}\n" for n in names))
    path = directory / "policy.yaml"
    path.write_text(rules)
    return path


class Client:
    """One TCP connection's packets, built as the censor would see them."""

    def __init__(self, port: int) -> None:
        self.port = port

    def syn(self) -> bytes:
        return ipv4_tcp("198.18.0.2", "198.19.0.10", self.port, 80, 100, 0, SYN)

    def synack(self) -> bytes:
        return ipv4_tcp("198.19.0.10", "198.18.0.2", 80, self.port, 500, 101, SYN | ACK)

    def request(self, host: str) -> bytes:
        payload = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        return ipv4_tcp("198.18.0.2", "198.19.0.10", self.port, 80, 101, 501, PSH | ACK, payload)


def request(control_dir: Path, seq: int, **body) -> None:
    write_json_atomic(control_dir / REQUEST_FILE, {"seq": seq, "version": f"v{seq}", **body})


@pytest.fixture
def node(tmp_path):
    path = write_policy(tmp_path / "v1", ["blocked.test"])
    control = PolicyControl(tmp_path / "control")
    profile = control.startup_profile(lambda: load_rules_file(path), {"rules": str(path)})
    censor = Censor(profile, mode="inline")
    control.swap = censor.swap_profile
    return tmp_path, control, censor


def test_a_policy_request_is_applied_between_packets_and_acknowledged(node):
    tmp, control, censor = node
    assert censor.observe(Client(40000).syn()) is not None
    v2 = write_policy(tmp / "v2", ["blocked.test", "newly-blocked.test"])
    request(control.dir, 1, policy={"file": str(v2)})
    assert control.poll(now=1.0) is True
    applied = read_json(control.dir / APPLIED_FILE)
    assert applied["ok"] and applied["seq"] == 1 and applied["in_force"]["version"] == "v1"
    flow = Client(40001)
    censor.observe(flow.syn())
    censor.observe(flow.synack())
    decision = censor.observe(flow.request("newly-blocked.test"))
    assert decision.step.decided_now and decision.step.flow.verdict.rule_id == "block-host"
    assert censor.stats()["engine"]["policy_swaps"] == 1
    # the same request is not applied twice
    assert control.poll(now=2.0) is False


def test_a_decided_flow_keeps_its_verdict_and_an_inspected_one_meets_the_new_policy(node):
    tmp, control, censor = node
    decided, inspected = Client(40010), Client(40011)
    for pkt in (decided.syn(), decided.synack()):
        censor.observe(pkt)
    blocked = censor.observe(decided.request("blocked.test"))
    assert blocked.step.flow.verdict.action.value == "drop"
    for pkt in (inspected.syn(), inspected.synack()):
        censor.observe(pkt)
    # the new policy blocks nothing: the decided flow keeps its drop, the inspected one is now judged by v2
    v2 = write_policy(tmp / "v2", [])
    request(control.dir, 1, policy={"file": str(v2)})
    control.poll(now=1.0)
    assert blocked.step.flow.verdict.action.value == "drop"
    after = censor.observe(inspected.request("blocked.test"))
    assert after.step.flow.verdict is None


def test_a_bad_policy_is_refused_with_its_position_and_the_old_one_stays(node):
    tmp, control, censor = node
    bad = write_policy(tmp / "bad", ["fine.test", "bad name!"])
    request(control.dir, 1, policy={"file": str(bad)})
    control.poll(now=1.0)
    applied = read_json(control.dir / APPLIED_FILE)
    assert not applied["ok"]
    assert applied["error"].startswith(f"{tmp / 'bad' / 'blocked.txt'}:2:1:")
    assert applied["in_force"]["command_line"]["rules"].endswith("v1/policy.yaml")
    flow = Client(40020)
    for pkt in (flow.syn(), flow.synack()):
        censor.observe(pkt)
    assert censor.observe(flow.request("blocked.test")).step.flow.verdict.rule_id == "block-host"


def test_a_lists_only_request_rebuilds_the_matchers_and_keeps_the_rules(node):
    tmp, control, censor = node
    fresh = tmp / "feed.txt"
    fresh.write_text("# a feed\nfeed-blocked.test\n")
    request(control.dir, 1, lists={"blocked": str(fresh)})
    control.poll(now=1.0)
    assert read_json(control.dir / APPLIED_FILE)["ok"]
    assert censor.profile.policy.lists["blocked"].entries == ("feed-blocked.test",)
    flow = Client(40030)
    for pkt in (flow.syn(), flow.synack()):
        censor.observe(pkt)
    assert censor.observe(flow.request("feed-blocked.test")).step.flow.verdict.rule_id == "block-host"
    # a list the policy does not declare is refused
    request(control.dir, 2, lists={"nope": str(fresh)})
    control.poll(now=2.0)
    applied = read_json(control.dir / APPLIED_FILE)
    assert not applied["ok"] and "declares no list 'nope'" in applied["error"]


def test_a_restarted_daemon_starts_on_the_policy_last_applied(tmp_path):
    v1 = write_policy(tmp_path / "v1", ["one.test"])
    v2 = write_policy(tmp_path / "v2", ["two.test"])
    control = PolicyControl(tmp_path / "control")
    control.startup_profile(lambda: load_rules_file(v1), {"rules": str(v1)})
    control.swap = lambda profile: None
    request(control.dir, 5, policy={"file": str(v2)})
    control.poll(now=1.0)
    feed = tmp_path / "feed.txt"
    feed.write_text("three.test\n")
    request(control.dir, 6, lists={"blocked": str(feed)})
    control.poll(now=2.0)
    # a new process (after kill -9) reads applied.json: v2 with the feed's entries, not the command line's v1
    again = PolicyControl(tmp_path / "control")
    profile = again.startup_profile(lambda: pytest.fail("the command line's policy was loaded"), {})
    assert profile.policy.lists["blocked"].entries == ("three.test",)
    assert again.in_force["version"] == "v6"
    # a request with an old seq is not applied again
    assert again.poll(now=3.0) is False


def test_replace_lists_reports_the_entry_position(tmp_path):
    profile = load_rules_file(write_policy(tmp_path, ["a.test"]))
    bad = tmp_path / "bad.txt"
    bad.write_text("ok.test\n\n  not a name\n")
    with pytest.raises(PolicyError) as err:
        replace_lists(profile, {"blocked": str(bad)})
    assert str(err.value).startswith(f"{bad}:3:3:")


def test_a_half_written_request_is_ignored_until_complete(node):
    _, control, _ = node
    (control.dir / REQUEST_FILE).write_text('{"seq": 1, "poli')
    assert control.poll(now=1.0) is False
    assert json.loads((control.dir / APPLIED_FILE).read_text())["seq"] == 0
