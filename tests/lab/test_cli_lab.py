"""``chokepoint lab up|down|status|exec`` as a user runs them (the real console entry point, as root), and the
lifecycle guarantees: refusing a second lab, failing before anything exists, rolling back, cleaning up after
kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import types
from pathlib import Path

import pytest

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

from ._lab import CLI, clean, foreign, lab_guard, leftovers, reap, run_cli  # noqa: F401 (fixture)

BARE = ("--no-services", "--no-censor")


def keep_args() -> list[str]:
    return [arg for ns in foreign() for arg in ("--keep", ns)]


def snapshot() -> dict[str, object]:
    """What a refused `lab up` must leave exactly as it was."""
    state_file = st.STATE_DIR / st.STATE_FILE
    return {
        "namespaces": topo.lab_namespaces(),
        "state": state_file.read_bytes() if state_file.exists() else None,
        "state_dir": sorted(p.name for p in st.STATE_DIR.iterdir()) if st.STATE_DIR.exists() else None,
        "etc": sorted(str(p) for p in topo.ETC_NETNS.rglob("*")) if topo.ETC_NETNS.exists() else None,
        "client": system.ip_json(["addr", "show"], f"{PREFIX}client")
        if f"{PREFIX}client" in topo.lab_namespaces()
        else None,
    }


def test_the_lab_lock_admits_one_holder_at_a_time():
    with st.lab_lock(timeout=1):
        with pytest.raises(st.LabBusy, match="another `lab up` or `lab down` is running"):
            with st.lab_lock(timeout=0.2):
                pass
    with st.lab_lock(timeout=1):  # released on exit
        pass


def test_up_status_exec_down_with_the_real_cli(lab_guard):
    up = run_cli("lab", "up", *BARE)
    assert up.returncode == 0, up.stderr
    assert re.match(
        rf"lab up: profile demo( as of \d{{4}}-\d\d-\d\d)?, mode inline \(fails open\); hosts {PREFIX}client, {PREFIX}censor",
        up.stdout,
    ), up.stdout
    saved = json.loads((st.STATE_DIR / "state.json").read_text())
    assert (saved["profile"], saved["mode"], saved["fail_closed"]) == ("demo", "inline", False)
    assert [h["namespace"] for h in saved["topology"]["hosts"]] == topo.default_topology().namespaces()

    status = run_cli("lab", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(r"profile demo( as of [-\d]+)?, mode inline, fails open", status.stdout), status.stdout
    assert "cl0    198.18.0.2/24, 2001:db8:0:1::2/64" in status.stdout
    assert "censor not running: traffic fails open" in status.stdout  # started without a censor
    as_json = json.loads(run_cli("lab", "status", "--json").stdout)
    assert as_json["up"] and as_json["failure"] == "censor not running: traffic fails open"
    assert {h["name"]: h["present"] for h in as_json["hosts"]} == {
        name: True for name in topo.default_topology().host_names()
    }
    assert "198.19.0.53/32" in as_json["hosts"][2]["addresses"]["sv0"]

    pinged = run_cli("lab", "exec", "client", "--", "ping", "-c", "1", "-W", "2", "198.19.0.2")
    assert pinged.returncode == 0 and "ttl=63" in pinged.stdout
    assert run_cli("lab", "exec", "client", "--", "sh", "-c", "exit 7").returncode == 7
    resolv = run_cli("lab", "exec", "client", "--", "cat", "/etc/resolv.conf")
    assert resolv.stdout.endswith("nameserver 198.19.0.53\n")
    unknown = run_cli("lab", "exec", "nohost", "--", "true")
    assert (
        unknown.returncode == 2
        and f"no host 'nohost' (hosts: {', '.join(topo.default_topology().host_names())})" in unknown.stderr
    )
    missing = run_cli("lab", "exec", "client", "--", "no-such-command-xyz")
    assert missing.returncode == 127 and "no-such-command-xyz: command not found" in missing.stderr

    down = run_cli("lab", "down", *keep_args())
    assert down.returncode == 0, down.stderr
    assert f"removed namespaces {', '.join(sorted(topo.default_topology().namespaces()))}" in down.stdout
    assert clean(), leftovers()
    again = run_cli("lab", "down", *keep_args())
    assert (again.returncode, again.stdout) == (0, "lab down: nothing to remove\n")
    after = run_cli("lab", "status")
    assert after.returncode == 4 and after.stdout.startswith("no lab is up")
    gone = run_cli("lab", "exec", "client", "--", "true")
    assert gone.returncode == 4 and "does not exist: is the lab up?" in gone.stderr


def test_starting_twice_fails_cleanly_and_changes_nothing(lab_guard):
    assert run_cli("lab", "up", *BARE).returncode == 0
    before = snapshot()
    second = run_cli("lab", "up", "--profile", "gfw", "--mode", "mirror", *BARE)
    assert second.returncode == 4
    assert (
        f"a lab is already up (namespaces {', '.join(sorted(topo.default_topology().namespaces()))})" in second.stderr
    )
    assert "nothing was changed" in second.stderr
    assert snapshot() == before
    assert system.run(["ping", "-c", "1", "-W", "2", "198.19.0.2"], netns=f"{PREFIX}client").returncode == 0


def test_a_leftover_state_file_alone_also_counts_as_up(lab_guard):
    st.STATE_DIR.mkdir(parents=True)
    (st.STATE_DIR / "state.json").write_text("{}")
    second = run_cli("lab", "up", *BARE)
    assert second.returncode == 4 and "state.json" in second.stderr
    assert topo.lab_namespaces() == sorted(foreign())


def test_a_bad_profile_fails_before_anything_is_created(lab_guard, tmp_path):
    bad = run_cli("lab", "up", "--profile", "no-such-profile")
    assert bad.returncode == 1
    assert "no bundled profile 'no-such-profile'" in bad.stderr and "nothing was created" in bad.stderr
    assert clean(), leftovers()
    broken = tmp_path / "broken.yaml"
    broken.write_text("profile:\n  name: broken\nrules:\n  - id: x\n    action: explode\n")
    rejected = run_cli("lab", "up", "--profile", str(broken))
    assert rejected.returncode == 1 and f"{broken}:" in rejected.stderr, rejected.stderr
    assert clean(), leftovers()


def test_a_broken_topology_file_fails_with_file_line_column(lab_guard, tmp_path):
    path = tmp_path / "topo.yaml"
    path.write_text("hosts:\n  extra: {}\nroutes:\n  - {host: extra, to: default, via: 203.0.113.1}\n")
    bad = run_cli("lab", "up", "--topology", str(path), *BARE)
    assert bad.returncode == 1
    assert f"error: {path}:4:5: route default via 203.0.113.1: gateway 203.0.113.1 is not on a subnet" in bad.stderr
    assert "nothing was created" in bad.stderr
    assert clean(), leftovers()


def test_a_missing_tool_is_reported_before_anything_is_created(lab_guard, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "iptables", "ip6tables", "tc", "sysctl", "openssl"):
        (bin_dir / tool).symlink_to(system.which(tool))
    env = {**os.environ, "PATH": str(bin_dir)}  # everything but nft
    result = run_cli("lab", "up", *BARE, env=env)
    assert result.returncode == 5
    assert "the lab cannot run here; missing: the `nft` command (Debian package nftables)" in result.stderr
    assert "Nothing was created" in result.stderr
    assert clean(), leftovers()


def test_a_component_dying_at_start_rolls_everything_back(lab_guard, monkeypatch):
    def launch(state, mode, profile, fail_closed, seed, *, clock_offset_s=None, params=None, as_of=None):
        state.start("censor", "censor", ["sh", "-c", "echo cannot open queue 0 >&2; exit 3"], grace=2.0)

    real_optional = lab._optional
    monkeypatch.setattr(
        lab,
        "_optional",
        lambda module: (
            types.SimpleNamespace(launch=launch) if module == "chokepoint.backends.censord" else real_optional(module)
        ),
    )
    with pytest.raises(lab.LabError) as info:
        lab.up("demo", services=False)
    message = str(info.value)
    assert message.startswith("lab up failed, everything was rolled back: censor exited right after it was started")
    assert "cannot open queue 0" in message
    assert clean(), leftovers()


def _start(state: st.LabState, name: str, host: str, argv: list[str]) -> st.ProcessInfo:
    info = state.start(name, host, argv, grace=0.1)
    state.save()
    return info


def test_lab_down_after_kill_9_of_the_lab_processes_leaves_nothing(lab_guard):
    lab.up("demo", services=False, censor=False)
    state = st.LabState.load()
    censor = _start(state, "censor", "censor", ["sleep", "300"])
    web = _start(state, "web", "server", [*state.python_argv("http.server", "--bind", "198.19.0.10", "8080")])
    survivor = _start(state, "survivor", "client", ["sleep", "300"])
    assert [p.name for p in Path(st.STATE_DIR).glob("*.pid")] != []
    alive = json.loads(run_cli("lab", "status", "--json").stdout)["processes"]
    assert {name: p["alive"] for name, p in alive.items()} == {"censor": True, "web": True, "survivor": True}
    for info in (censor, web):
        os.kill(info.pid, signal.SIGKILL)
        reap(info.pid)
    status = run_cli("lab", "status")
    assert status.returncode == 6
    assert "censor not running: traffic fails open" in status.stdout
    assert status.stdout.count("DEAD") == 2
    down = run_cli("lab", "down", *keep_args())
    assert down.returncode == 0, down.stderr
    assert "killed 1 process;" in down.stdout
    assert not survivor.alive()
    reap(survivor.pid)
    assert clean(), leftovers()


def test_lab_down_after_kill_9_of_lab_up_itself_leaves_nothing(lab_guard):
    up = subprocess.Popen([*CLI, "lab", "up", *BARE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while f"{PREFIX}client" not in topo.lab_namespaces() and up.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    up.send_signal(signal.SIGKILL)
    up.wait()
    if not (st.STATE_DIR / "state.json").exists() and f"{PREFIX}client" in topo.lab_namespaces():
        status = run_cli("lab", "status")
        assert "exist but there is no state.json" in status.stdout
    down = run_cli("lab", "down", *keep_args())  # the lab lock died with `lab up`: down does not wait
    assert down.returncode == 0, down.stderr
    assert clean(), leftovers()


def test_status_shows_the_censor_counters_and_the_fail_closed_line(lab_guard):
    lab.up("demo", fail_closed=True, services=False, censor=False)
    state = st.LabState.load()
    censor = _start(state, "censor", "censor", ["sleep", "300"])
    counters = {"running": True, "packets": {"queued": 12, "accepted": 9}, "verdicts": {"drop": 3}}
    (st.STATE_DIR / st.STATS_FILE).write_text(json.dumps(counters))
    shown = run_cli("lab", "status")
    assert shown.returncode == 0, shown.stdout
    assert "fails closed" in shown.stdout and "not running" not in shown.stdout
    for line in ("packets.queued = 12", "packets.accepted = 9", "verdicts.drop = 3", "running = True"):
        assert line in shown.stdout
    assert json.loads(run_cli("lab", "status", "--json").stdout)["stats"] == counters
    os.kill(censor.pid, signal.SIGKILL)
    reap(censor.pid)
    dead = run_cli("lab", "status")
    assert dead.returncode == 6 and "censor not running: traffic fails closed" in dead.stdout


def test_full_lab_with_the_real_services_and_censor(lab_guard):
    services = lab._optional("chokepoint.lab.services")
    censord = lab._optional("chokepoint.backends.censord")
    if not (hasattr(services, "launch") and hasattr(censord, "launch")):
        pytest.skip("chokepoint.lab.services.launch or chokepoint.backends.censord.launch not available yet")
    up = run_cli("lab", "up", "--profile", "demo", timeout=120)
    assert up.returncode == 0, up.stderr
    status = json.loads(run_cli("lab", "status", "--json").stdout)
    assert status["censor_alive"] and all(p["alive"] for p in status["processes"].values()), status
    pids = [p["pid"] for p in status["processes"].values()]
    down = run_cli("lab", "down", *keep_args())
    assert down.returncode == 0, down.stderr
    assert all(st.proc_start_time(pid) is None for pid in pids)
    assert clean(), leftovers()


def test_lab_down_kills_a_recorded_process_whose_namespace_was_deleted_by_hand(lab_guard):
    lab.up("demo", services=False, censor=False)
    state = st.LabState.load()
    orphan = _start(state, "orphan", "server", ["sleep", "300"])
    system.run(["ip", "netns", "delete", f"{PREFIX}server"])  # the process keeps the namespace alive, unnamed
    assert orphan.alive() and f"{PREFIX}server" not in topo.lab_namespaces()
    status = run_cli("lab", "status")
    assert status.returncode == 6 and f"namespace {PREFIX}server is missing" in status.stdout
    report = lab.down(keep=foreign())  # found through its pidfile (pid + start time), not `ip netns pids`
    assert orphan.pid in report.killed and not orphan.alive()
    reap(orphan.pid)
    assert clean(), leftovers()


def test_distance_and_flat_exclude_each_other():
    both = run_cli("lab", "up", "--profile", "gfw", "--distance", "--flat")
    assert both.returncode == 2 and "--distance and --flat exclude each other" in both.stderr
