"""Lab benchmark: does the far side's user-space delay stage (lab/delay.py) hold its delay under load?

One run (root; takes the lab session lock, brings the lab up itself and takes it down in a ``finally``):
``lab up --profile demo --hops-server 1 --delay-ms D --no-censor``, an iperf3 server in the server namespace;
then ``ping -i 0.01`` from the client to the server, idle and while an iperf3 download (one TCP stream,
``--seconds``) runs through the stage, rate-limited by iperf3 (``--rates``, e.g. 50M) and unlimited. The one-way delay of a ping is half its RTT minus half the lab's RTT
without the stage (measured first, ``--delay-ms 0``). Prints p50/p99 of the one-way delay per phase, its error
against the setting, and the download's throughput.

Usage: ``sudo .venv/bin/python bench/lab_delay.py [--delay-ms 50] [--seconds 10] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from typing import Any

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab.instance import PREFIX

CLIENT, SERVER = f"{PREFIX}client", f"{PREFIX}server"
SERVER_IP = "198.19.0.2"


def pings(count: int, interval: float = 0.01) -> list[float]:
    proc = system.run(
        ["ping", "-n", "-c", str(count), "-i", str(interval), SERVER_IP],
        netns=CLIENT,
        check=False,
        timeout=count * interval + 30,
    )
    return [float(m) for m in re.findall(rb"time=([0-9.]+) ms", proc.stdout)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phase(delay_ms: float, seconds: float, load: bool, rate: str | None = None) -> dict[str, Any]:
    iperf = None
    if load:
        iperf = subprocess.Popen(
            system.in_netns(
                ["iperf3", "-c", SERVER_IP, "-R", "-t", str(seconds), "-J", *(["-b", rate] if rate else [])], CLIENT
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # past slow start
    rtts = pings(int(max(1.0, seconds - 2) / 0.01))
    out: dict[str, Any] = {"load": (rate or "unlimited") if load else None, "samples": len(rtts)}
    if iperf is not None:
        report = json.loads(iperf.communicate(timeout=seconds + 30)[0] or b"{}")
        bps = report.get("end", {}).get("sum_received", {}).get("bits_per_second", 0)
        out["throughput_mbit_s"] = round(bps / 1e6, 1)
    out["rtts"] = rtts
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    parser.add_argument(
        "--rates", default="50M,unlimited", help="iperf3 -b per loaded phase (comma-separated; 'unlimited')"
    )
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"delay_ms": args.delay_ms}
    with st.session_lock(timeout=600):
        try:
            lab.down()
            lab.up("demo", hops_server=1, censor=False, services=False)
            base = pings(200)
            results["base_rtt_ms"] = statistics.median(base)
            lab.down()
            lab.up("demo", hops_server=1, delay_ms=args.delay_ms, censor=False, services=False)
            server = subprocess.Popen(system.in_netns(["iperf3", "-s"], SERVER), stdout=subprocess.DEVNULL)
            time.sleep(0.5)
            try:
                for rate in [None, *args.rates.split(",")]:
                    load = rate is not None
                    ph = phase(args.delay_ms, args.seconds, load, None if rate == "unlimited" else rate)
                    one_way = [(r - results["base_rtt_ms"]) / 2 for r in ph.pop("rtts")]
                    ph["one_way_p50_ms"] = round(percentile(one_way, 0.5), 2)
                    ph["one_way_p99_ms"] = round(percentile(one_way, 0.99), 2)
                    ph["p99_error_pct"] = round(100 * (ph["one_way_p99_ms"] - args.delay_ms) / args.delay_ms, 1)
                    results[f"loaded {rate}" if load else "idle"] = ph
            finally:
                server.kill()
                server.wait()
        finally:
            lab.down()
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
