"""Peak memory of ``chokepoint analyze --profile gfw`` under a SYN flood from distinct sources (issue 12, item 4).

Writes captures of N SYN packets (Ethernet/IPv4/TCP, no payload, never answered; every source address and port
different, 100k packets per second of capture time) to a temporary directory with a struct writer, then runs
``chokepoint analyze CAPTURE --profile gfw --format eve --stats -o FILE`` once per capture in a child process and prints
its peak RSS (``os.wait4``), the run time and the flow-table counters of the EVE ``stats`` record. The target:
flat, at most 500 MB at 10M SYNs with default settings.

Usage: python bench/flood_rss.py [--sizes 100000,1000000] [--ten-million] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Packets per second of capture time (the flood's rate as the capture records it).
RATE = 100_000
_ETH = bytes.fromhex("0200000000020200000000010800")
_DST = bytes((198, 51, 100, 7))
_BATCH = 65536


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_syn_flood(path: Path, count: int) -> None:
    """``count`` SYNs to 198.51.100.7:443 from 10.0.0.0/8 sources, each (address, port) used once."""
    record = struct.Struct("<IIII")
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk = bytearray()
        for i in range(count):
            src = bytes((10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF))
            sport = 1024 + (i >> 24) * 7919 % 60000
            header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0x4000, 64, 6, 0, src, _DST)
            ip = header[:10] + struct.pack("!H", _ip_checksum(header)) + header[12:]
            tcp = struct.pack("!HHIIBBHHH", sport, 443, (i * 2654435761) & 0xFFFFFFFF, 0, 0x50, 0x02, 64240, 0, 0)
            ticks = 1_700_000_000_000_000 + i * 1_000_000 // RATE
            chunk += record.pack(ticks // 1_000_000, ticks % 1_000_000, 54, 54)
            chunk += _ETH + ip + tcp
            if len(chunk) >= _BATCH * 70:
                out.write(chunk)
                chunk.clear()
        out.write(chunk)


def measure(capture: Path, eve: Path) -> dict:
    """Run analyze in a child process; its peak RSS from ``wait4``, its exit code and time, its stats record."""
    args = [sys.executable, "-m", "chokepoint.cli", "analyze", str(capture), "--profile", "gfw"]
    args += ["--format", "eve", "--stats", "-o", str(eve)]
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"analyze failed ({proc.returncode}): {stderr[-2000:]}")
    stats, flows = {}, 0
    with open(eve, "rb") as lines:
        for line in lines:
            if b'"event_type":"stats"' in line:
                stats = json.loads(line)["stats"]
            else:
                flows += 1
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": seconds, "flows": flows, "stats": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated SYN counts")
    parser.add_argument("--ten-million", action="store_true", help="also 10M SYNs (about 700 MB of capture)")
    parser.add_argument("--keep", type=Path, help="write the captures here and keep them")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.ten_million:
        sizes.append(10_000_000)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="flood-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{'SYNs':>10} {'peak RSS MB':>12} {'seconds':>8} {'flows':>9}  flow table")
    try:
        for size in sizes:
            capture = folder / f"syn-{size}.pcap"
            if not capture.exists():
                write_syn_flood(capture, size)
            result = measure(capture, folder / f"syn-{size}.eve.json")
            table = result["stats"].get("flow_table", {})
            counters = ", ".join(f"{k} {v}" for k, v in sorted(table.items()) if v)
            print(
                f"{size:>10} {result['peak_rss_mb']:>12.0f} {result['seconds']:>8.1f} {result['flows']:>9}  {counters}"
            )
            (folder / f"syn-{size}.eve.json").unlink()
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
