"""Lab benchmark: a SYN flood through the inline censor — censord's memory stays bounded, an allowed download
keeps working, and what the censor could not look at is counted.

One run (root; holds the lab session lock, brings the lab up itself and takes it down in a ``finally``):

1. ``lab up --profile gfw --mode inline`` (services on: the lab web server), fail-open unless
   ``--fail-closed``.
2. Baseline: an allowed download (curl in the client namespace, ``http://www.example.org/large?bytes=N`` from
   the lab web server 198.19.0.10) without a flood.
3. Ramp: short floods (``chokepoint.lab.synflood``: SYNs from distinct spoofed sources in 10.0.0.0/8 to
   198.19.0.11:80, from the client namespace) at each ``--ramp`` rate; per step the rate the sender achieved,
   the rate the censor namespace received on ``ce0`` and the rate censord itself took from the queue
   (``packets.queued``). The flood rate is the highest step the lab sustains: the sender achieved it and
   ``ce0`` received it (within 5 %).
4. The flood at that rate for ``--seconds``, with censord's RSS (``/proc/PID/status`` VmRSS) and its stats
   sampled every second, and the same allowed download started a third of the way in (by then the flow table
   is usually in emergency mode). RSS after ``--settle`` seconds more without the flood.

Prints the offered/achieved rates, RSS start/peak/end, the download with and without the flood, and censord's
counters: flows created/evicted (unassured)/emergency mode, failed open (packets the kernel accepted
uninspected because the queue was full), kernel queue drops.

Usage: ``sudo CHOKEPOINT_LAB=fr .venv/bin/python bench/inline_flood.py [--profile gfw] [--seconds 60]
[--ramp 10000,20000,50000,100000,200000] [--download-bytes 1000000000] [--fail-closed] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

CLIENT, CENSOR = f"{PREFIX}client", f"{PREFIX}censor"
SITE, FLOOD_TARGET, FLOOD_PORT = "198.19.0.10", "198.19.0.11", 80
HOST = "www.example.org"


def say(text: str) -> None:
    print(text, flush=True)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def link(netns: str, iface: str) -> dict[str, int]:
    stats = system.ip_json(["-s", "link", "show", iface], netns=netns)[0]["stats64"]
    return {
        "rx": stats["rx"]["packets"],
        "rx_dropped": stats["rx"]["dropped"],
        "tx": stats["tx"]["packets"],
        "tx_dropped": stats["tx"]["dropped"],
    }


def conntrack_count() -> int:
    out = system.run(["cat", "/proc/sys/net/netfilter/nf_conntrack_count"], netns=CENSOR, check=False).stdout
    return int(out or 0)


def download(size: int, timeout: float) -> dict[str, Any]:
    """The allowed download: curl in the client namespace; exit code, bytes, seconds, bytes/s."""
    proc = system.run(
        [
            "curl",
            "-sS",
            "-m",
            f"{timeout:g}",
            "-o",
            "/dev/null",
            "--resolve",
            f"{HOST}:80:{SITE}",
            "-w",
            "%{json}",
            f"http://{HOST}/large?bytes={size}",
        ],
        netns=CLIENT,
        check=False,
        timeout=timeout + 30,
    )
    try:
        info = json.loads(proc.stdout)
    except ValueError:
        info = {}
    return {
        "exit": proc.returncode,
        "status": info.get("http_code"),
        "bytes": info.get("size_download", 0),
        "complete": proc.returncode == 0 and info.get("size_download") == size,
        "seconds": info.get("time_total"),
        "bytes_per_s": info.get("speed_download", 0),
        "stderr": proc.stderr.decode(errors="replace").strip()[:300],
    }


def start_flood(rate: float, seconds: float) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "chokepoint.lab.synflood", FLOOD_TARGET, str(FLOOD_PORT)]
    argv += ["--rate", f"{rate:g}", "--seconds", f"{seconds:g}"]
    return subprocess.Popen(system.in_netns(argv, CLIENT), stdout=subprocess.PIPE, text=True)


def flood_result(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the flood sender failed ({proc.returncode}): {out}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class Lab:
    def __init__(self, state: st.LabState) -> None:
        self.state = state
        self.pid = state.processes["censor"].pid

    def stats(self) -> dict[str, Any]:
        data, _ = self.state.read_stats()
        if not data:
            raise RuntimeError("no censor-stats.json")
        return data

    def fresh_stats(self, drained: bool = True) -> dict[str, Any]:
        """Counters the daemon wrote after this call (``drained``: once its queue is empty)."""
        since = time.time()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            data = self.stats()
            waiting = data["backend"].get("kernel_queue", {}).get("waiting")
            if data["updated"] > since and not (drained and waiting):
                return data
            time.sleep(0.2)
        raise RuntimeError("censor-stats.json was not rewritten (is the censor alive?)")


def sample(lab_: Lab, began: float) -> dict[str, Any]:
    data = lab_.stats()
    flows, overload = data["flows"], data["backend"].get("overload", {})
    return {
        "t": round(time.monotonic() - began, 2),
        "rss_kb": rss_kb(lab_.pid),
        "queued": data["packets"].get("queued", 0),
        "flows_active": flows["active"],
        "created": flows["created"],
        "evicted": flows.get("evicted"),
        "emergency": flows.get("emergency"),
        "failed_open": overload.get("failed_open"),
        "queue_dropped": overload.get("queue_dropped"),
    }


def ramp(lab_: Lab, rates: list[float], step_seconds: float) -> tuple[float, list[dict[str, Any]]]:
    steps: list[dict[str, Any]] = []
    best = rates[0]
    for rate in rates:
        before_link, before = link(CENSOR, "ce0"), lab_.fresh_stats()
        sent = flood_result(start_flood(rate, step_seconds), step_seconds + 60)
        after_link, after = link(CENSOR, "ce0"), lab_.fresh_stats(drained=False)
        received = after_link["rx"] - before_link["rx"]
        took = (after["packets"]["queued"] - before["packets"]["queued"]) / (after["updated"] - before["updated"])
        step = {
            "offered": rate,
            "sent_rate": sent["rate"],
            "ce0_rate": round(received / sent["seconds"], 1),
            "ce0_dropped": after_link["rx_dropped"] - before_link["rx_dropped"],
            "censord_rate": round(took, 1),
        }
        steps.append(step)
        sustained = sent["rate"] >= 0.95 * rate and received >= 0.95 * sent["sent"]
        say(
            f"  ramp {rate:>8.0f}/s: sender {step['sent_rate']:>9.0f}/s, censor ce0 {step['ce0_rate']:>9.0f}/s, "
            f"censord took {step['censord_rate']:>7.0f}/s{'' if sustained else '  (not sustained)'}"
        )
        if not sustained:
            break
        best = rate
    return best, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="gfw")
    parser.add_argument("--seconds", type=float, default=60.0, help="the main flood's duration")
    parser.add_argument("--ramp", default="10000,20000,50000,100000,200000", help="flood rates tried, packets/s")
    parser.add_argument("--ramp-seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=None, help="skip the ramp: flood at this rate")
    parser.add_argument("--download-bytes", type=int, default=1_000_000_000)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the flood before the last RSS")
    parser.add_argument("--fail-closed", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, NFQUEUE, a raw socket)")
    results: dict[str, Any] = {"profile": args.profile, "fail_closed": args.fail_closed, "seconds": args.seconds}
    results["settle"] = args.settle
    say(f"inline_flood: profile {args.profile}, inline, fails {'closed' if args.fail_closed else 'open'}")
    with lab_session(args.profile, args.fail_closed) as state:
        lab_ = Lab(state)
        timeout = 600.0
        base = download(args.download_bytes, timeout)
        results["download_without_flood"] = base
        say(f"download without flood: {_download_text(base)}")
        rss_start = rss_kb(lab_.pid)
        rate = args.rate
        if rate is None:
            rate, results["ramp"] = ramp(lab_, [float(r) for r in args.ramp.split(",")], args.ramp_seconds)
        results["rate_offered"] = rate
        say(f"flood: {rate:.0f} SYNs/s for {args.seconds:g} s; censord RSS before any flood {rss_start / 1024:.1f} MB")
        before = lab_.fresh_stats()
        link_before = link(CENSOR, "ce0")
        began = time.monotonic()
        samples: list[dict[str, Any]] = []
        done = threading.Event()

        def sampler() -> None:
            while not done.wait(1.0):
                try:
                    samples.append(sample(lab_, began))
                except (OSError, RuntimeError, KeyError, ValueError):
                    pass

        thread = threading.Thread(target=sampler, daemon=True)
        flood = start_flood(rate, args.seconds)
        thread.start()
        time.sleep(args.seconds / 3)
        under = download(args.download_bytes, timeout)
        sent = flood_result(flood, args.seconds + 120)
        conntrack = conntrack_count()
        during = lab_.fresh_stats(drained=False)
        after = lab_.fresh_stats()
        link_after = link(CENSOR, "ce0")
        done.set()
        thread.join()
        time.sleep(args.settle)
        rss_settled = rss_kb(lab_.pid)
        final = lab_.fresh_stats()
        results.update(
            download_under_flood=under,
            sender=sent,
            samples=samples,
            rss_kb={
                "start": rss_start,
                "flood_start": samples[0]["rss_kb"] if samples else None,
                "peak": max(s["rss_kb"] for s in samples) if samples else None,
                "end": samples[-1]["rss_kb"] if samples else None,
                "settled": rss_settled,
            },
            censord={"before": _counters(before), "after": _counters(after), "settled": _counters(final)},
            censord_rate=(during["packets"]["queued"] - before["packets"]["queued"])
            / (during["updated"] - before["updated"]),
            ce0_received=link_after["rx"] - link_before["rx"],
            ce0_dropped=link_after["rx_dropped"] - link_before["rx_dropped"],
            conntrack_entries=conntrack,
        )
    _report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if under["complete"] else 1


def _counters(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "packets": stats["packets"],
        "flows": stats["flows"],
        "overload": stats["backend"].get("overload"),
        "kernel_queue": stats["backend"].get("kernel_queue"),
        "errors": stats["errors"],
    }


def _download_text(d: dict[str, Any]) -> str:
    state = "complete" if d["complete"] else f"INCOMPLETE (curl exit {d['exit']}: {d['stderr']})"
    return f"{d['bytes'] / 1e6:.0f} MB {state} in {d['seconds']} s, {d['bytes_per_s'] / 1e6:.1f} MB/s"


def _report(r: dict[str, Any]) -> None:
    before, after = r["censord"]["before"], r["censord"]["after"]
    sent, seconds = r["sender"], r["sender"]["seconds"]
    rss = r["rss_kb"]
    mb = lambda kb: f"{kb / 1024:.1f} MB" if kb is not None else "?"  # noqa: E731
    say(
        f"flood rate: offered {r['rate_offered']:.0f}/s, sender achieved {sent['rate']:.0f}/s "
        f"({sent['sent']} SYNs in {seconds} s), censor ce0 received {r['ce0_received'] / seconds:.0f}/s "
        f"(dropped {r['ce0_dropped']}), censord took {r['censord_rate']:.0f}/s from its queue"
    )
    say(
        f"censord RSS: before any flood {mb(rss['start'])}, flood start {mb(rss['flood_start'])}, "
        f"peak {mb(rss['peak'])}, end {mb(rss['end'])}, {r['settle']:g} s after the flood {mb(rss['settled'])}"
    )
    flows, overload = after["flows"], after["overload"] or {}
    say(
        f"flows: created {flows['created'] - before['flows']['created']}, evicted "
        f"{flows['evicted'] - before['flows']['evicted']} (unassured "
        f"{flows['evicted_unassured'] - before['flows']['evicted_unassured']}), emergency mode entered "
        f"{flows['emergency_entered']} times, active at the end {flows['active']} "
        f"(budget {flows['budget_used_mb']}/{flows['budget_mb']} MB); conntrack entries {r['conntrack_entries']}"
    )
    b_over = before["overload"] or {}
    say(
        f"queue full -> {overload.get('when_full')}: failed open "
        f"{(overload.get('failed_open') or 0) - (b_over.get('failed_open') or 0)}, kernel dropped "
        f"{overload.get('queue_dropped', 0) - b_over.get('queue_dropped', 0)} (queue full) + "
        f"{overload.get('user_dropped', 0) - b_over.get('user_dropped', 0)} (netlink); errors {after['errors']}"
    )
    base, under = r["download_without_flood"], r["download_under_flood"]
    ratio = under["bytes_per_s"] / base["bytes_per_s"] if base["bytes_per_s"] else float("nan")
    say(f"download without flood: {_download_text(base)}")
    say(f"download under flood:   {_download_text(under)} ({ratio:.2f}x)")


@contextmanager
def lab_session(profile: str, fail_closed: bool) -> Iterator[st.LabState]:
    """The lab session lock, the lab up (inline, services on), always taken down again."""
    ours = set(topo.default_topology().namespaces())
    keep = lambda: [ns for ns in topo.lab_namespaces() if ns not in ours]  # noqa: E731 (other suites' namespaces)
    with st.session_lock(timeout=600):
        lab.down(keep=keep())
        try:
            yield lab.up(profile, "inline", fail_closed=fail_closed, seed=1, say=lambda line: say(f"  lab: {line}"))
        finally:
            report = lab.down(keep=keep())
            if report.errors:
                say(f"lab down problems: {report.errors}")


if __name__ == "__main__":
    sys.exit(main())
