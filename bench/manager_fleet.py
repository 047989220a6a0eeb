"""Fleet benchmark: how fast a list change reaches every censor node, and whether the event pipeline keeps up.

Root; brings its own manager (a real ``chokepoint manager serve`` process, SQLite) and labs up, and everything
down in a ``finally``. Run with ``CHOKEPOINT_LAB=<name>`` to use a lab of your own.

1. **Propagation**, for each N in ``--nodes`` (default 1,3,6): ``lab up --nodes N --manager URL``; a *prober*
   in every node's client namespace opens TLS connections with an SNI over and over (a real client) until one is
   reset. Per update: the prober of every node starts on a new name, the benchmark pushes the list with that
   name added (``POST /deployments/D/lists/blocked``), and the update's propagation time is from just before the
   API call to the moment the *last* node's prober was reset. ``--updates`` (>= 50) updates per N: p50 and p99.
   Anchor, same lab, same probers: the censors' own swap, the list written straight into every worker's control
   directory (no manager, no agent): the ratio is manager path / direct path.
2. **Event ingest** (one node): open-loop new TCP connections at each rate of ``--rates`` for ``--seconds``;
   every connection becomes a flow event (``events.jsonl``) that the agent forwards to the manager. Reported per
   rate: events written by the censor, stored by the manager, lost anywhere (written - stored: the agent's and
   the manager's drop counters must account for every one), the stored rate and how long the store took to
   catch up after the load stopped.

Usage: ``sudo .venv/bin/python bench/manager_fleet.py [--nodes 1,3,6] [--updates 50] [--rates 1000,2000,4000,6000]
[--seconds 3] [--json FILE]``. Target: propagation p99 <= 1 s; zero events lost at the lab's highest sustained
new-connection rate (``bench/lab_throughput.py``: about 6000/s on the 2-core development machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.manager.conftest import start_manager  # noqa: E402

from chokepoint import lab  # noqa: E402
from chokepoint.backends.control import APPLIED_FILE, read_json, write_json_atomic  # noqa: E402
from chokepoint.lab import fleet as fm  # noqa: E402
from chokepoint.lab import state as st  # noqa: E402
from chokepoint.lab import system  # noqa: E402
from chokepoint.manager.client import ManagerClient  # noqa: E402

PROFILE = """\
profile: {name: bench-fleet, title: fleet benchmark, country: XX, observed: "2026-12", description: bench, cite: [bench]}
engine: {tcp_closed_timeout: 1.0, tcp_timeout: 30.0}
lists:
  blocked: {kind: domain, items: [blocked.test], cite: bench}
rules:
  - {id: block-sni, action: reset, cite: bench, when: {tls.sni: {in_list: blocked}}}
"""

#: In a client namespace: for each name read from stdin, TLS ClientHellos with that SNI to the lab server until
#: one is reset; prints "<name> <epoch seconds when reset>".
PROBER = r"""
import socket, sys, time
from chokepoint.packet.samples import tls_client_hello
print("ready", flush=True)
for line in sys.stdin:
    name = line.strip()
    hello = tls_client_hello(name)
    print("probing", flush=True)
    while True:
        try:
            sock = socket.create_connection(("198.19.0.10", 443), timeout=1.0)
            sock.sendall(hello)
            data = sock.recv(1)
            sock.close()
            if not data:
                raise ConnectionResetError
        except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
            print(f"{name} {time.time():.6f}", flush=True)
            break
        except OSError:
            pass
        time.sleep(0.002)
