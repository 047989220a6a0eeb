"""``analyze --ray`` on a local Ray head: speed-up from 1 to 2 workers and per-worker throughput, against
nfstream on the same capture in the same run (the anchor).

Starts its own head on loopback (``--num-cpus=2``; stopped with ``ray stop`` at the end, also on failure),
writes the benchmarks' mixed short-flow capture, and times ``analyze_on_ray`` with the capture split by flow
hash into 1 and 2 shards (each shard one task on one worker), best of ``--repeats``, after a warm-up that
starts the workers and loads the profile in them. On this 2-core machine the two workers share the cores
with everything else that runs; on a cluster each worker has its own.

Usage: python bench/ray_scale.py [--flows N] [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _synthetic import write_synthetic  # noqa: E402

RAY = Path(sys.executable).with_name("ray")


def nfstream_rate(path: Path) -> float | None:
    """Packets per second of nfstream (n_dissections=20, as bench/engine_throughput.py), or None."""
    try:
        from nfstream import NFStreamer
    except ImportError:
        return None
    start = time.perf_counter()
    packets = sum(f.bidirectional_packets for f in NFStreamer(source=str(path), n_dissections=20, n_meters=1))
    return packets / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import ray

    from chokepoint.backends.raycluster import ProfileSpec, analyze_on_ray

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = [str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
    start += ["--include-dashboard=false", "--disable-usage-stats"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mixed.pcap"
        packets = write_synthetic(path, args.flows)
        print(f"capture: {packets} packets, {args.flows} flows, {path.stat().st_size / 1e6:.1f} MB")
        anchor = nfstream_rate(path)
        try:
            subprocess.run(start, check=True, capture_output=True, timeout=120)
            ray.init(address=f"127.0.0.1:{port}", logging_level="ERROR", log_to_driver=False)
            spec = ProfileSpec("gfw")
            for _ in range(3):  # warm-up: both workers started, modules imported, profile loaded
                analyze_on_ray([str(path)], spec, shards=2)
            best = {}
            for _ in range(max(1, args.repeats)):
                for workers in (1, 2):
                    t0 = time.perf_counter()
                    result = analyze_on_ray([str(path)], spec, shards=workers)[0]
                    seconds = time.perf_counter() - t0
                    best[workers] = min(best.get(workers, seconds), seconds)
                    assert result.packets == packets
        finally:
            ray.shutdown()
            subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)
    print(f"{'workers':<9}{'seconds':>9}{'packets/s':>12}{'per worker':>12}{'vs nfstream':>13}")
    for workers, seconds in best.items():
        rate = packets / seconds
        ratio = f"{rate / anchor:.2f}x" if anchor else "n/a"
        print(f"{workers:<9}{seconds:>9.2f}{rate:>12,.0f}{rate / workers:>12,.0f}{ratio:>13}")
    print(
        f"speed-up 1 -> 2 workers: {best[1] / best[2]:.2f}x (load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)"
    )
    print(f"nfstream (anchor, same capture): {anchor:,.0f} packets/s" if anchor else "nfstream: not installed")


if __name__ == "__main__":
    main()
