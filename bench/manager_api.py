"""API benchmark: status and event queries against a manager whose store holds >= 1M events.

No root needed. Fills a SQLite store (``--events``, default 1,000,000 EVE records spread over two deployments,
three nodes each, 20 rules, 6 app protocols, 2000 server names, one day) through the store's own ingest path,
starts a real ``chokepoint manager serve`` process on it and measures, with ``--clients`` concurrent HTTP
clients for ``--seconds`` each, requests per second and latency percentiles of:

- ``GET /healthz`` (the anchor: the same server, no database work),
- ``GET /api/v1/deployments/D`` (status: nodes, versions, desired state),
- ``GET /api/v1/events?deployment=D&limit=100`` (the newest events),
- ``GET /api/v1/events?...&rule=R&since=T-3600`` and ``...&server_name=N`` (filtered queries),
- ``GET /api/v1/deployments/D/top?by=rule&window=300`` (the dashboard's top rules).

Prints each one's requests/s, ratio to the anchor, p50 and p99 (target: query p99 <= 200 ms).
Usage: ``.venv/bin/python bench/manager_api.py [--events 1000000] [--clients 4] [--seconds 5] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.manager.conftest import POLICY, start_manager  # noqa: E402

from chokepoint.manager import db  # noqa: E402
from chokepoint.manager.events import EventStore  # noqa: E402
from chokepoint.manager.store import Store  # noqa: E402

RULES = [f"rule-{i}" for i in range(20)]
PROTOS = ["tls", "http", "dns", "quic", "ssh", "unknown"]
ACTIONS = ["reset", "drop", "dns-forge", "blockpage", "allow"]


def fill(db_url: str, total: int, say) -> dict[str, Any]:
    engine = db.make_engine(db_url)
    db.migrate(engine)
    store = Store(engine)
    deps = []
    for name in ("bench-a", "bench-b"):
        dep = store.create_deployment(name, "api benchmark", "bench")
        store.push_policy(dep["id"], {"policy.yaml": POLICY}, {}, author="bench", message="", expected=0)
        nodes = [store.register_node(dep["id"], f"node{i}", {})["id"] for i in range(1, 4)]
        deps.append((dep["id"], nodes))
    events = EventStore(engine, store.bump, max_events=total * 2)
    rng = random.Random(7)
    now = time.time()
    started = time.perf_counter()
    batch = 5000
    for done in range(0, total, batch):
        dep_id, nodes = deps[(done // batch) % 2]
        records = []
        for k in range(batch):
            i = done + k
            action = ACTIONS[i % len(ACTIONS)]
            records.append(
                {
                    "timestamp": now - 86400 + 86400 * i / total,
                    "flow_id": i,
                    "event_type": "chokepoint" if action != "allow" else "flow",
                    "src_ip": f"198.18.0.{2 + i % 200}",
                    "src_port": 1024 + i % 60000,
                    "dest_ip": f"198.19.0.{10 + i % 20}",
                    "dest_port": 443,
                    "proto": "TCP",
                    "app_proto": PROTOS[i % len(PROTOS)],
                    "tls": {"sni": f"site{rng.randrange(2000)}.test"},
                    "chokepoint": {"action": action, "rule": RULES[i % len(RULES)], "profile": "bench"},
                }
            )
        events.ingest(dep_id, nodes[done // batch % 3], records)
    took = time.perf_counter() - started
    count = events.count()
    say(f"store: {count} events ingested in {took:.1f} s ({count / took:.0f} events/s through the ingest path)")
    engine.dispose()
    return {"events": count, "ingest_s": round(took, 1), "ingest_per_s": round(count / took)}


def hammer(url: str, headers: dict[str, str], clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def run() -> None:
        nonlocal errors
        mine = []
        bad = 0
        with httpx.Client(headers=headers, timeout=30) as client:
            while time.perf_counter() < stop:
                t = time.perf_counter()
                if client.get(url).status_code != 200:
                    bad += 1
                mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=run) for _ in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    def say(line: str) -> None:
        print(line, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="cpm-bench-api-"))
    db_url = f"sqlite:///{tmp / 'api.db'}"
    report: dict[str, Any] = {"store": fill(db_url, args.events, say), "endpoints": {}}
    manager = start_manager(db_url, tmp / "manager.log", "--max-events", str(args.events * 2))
    try:
        headers = {"Authorization": f"Bearer {manager.admin}"}
        since = int(time.time() - 3600)
        api = manager.url + "/api/v1"
        endpoints = {
            "healthz (anchor)": manager.url + "/healthz",
            "status": api + "/deployments/bench-a",
            "events newest 100": api + "/events?deployment=bench-a&limit=100",
            "events by rule, last hour": api + f"/events?deployment=bench-a&rule=rule-7&since={since}&limit=100",
            "events by server name": api + "/events?deployment=bench-a&server_name=site42.test&limit=100",
            "events by node+action": api + "/events?deployment=bench-b&node=node2&action=drop&limit=100",
            "top rules, 5 min": api + "/deployments/bench-a/top?by=rule&window=300",
        }
        anchor = None
        for label, url in endpoints.items():
            hammer(url, headers, 1, 0.5)  # warm the caches
            result = hammer(url, headers, args.clients, args.seconds)
            anchor = anchor or result["per_s"]
            result["ratio_to_anchor"] = round(result["per_s"] / anchor, 3)
            report["endpoints"][label] = result
            say(
                f"{label:<28} {result['per_s']:>8.1f} req/s ({result['ratio_to_anchor']:.3f}x anchor)  "
                f"p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  errors {result['errors']}"
            )
        worst = max(r["p99_ms"] for k, r in report["endpoints"].items() if k != "healthz (anchor)")
        say(f"worst query p99: {worst:.1f} ms (target <= 200 ms) on {report['store']['events']} events")
    finally:
        manager.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
