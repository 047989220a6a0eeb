"""Labs side by side (``CHOKEPOINT_LAB``): names, state directories and locks per lab; two real labs up at once
through the real CLI, each reachable on its own, and ``lab down`` of one leaving the other whole."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from chokepoint.lab import instance, system
from chokepoint.lab import topology as topo

from ._lab import CLI, root_reason


def test_default_lab_name_and_derived_names():
    assert instance.lab_name({}) == "cpk"
    assert instance.lab_name({"CHOKEPOINT_LAB": ""}) == "cpk"
    assert instance.state_dir_for("cpk") == Path("/run/chokepoint-lab")
    assert instance.state_dir_for("cpx") == Path("/run/chokepoint-lab-cpx")


@pytest.mark.parametrize("bad", ["c", "CPK", "cp-k", "1ab", "abcdefghi", "cpk/x", " cpk"])
def test_malformed_lab_names_are_refused(bad):
    with pytest.raises(instance.BadLabName, match="CHOKEPOINT_LAB"):
        instance.lab_name({"CHOKEPOINT_LAB": bad})


def _names_in(lab: str) -> dict[str, object]:
    code = (
        "import json; from chokepoint.lab import instance, state, topology; "
        "print(json.dumps({'ns': topology.default_topology().namespaces(), 'dir': str(state.STATE_DIR), "
        "'lock': state.LOCK_NAME, 'session': state.SESSION_LOCK_NAME, 'alias': topology.LINK_ALIAS}))"
    )
    env = {**os.environ, "CHOKEPOINT_LAB": lab}
    out = subprocess.run([CLI[0], "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_every_name_that_could_collide_follows_the_lab_name():
    one, two = _names_in("cpk"), _names_in("cpzz")
    hosts = [ns.removeprefix("cpk-") for ns in one["ns"]]
    assert hosts[:4] == ["client", "censor", "server", "control"]
    assert all(ns.startswith("cpk-") for ns in one["ns"])
    assert two["ns"] == [f"cpzz-{host}" for host in hosts]
    for key in ("dir", "lock", "session", "alias"):
        assert one[key] != two[key], key


def _cli(lab: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHOKEPOINT_LAB": lab}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_two_labs_up_at_once_and_down_one_at_a_time():
    reason = root_reason()
    if reason:
        pytest.skip(reason)
    # Names of their own, so this test never meets the suite's default lab (or another helper's lab).
    labs = (f"t{os.getpid() % 100000}a", f"t{os.getpid() % 100000}b")
    try:
        for lab in labs:
            up = _cli(lab, "lab", "up", "--no-services", "--no-censor")
            assert up.returncode == 0, up.stderr
            assert f"hosts {lab}-client, {lab}-censor" in up.stdout
        present = set(system.netns_list())
        for lab in labs:
            assert {f"{lab}-client", f"{lab}-censor", f"{lab}-server", f"{lab}-control"} <= present
            ping = system.run(["ping", "-c", "1", "-W", "2", "198.19.0.2"], netns=f"{lab}-client", check=False)
            assert ping.returncode == 0, ping.stderr
        status = _cli(labs[0], "lab", "status")
        assert status.returncode == 0 and f"lab {labs[0]} up" in status.stdout
        down = _cli(labs[0], "lab", "down")
        assert down.returncode == 0, down.stderr
        present = set(system.netns_list())
        assert not any(ns.startswith(f"{labs[0]}-") for ns in present)
        assert f"{labs[1]}-client" in present  # the other lab is untouched
        assert system.run(["ping", "-c", "1", "-W", "2", "198.19.0.2"], netns=f"{labs[1]}-client").returncode == 0
    finally:
        for lab in labs:
            _cli(lab, "lab", "down")
    assert not [ns for ns in system.netns_list() if ns.startswith(tuple(f"{lab}-" for lab in labs))]
    assert not [p for lab in labs if (p := instance.state_dir_for(lab)).exists()]
    assert topo.PREFIX == instance.PREFIX
