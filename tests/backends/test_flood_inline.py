"""A SYN flood from distinct spoofed sources through the inline censor (``chokepoint.lab.synflood`` in the client
namespace): the flow table stays within its bound (evicting the flood's unassured flows), censord's memory does
not grow with the flood, an allowed download made during the flood completes, and what the censor could not look
at is counted (failed open, or dropped by the kernel). Assertions are on counts and bytes, never on time.
``bench/inline_flood.py`` is the same on the full lab, at the highest rate it sustains (docs/scale.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import SERVER_IP, Censord

MAX_FLOWS = 1000
RULES = f"""
engine:
  max_flows: {MAX_FLOWS}
rules:
  - id: reset-host
    action: reset
    when: {{http.host: {{exact: blocked.test}}}}
"""
FLOOD_RATE, FLOOD_SECONDS = 20000, 4
DOWNLOAD = 30_000_000
FLOOD_TARGET = "198.19.0.10"  # the server's, not the download's address


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("fail_closed", [False, True], ids=["fail-open", "fail-closed"])
def test_flood_keeps_memory_bounded_and_an_allowed_download_working(netpath, tmp_path, fail_closed):
    daemon = Censord(netpath, tmp_path / "flood", RULES, "inline", ["--fail-closed"] if fail_closed else []).start()
    try:
        pid = daemon.fresh_stats()["pid"]
        rss_before = _rss_kb(pid)
        peak = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], _rss_kb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        flood = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netpath.client,
                sys.executable,
                "-m",
                "chokepoint.lab.synflood",
                FLOOD_TARGET,
                "9",  # closed: the flood stays away from the download's listener (the censor is under test)
                "--rate",
                str(FLOOD_RATE),
                "--seconds",
                str(FLOOD_SECONDS),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            during = daemon.fresh_stats()  # written while the flood runs (the callback does the loop's duties)
            code, out, err = netpath.curl(
                f"http://{SERVER_IP}/large?bytes={DOWNLOAD}", "-o", "/dev/null", "-w", "%{size_download}", timeout=60
            )
            sent = json.loads(flood.communicate(timeout=FLOOD_SECONDS + 60)[0].splitlines()[-1])
        finally:
            if flood.poll() is None:
                flood.kill()
                flood.wait()
        done.set()
        sampler.join()
        assert code == 0 and out == str(DOWNLOAD), (code, out, err)  # the allowed download completed
        assert sent["sent"] >= FLOOD_RATE  # at least a second's worth of flood went out
        assert during["running"] and during["packets"]["queued"] > 0
    finally:
        assert daemon.stop() == 0
        daemon.close()
    final = daemon.stats()
    flows, overload = final["flows"], final["backend"]["overload"]
    # the table was bounded: far more flows than max_flows were created, the flood's were evicted
    assert flows["created"] > 3 * MAX_FLOWS
    assert flows["evicted"] >= flows["created"] - flows["ended"] - MAX_FLOWS - 1
    assert flows["evicted_unassured"] == flows["evicted"] > 0 and flows["emergency_entered"] >= 1
    # what the censor did not see is counted: every packet that reached the queue's rule was received, failed
    # open, dropped by the kernel, or was still waiting at the stop (at most max_len); the download's GSO packets
    # inspected before their offload count once at the rule and once per segment in the daemon (slack)
    assert overload["when_full"] == ("drop (fail-closed)" if fail_closed else "accept (fail-open)")
    rule, queued = overload["nfqueue_rule_packets"], final["packets"]["queued"]
    accounted = queued + (overload["failed_open"] or 0) + overload["queue_dropped"] + overload["user_dropped"]
    slack = 0.01 * rule
    assert rule >= 0.9 * sent["sent"] and accounted - slack <= rule <= accounted + overload["max_len"]
    assert (overload["failed_open"] is None) == fail_closed
    # memory: a few MB for MAX_FLOWS flows, whatever the flood's size (~2 kB per flow kept would be tens of MB)
    assert (peak[0] - rss_before) < 40 * 1024, (rss_before, peak[0], flows)
    assert "censord: stopped:" in daemon.log_text() and "failed open" in daemon.log_text()


LISTING = """Chain CHOKEPOINT (1 references)
    pkts      bytes target     prot opt in     out     source               destination
       0        0 DROP       0    --  *      *       0.0.0.0/0            0.0.0.0/0            connmark match  0x2/0x33
     120     4800 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0            mark match ! 0x0/0x3
  100096  4003840 NFQUEUE    0    --  *      *       0.0.0.0/0            0.0.0.0/0            NFQUEUE num 0 bypass
"""


def test_failed_open_is_what_reached_the_rule_and_nothing_else_accounts_for():
    from chokepoint.backends.censord import summary
    from chokepoint.backends.nfqueue import failed_open, nfqueue_rule_packets

    assert nfqueue_rule_packets(LISTING) == 100096 and nfqueue_rule_packets("") == 0
    kernel_queue = {"waiting": 4000, "queue_dropped": 0, "user_dropped": 0}
    assert failed_open(100096, 57717, kernel_queue) == 100096 - 57717 - 4000
    assert failed_open(100, 90, {"waiting": 20}) == 0  # never negative
    stats = {
        "packets": {"seen": 57717},
        "flows": {"created": 57717, "evicted": 10, "evicted_unassured": 10, "emergency_entered": 1},
        "backend": {
            "overload": {"when_full": "accept (fail-open)", "failed_open": None, "queue_dropped": 0, "user_dropped": 0}
        },
    }
    line = summary(stats)
    assert "57717 packets seen" in line and "10 evicted (10 unassured)" in line and "failed open ?" in line
