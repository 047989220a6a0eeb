"""False positives and detection of the mid-connection QUIC tests (dissect/quic_midstream.py) on real captures.

For every UDP flow of ../shared/data/ndpi/pcap: the flows nDPI does not label QUIC are the negatives, the ones it
does are the positives. On the negatives, the short-header test is run on each direction's first datagrams as the
dispatcher offers them, once as shipped (server port 443 only) and once with the port condition dropped (every
UDP flow, whatever its port), and the long-header test on every datagram. On the positives, every datagram before
the first short header is dropped (the capture began mid-connection), then the same tests run.

It is a report: it always exits 0.

    .venv/bin/python bench/quic_short_header_fp.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from chokepoint.compare.ndpi import parse_ndpi_out
from chokepoint.compare.normalize import flow_key
from chokepoint.dissect.dispatch import MAX_UDP_PROBES
from chokepoint.dissect.quic_midstream import (
    SHORT_HEADER_BYTES,
    SHORT_HEADER_PORTS,
    long_header_sighting,
    short_header_sighting,
)
from chokepoint.flow.key import ip_text
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import open_capture
from chokepoint.packet.record import UDP

REPO = Path(__file__).resolve().parents[1]


def udp_flows(path: Path) -> dict:
    """Direction-free UDP flows: key -> (server port, {direction: [payloads]}), directions from the first packet."""
    decoder = Decoder(True)
    flows: dict = {}
    with open_capture(path) as reader:
        for frame in reader:
            pkt = decoder.decode(frame)
            if pkt is None or pkt.proto != UDP or not pkt.payload:
                continue
            key = flow_key("UDP", ip_text(pkt.src), pkt.sport, ip_text(pkt.dst), pkt.dport)
            if key not in flows:
                server = pkt.dport if pkt.dport < 1024 or pkt.sport >= 1024 else pkt.sport
                flows[key] = (server, ((ip_text(pkt.src), pkt.sport), defaultdict(list)))
            server, (first_src, by_dir) = flows[key]
            by_dir[0 if (ip_text(pkt.src), pkt.sport) == first_src else 1].append(pkt.payload)
    return {key: (server, dict(by_dir)) for key, (server, (_, by_dir)) in flows.items()}


def short_flagged(by_dir: dict, server_port: int, any_port: bool) -> bool:
    if not any_port and server_port not in SHORT_HEADER_PORTS:
        return False
    for datagrams in by_dir.values():
        shown = datagrams[:MAX_UDP_PROBES]
        for n in range(1, len(shown) + 1):
            if short_header_sighting([d[:SHORT_HEADER_BYTES] for d in shown[:n]], [len(d) for d in shown[:n]]):
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    args = parser.parse_args(argv)
    pcaps = args.data / "ndpi" / "pcap"
    if not pcaps.is_dir():
        print(f"../shared/data not found: {pcaps} - nothing to measure")
        return 0
    neg = pos = 0
    fp_443 = fp_any = fp_long = 0
    tp_short = tp_long = 0
    flagged: list[str] = []
    for path in sorted(pcaps.iterdir()):
        result = args.data / "ndpi" / "result" / f"{path.name}.out"
        labels = {f.key: f.master for f in parse_ndpi_out(result)} if result.exists() else {}
        for key, (server_port, by_dir) in udp_flows(path).items():
            is_quic = labels.get(key) == "QUIC"
            if not is_quic:
                neg += 1
                hit_443 = short_flagged(by_dir, server_port, any_port=False)
                hit_any = short_flagged(by_dir, server_port, any_port=True)
                hit_long = any(long_header_sighting(d) for ds in by_dir.values() for d in ds[:MAX_UDP_PROBES])
                fp_443 += hit_443
                fp_any += hit_any
                fp_long += hit_long
                if hit_443 or hit_any or hit_long:
                    flagged.append(f"  {path.name}: {key} port {server_port} ndpi={labels.get(key)}")
                continue
            pos += 1
            late = {}
            for d, datagrams in by_dir.items():
                first_short = next((i for i, x in enumerate(datagrams) if x[0] & 0xC0 == 0x40), len(datagrams))
                late[d] = datagrams[first_short:]
            tp_short += short_flagged(late, server_port, any_port=False)
            tp_long += any(long_header_sighting(d) for ds in by_dir.values() for d in ds[1:MAX_UDP_PROBES])
    print(f"UDP flows nDPI does not label QUIC: {neg}")
    print(f"  short headers, UDP/443 only (as shipped): {fp_443} flagged = {100.0 * fp_443 / max(neg, 1):.2f} %")
    print(f"  short headers, any port:                  {fp_any} flagged = {100.0 * fp_any / max(neg, 1):.2f} %")
    print(f"  long headers of a registered version:     {fp_long} flagged = {100.0 * fp_long / max(neg, 1):.2f} %")
    print("\n".join(flagged) or "  (none)")
    print(f"QUIC flows (nDPI): {pos}")
    print(f"  recognised from short headers once everything before them is dropped: {tp_short}")
    print(f"  recognised from a long header other than the first datagram:          {tp_long}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