"""


class Prober:
    def __init__(self, namespace: str) -> None:
        argv = system.in_netns([sys.executable, "-c", PROBER], namespace)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout.readline().strip() == "ready"

    def start(self, name: str) -> None:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "probing"

    def blocked_at(self) -> float:
        return float(self.proc.stdout.readline().split()[1])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def propagation(nodes: int, updates: int, tmp: Path, say) -> dict[str, Any]:
    manager = start_manager(f"sqlite:///{tmp / f'prop{nodes}.db'}", tmp / f"prop{nodes}.log")
    profile = tmp / "fleet.yaml"
    profile.write_text(PROFILE)
    probers: list[Prober] = []
    try:
        state = lab.up(str(profile), "inline", nodes=nodes, manager=manager.url, manager_token=manager.admin)
        fleet = fm.Fleet.load(state.state_dir)
        client = ManagerClient(manager.url, manager.admin)
        probers = [Prober(state.namespace(fm.node_hosts(i)[0])) for i in range(1, nodes + 1)]
        names: list[str] = ["blocked.test"]
        via_manager = []
        for k in range(updates):
            name = f"m{nodes}-{k}.test"
            for p in probers:
                p.start(name)
            names.append(name)
            t0 = time.time()
            client.push_list(fleet.deployment, "blocked", "\n".join(names) + "\n", expected=k, message=name)
            via_manager.append(max(p.blocked_at() for p in probers) - t0)
        # the anchor: the same change written straight into the workers' control directories
        direct = []
        seq = 10**9
        workers = [fleet.worker_dir(state.state_dir, i, 0) for i in range(1, nodes + 1)]
        for k in range(min(updates, 20)):
            name = f"d{nodes}-{k}.test"
            for p in probers:
                p.start(name)
            names.append(name)
            listing = tmp / f"direct-{nodes}-{k}.txt"
            listing.write_text("\n".join(names) + "\n")
            seq += 1
            t0 = time.time()
            for w in workers:
                write_json_atomic(
                    w / "control" / "request.json", {"seq": seq, "version": name, "lists": {"blocked": str(listing)}}
                )
            direct.append(max(p.blocked_at() for p in probers) - t0)
        swap_ms = [read_json(w / "control" / APPLIED_FILE)["took_ms"] for w in workers]
        result = {
            "nodes": nodes,
            "updates": len(via_manager),
            "p50_s": round(percentile(via_manager, 0.5), 4),
            "p99_s": round(percentile(via_manager, 0.99), 4),
            "max_s": round(max(via_manager), 4),
            "direct_p50_s": round(percentile(direct, 0.5), 4),
            "direct_p99_s": round(percentile(direct, 0.99), 4),
            "ratio_p50": round(percentile(via_manager, 0.5) / percentile(direct, 0.5), 2),
            "censor_swap_ms_last": swap_ms,
        }
        say(
            f"propagation N={nodes}: p50 {result['p50_s'] * 1000:.0f} ms, p99 {result['p99_s'] * 1000:.0f} ms over "
            f"{len(via_manager)} updates (target p99 <= 1000 ms); direct to the censors p50 "
            f"{result['direct_p50_s'] * 1000:.0f} ms; ratio {result['ratio_p50']}x"
        )
        return result
    finally:
        for p in probers:
            p.close()
        lab.down()
        manager.stop()


def ingest(rates: list[float], seconds: float, tmp: Path, say) -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from lab_throughput import ACCEPT_PORT, ACCEPT_SERVER, OPEN_LOOP

    manager = start_manager(f"sqlite:///{tmp / 'ingest.db'}", tmp / "ingest.log")
    profile = tmp / "fleet.yaml"
    profile.write_text(PROFILE)
    results = []
    server = None
    try:
        state = lab.up(str(profile), "inline", manager=manager.url, manager_token=manager.admin, services=False)
        fleet = fm.Fleet.load(state.state_dir)
        worker = fleet.worker_dir(state.state_dir, 1, 0)
        server = subprocess.Popen(
            system.in_netns(
                [sys.executable, "-c", ACCEPT_SERVER, "198.19.0.2", str(ACCEPT_PORT)], state.namespace("server")
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout.readline().strip() == "ready"
        client = ManagerClient(manager.url, manager.admin)

        def stored() -> int:
            return int(client.stats()["counters"].get("events_stored", 0))

        def written() -> int:
            try:
                return sum(1 for _ in (worker / "events.jsonl").open("rb"))
            except FileNotFoundError:
                return 0

        for rate in rates:
            before_written, before_stored = written(), stored()
            start = time.time() + 0.5
            argv = [
                sys.executable,
                "-c",
                OPEN_LOOP,
                "198.19.0.2",
                str(ACCEPT_PORT),
                str(rate),
                str(seconds),
                str(start),
            ]
            load = subprocess.run(
                system.in_netns(argv, state.namespace("client")), capture_output=True, text=True, timeout=seconds + 60
            )
            outcome = json.loads(load.stdout.strip().splitlines()[-1])
            # keep packets flowing so the censor's flow table expires the closed flows (packet-time clock)
            trickle = [sys.executable, "-c", OPEN_LOOP, "198.19.0.2", str(ACCEPT_PORT), "20", "3", str(time.time())]
            subprocess.run(system.in_netns(trickle, state.namespace("client")), capture_output=True, timeout=60)
            load_end = time.time()
            deadline = load_end + 30
            while time.time() < deadline and stored() - before_stored < written() - before_written:
                time.sleep(0.1)
            caught_up = time.time() - load_end
            w, s = written() - before_written, stored() - before_stored
            drops = client.stats()["event_drops"]
            result = {
                "offered_per_s": rate,
                "connections_ok": outcome.get("ok"),
                "events_written": w,
                "events_stored": s,
                "lost": w - s,
                "catch_up_s": round(caught_up, 2),
                "stored_per_s": round(s / (seconds + 3 + caught_up), 1),
                "drop_counters": {k: v for k, v in drops.items() if v},
            }
            results.append(result)
            say(
                f"ingest at {rate:.0f} new conn/s: {w} events written, {s} stored, {w - s} lost, "
                f"store caught up {caught_up:.2f} s after the load; drop counters {result['drop_counters'] or 'all zero'}"
            )
        return results
    finally:
        if server is not None:
            server.kill()
        lab.down()
        manager.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="1,3,6")
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--rates", default="1000,2000,4000,6000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("this benchmark needs root (network namespaces)", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="cpm-bench-"))
    report: dict[str, Any] = {"propagation": [], "ingest": []}
    try:
        with st.session_lock(timeout=600):
            lab.down()
            for n in (int(x) for x in args.nodes.split(",")):
                report["propagation"].append(propagation(n, args.updates, tmp, say))
            if not args.skip_ingest:
                report["ingest"] = ingest([float(r) for r in args.rates.split(",")], args.seconds, tmp, say)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
