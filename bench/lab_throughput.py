"""Lab benchmark: what the inline censor costs on the wire, against the same lab with the censor bypassed.

One run (root; holds the lab session lock, brings the lab up itself and takes it down in a ``finally``):

1. ``lab up --profile gfw --mode inline --no-services --flat``, an iperf3 server and a tiny accept-and-close server in
   ``cpk-server``.
2. Throughput: iperf3 client -> server (one TCP stream, ``--seconds`` each, ``--reps`` repetitions, median)
   through the censor, alternating with the censor *bypassed*: the two jumps of the censor's kernel program in
   ``mangle FORWARD`` removed (no NFQUEUE, no conntrack marks; the lab is then a plain router, as with
   ``lab up --no-censor``) and put back. Ratio inline / bypassed (target >= 0.9).
3. Verdict latency over ``--connections`` sequential new TCP connections (connect, server closes, close): the
   censor's own first-packet latency (time in the NFQUEUE callback, ``censor-stats.json`` ->
   ``backend.verdict_latency.first_packet``) and the client-side connect() time with and without the censor.
4. Connection rate: ``--ramp`` steps of offered new connections per second (open loop: ``--clients``
   processes start connections at that rate whether or not earlier ones completed, for ``--ramp-seconds``);
   per step the rate completed and whether the censor *failed open*. Failing open (``NFQA_CFG_F_FAIL_OPEN``: the
   kernel accepts what it cannot queue) increments no kernel counter, so it is measured as the packets that hit
   the NFQUEUE rule (its iptables counter) minus the packets the daemon received (its ``packets.queued``);
   ``queue_dropped``/``user_dropped`` of ``/proc/net/netfilter/nfnetlink_queue`` are shown too. The same steps
   run bypassed as the anchor.

Usage: ``sudo .venv/bin/python bench/lab_throughput.py [--profile gfw] [--reps 3] [--seconds 5]
[--connections 1000] [--ramp 1000,2000,...] [--ramp-seconds 3] [--clients 4] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from chokepoint import lab
from chokepoint.backends.kernel import CHAIN, FAST_PATH
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

CLIENT, CENSOR, SERVER = f"{PREFIX}client", f"{PREFIX}censor", f"{PREFIX}server"
SERVER_IP = "198.19.0.2"
IPERF_PORT = 5201
ACCEPT_PORT = 5300

#: In cpk-server: accept and close at once (the server closes first, so no TIME_WAIT piles up on the client).
ACCEPT_SERVER = """
import os, socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen(4096)
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    conn.close()
"""

#: In cpk-client: argv[3] sequential connections to argv[1]:argv[2] (connect, wait for the server's FIN, close);
#: connect() times in microseconds.
SEQUENTIAL = """
import json, socket, sys, time
address, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = failed = 0
connect_us = []
began = time.perf_counter()
for _ in range(count):
    sock = socket.socket()
    sock.settimeout(1.0)
    try:
        t = time.perf_counter()
        sock.connect((address, port))
        connect_us.append(round((time.perf_counter() - t) * 1e6, 1))
        sock.recv(1)
        ok += 1
    except OSError:
        failed += 1
    finally:
        sock.close()
print(json.dumps({"ok": ok, "failed": failed, "seconds": time.perf_counter() - began, "connect_us": connect_us}))
"""

#: In cpk-client: an open-loop load - new connections to argv[1]:argv[2] at argv[3] per second for argv[4] s
#: from wall-clock time argv[5], whether or not earlier ones completed (non-blocking connect; at most 1 s per
#: attempt; closed with an RST, SO_LINGER 0, so no TIME_WAIT exhausts the client's ports).
OPEN_LOOP = """
import errno, json, selectors, socket, struct, sys, time
address, port, rate, seconds, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
LINGER_RST = struct.pack("ii", 1, 0)
sel = selectors.DefaultSelector()
pending = {}
ok = timeouts = errors = started = 0
connect_us = []
while time.time() < start:
    time.sleep(min(0.01, start - time.time()))
t0 = time.perf_counter()
def finish(sock, good):
    global ok, errors
    sel.unregister(sock)
    began = pending.pop(sock)
    if good:
        ok += 1
        connect_us.append(round((time.perf_counter() - began) * 1e6, 1))
    else:
        errors += 1
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    sock.close()
while True:
    now = time.perf_counter() - t0
    if now < seconds:
        while started < rate * now:
            sock = socket.socket()
            sock.setblocking(False)
            started += 1
            code = sock.connect_ex((address, port))
            if code not in (0, errno.EINPROGRESS):
                errors += 1
                sock.close()
                continue
            pending[sock] = time.perf_counter()
            sel.register(sock, selectors.EVENT_WRITE)
    elif not pending:
        break
    for key, _ in sel.select(0.001):
        sock = key.fileobj
        finish(sock, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
    limit = time.perf_counter() - 1.0
    for sock in [s for s, began in pending.items() if began < limit]:
        sel.unregister(sock)
        pending.pop(sock)
        sock.close()
        timeouts += 1
print(json.dumps({"started": started, "ok": ok, "timeouts": timeouts, "errors": errors, "connect_us": connect_us}))
"""


def say(text: str) -> None:
    print(text, flush=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


class Bench:
    def __init__(self, state: st.LabState) -> None:
        self.state = state
        self.helpers: list[subprocess.Popen] = []
        self.bypassed = False

    # -- helpers in the namespaces ----------------------------------------------------------------------
    def start_servers(self) -> None:
        iperf = subprocess.Popen(
            system.in_netns(["iperf3", "-s", "-B", SERVER_IP, "-p", str(IPERF_PORT)], SERVER),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.helpers.append(iperf)
        for _ in range(2):  # two acceptors on one port (SO_REUSEPORT): the server is not the bottleneck
            proc = subprocess.Popen(
                system.in_netns([sys.executable, "-c", ACCEPT_SERVER, SERVER_IP, str(ACCEPT_PORT)], SERVER),
                stdout=subprocess.PIPE,
                text=True,
            )
            self.helpers.append(proc)
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the accept server did not start")
        deadline = time.monotonic() + 5
        while f":{IPERF_PORT}" not in system.run(["ss", "-Hltn"], netns=SERVER).stdout.decode():
            if time.monotonic() > deadline or iperf.poll() is not None:
                raise RuntimeError("the iperf3 server did not start")
            time.sleep(0.05)

    def stop_servers(self) -> None:
        for proc in self.helpers:
            proc.kill()
            proc.wait()
        self.helpers.clear()

    # -- the censor ---------------------------------------------------------------------------------------
    def bypass(self, on: bool) -> None:
        """Remove (``on``) or restore the censor's two jumps at the top of ``mangle FORWARD`` (IPv4 and IPv6)."""
        if on == self.bypassed:
            return
        for v6 in (False, True):
            if on:
                system.iptables(["-t", "mangle", "-D", "FORWARD", *FAST_PATH], CENSOR, v6)
                system.iptables(["-t", "mangle", "-D", "FORWARD", "-j", CHAIN], CENSOR, v6)
            else:
                system.iptables(["-t", "mangle", "-I", "FORWARD", "1", *FAST_PATH], CENSOR, v6)
                system.iptables(["-t", "mangle", "-I", "FORWARD", "2", "-j", CHAIN], CENSOR, v6)
        self.bypassed = on

    def stats(self) -> dict[str, Any]:
        """Counters the daemon wrote after this call, once the queue is empty."""
        since = time.time()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            data, _ = self.state.read_stats()
            if data and data["updated"] > since and not data["backend"].get("kernel_queue", {}).get("waiting"):
                return data
            time.sleep(0.1)
        raise RuntimeError("censor-stats.json was not rewritten (is the censor alive?)")

    def nfqueue_rule_packets(self) -> int:
        """Packets that reached the NFQUEUE rule (queued, or accepted by the kernel when it could not queue)."""
        listing = system.iptables(["-t", "mangle", "-L", CHAIN, "-n", "-v", "-x"], CENSOR).stdout.decode()
        return sum(int(line.split()[0]) for line in listing.splitlines() if "NFQUEUE" in line)

    # -- measurements -------------------------------------------------------------------------------------
    def iperf(self, seconds: float) -> float:
        out = system.run(
            ["iperf3", "-c", SERVER_IP, "-p", str(IPERF_PORT), "-t", f"{seconds:g}", "-J"],
            netns=CLIENT,
            timeout=seconds + 30,
        ).stdout
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9

    def sequential(self, count: int) -> dict[str, Any]:
        """``count`` connections one after the other: connect() time percentiles."""
        proc = system.run(
            [sys.executable, "-c", SEQUENTIAL, SERVER_IP, str(ACCEPT_PORT), str(count)],
            netns=CLIENT,
            timeout=count * 1.5 + 30,
        )
        result = json.loads(proc.stdout)
        times = result.pop("connect_us")
        return result | {"connect_p50_us": pct(times, 0.5), "connect_p99_us": pct(times, 0.99)}

    def open_loop(self, rate: float, seconds: float, processes: int) -> dict[str, Any]:
        """New connections offered at ``rate`` per second in total by ``processes`` clients for ``seconds``."""
        start = time.time() + 0.3 + 0.1 * processes
        argv = [
            sys.executable,
            "-c",
            OPEN_LOOP,
            SERVER_IP,
            str(ACCEPT_PORT),
            f"{rate / processes:g}",
            f"{seconds:g}",
            f"{start:.3f}",
        ]
        procs = [
            subprocess.Popen(system.in_netns(argv, CLIENT), stdout=subprocess.PIPE, text=True) for _ in range(processes)
        ]
        results = [json.loads(proc.communicate(timeout=seconds + 60)[0]) for proc in procs]
        times = [t for r in results for t in r["connect_us"]]
        total = {key: sum(r[key] for r in results) for key in ("started", "ok", "timeouts", "errors")}
        return total | {
            "offered": rate,
            "rate": total["ok"] / seconds,
            "connect_p50_us": pct(times, 0.5),
            "connect_p99_us": pct(times, 0.99),
        }

    def ramp_step(self, rate: float, seconds: float, processes: int) -> dict[str, Any]:
        """One open-loop step; with the censor in place also how many packets it failed open."""
        if self.bypassed:
            return self.open_loop(rate, seconds, processes)
        stats = self.stats()
        before_rule, before_queued = self.nfqueue_rule_packets(), stats["packets"]["queued"]
        before_kq = stats["backend"]["kernel_queue"]
        result = self.open_loop(rate, seconds, processes)
        stats = self.stats()
        rule = self.nfqueue_rule_packets() - before_rule
        queued = stats["packets"]["queued"] - before_queued
        kq = stats["backend"]["kernel_queue"]
        return result | {
            "nfqueue_packets": rule,
            "daemon_queued": queued,
            "failed_open": max(0, rule - queued),
            "queue_dropped": kq.get("queue_dropped", 0) - before_kq.get("queue_dropped", 0),
            "user_dropped": kq.get("user_dropped", 0) - before_kq.get("user_dropped", 0),
            "censor_errors": stats["errors"],
        }


@contextmanager
def lab_session(profile: str) -> Iterator[st.LabState]:
    """The lab session lock, the lab up (inline, no services), always taken down again."""
    ours = set(topo.default_topology().namespaces())
    keep = lambda: [ns for ns in topo.lab_namespaces() if ns not in ours]  # noqa: E731 (other suites' namespaces)
    with st.session_lock(timeout=600):
        lab.down(keep=keep())
        try:
            # flat (distance=False): the far side's delay stage (one Python process, ~200 Mbit/s) would be the
            # bottleneck measured instead of the censor
            yield lab.up(
                profile, "inline", services=False, seed=1, distance=False, say=lambda line: say(f"  lab: {line}")
            )
        finally:
            report = lab.down(keep=keep())
            if report.errors:
                say(f"lab down problems: {report.errors}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="gfw")
    parser.add_argument("--reps", type=int, default=3, help="iperf3 repetitions per side (median)")
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 -t")
    parser.add_argument("--connections", type=int, default=1000, help="sequential connections for the latency")
    parser.add_argument(
        "--ramp",
        default="1000,2000,3000,4000,5000,6000,8000,12000,16000",
        help="offered new connections per second, one step each (stops at the first fail-open)",
    )
    parser.add_argument("--ramp-seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=4, help="client processes sharing the offered rate")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, NFQUEUE)")
    for tool in ("iperf3", "iptables", "ip", "ss"):
        if shutil.which(tool) is None:
            parser.error(f"`{tool}` is not installed")
    steps = [float(n) for n in args.ramp.split(",") if n.strip()]
    results: dict[str, Any] = {"profile": args.profile, "reps": args.reps, "seconds": args.seconds}

    say(f"lab_throughput: profile {args.profile}, inline; anchor = the same lab with the censor bypassed")
    with lab_session(args.profile) as state:
        bench = Bench(state)
        try:
            bench.start_servers()
            # the client namespace may open many connections: the whole port range, and no TIME_WAIT reuse wait
            system.sysctl({"net.ipv4.ip_local_port_range": "1024 65535", "net.ipv4.tcp_tw_reuse": 1}, CLIENT)
            results["iperf_gbps"] = throughput(bench, args)
            results["latency"] = latency(bench, args)
            results["ramp"] = connection_rate(bench, args, steps)
            results["censor_stats"] = bench.stats()
        finally:
            bench.stop_servers()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def throughput(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """iperf3 inline and bypassed, alternating, so drift on a shared machine hits both sides alike."""
    inline, bypassed = [], []
    for rep in range(args.reps):
        bench.bypass(False)
        inline.append(bench.iperf(args.seconds))
        bench.bypass(True)
        bypassed.append(bench.iperf(args.seconds))
        say(f"  iperf3 rep {rep + 1}: inline {inline[-1]:.2f} Gbit/s, bypassed {bypassed[-1]:.2f} Gbit/s")
    med_in, med_by = statistics.median(inline), statistics.median(bypassed)
    say(
        f"throughput: inline {med_in:.2f} Gbit/s vs bypassed {med_by:.2f} Gbit/s (median of {args.reps}, "
        f"{args.seconds:g} s, one stream): ratio {ratio(med_in, med_by)} (target >= 0.9)"
    )
    return {
        "inline": inline,
        "bypassed": bypassed,
        "inline_median": med_in,
        "bypassed_median": med_by,
        "ratio": med_in / med_by,
    }


def latency(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    """The censor's first-packet verdict latency over ``args.connections`` new connections (read from its own
    counters, which keep the last 8192 samples: every flow's first packet since the lab came up, so these
    connections and the few iperf3 ones), and the client's connect() time with and without the censor."""
    bench.bypass(False)
    seq_in = bench.sequential(args.connections)
    censor = bench.stats()["backend"]["verdict_latency"]
    bench.bypass(True)
    seq_by = bench.sequential(args.connections)
    first, anyp = censor.get("first_packet", {}), censor.get("any_packet", {})
    say(
        f"verdict latency (censor's own, first packet of each flow, {first.get('samples')} samples): "
        f"p50 {first.get('p50_us')} us, p99 {first.get('p99_us')} us (target p99 <= 1000 us); "
        f"any queued packet: p50 {anyp.get('p50_us')} us, p99 {anyp.get('p99_us')} us"
    )
    say(
        f"connect() over {args.connections} sequential connections: inline p50 {seq_in['connect_p50_us']:.0f} us "
        f"p99 {seq_in['connect_p99_us']:.0f} us; bypassed p50 {seq_by['connect_p50_us']:.0f} us "
        f"p99 {seq_by['connect_p99_us']:.0f} us; ratio p50 {ratio(seq_in['connect_p50_us'], seq_by['connect_p50_us'])}"
        f", p99 {ratio(seq_in['connect_p99_us'], seq_by['connect_p99_us'])}; "
        f"failed inline {seq_in['failed']}, bypassed {seq_by['failed']}"
    )
    return {"censor": censor, "connect_inline": seq_in, "connect_bypassed": seq_by}


def connection_rate(bench: Bench, args: argparse.Namespace, steps: list[float]) -> list[dict[str, Any]]:
    """Open-loop steps of offered new connections/s, bypassed (the anchor) then inline, until the censor fails
    open (or drops: fail-closed)."""
    ramp: list[dict[str, Any]] = []
    sustained = None
    for offered in steps:
        bench.bypass(True)
        anchor = bench.ramp_step(offered, args.ramp_seconds, args.clients)
        bench.bypass(False)
        step = bench.ramp_step(offered, args.ramp_seconds, args.clients) | {"anchor": anchor}
        ramp.append(step)
        say(
            f"  offered {offered:7.0f}/s: inline {step['rate']:7.0f} conn/s, connect p99 "
            f"{step['connect_p99_us']:.0f} us, timeouts {step['timeouts']} (bypassed {anchor['rate']:7.0f} conn/s, "
            f"p99 {anchor['connect_p99_us']:.0f} us, timeouts {anchor['timeouts']}; ratio "
            f"{ratio(step['rate'], anchor['rate'])}); failed open {step['failed_open']} of {step['nfqueue_packets']} "
            f"packets, queue_dropped {step['queue_dropped']}, user_dropped {step['user_dropped']}"
        )
        if step["failed_open"] or step["queue_dropped"] or step["user_dropped"]:
            break
        sustained = step
    if sustained is None:
        say("connection rate: the censor failed open already at the first step")
    elif sustained is ramp[-1]:
        say(
            f"connection rate: no fail-open up to the last step: {sustained['rate']:.0f} new conn/s completed of "
            f"{sustained['offered']:.0f}/s offered (bypassed: {sustained['anchor']['rate']:.0f}/s); raise --ramp"
        )
    else:
        say(
            f"connection rate: sustained {sustained['rate']:.0f} new conn/s ({sustained['offered']:.0f}/s offered, "
            f"ratio {ratio(sustained['rate'], sustained['anchor']['rate'])} of bypassed) without failing open; "
            f"at {ramp[-1]['offered']:.0f}/s offered it failed open ({ramp[-1]['failed_open']} packets)"
        )
    return ramp


if __name__ == "__main__":
    sys.exit(main())
