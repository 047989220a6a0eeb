"""Detection and false-positive rates of the TLS-in-TLS detector (dissect/tlsintls.py).

Generates traffic with real programs in the traffic bench (chokepoint.lab.trafficgen, namespaces named after
CHOKEPOINT_LAB; root): curl and headless Chromium fetch pages of the bench's HTTPS sites directly (negatives)
and through trojan and v2ray (VMess/VLESS over TLS, VMess over WebSocket over TLS: positives), each capture
taken on the client's link with tcpdump, then analyzed by the engine. Also reads ../shared/data/ndpi: every
TLS flow of those captures is a negative except the encapsulated one of tls_heur__vmess-tcp-tls.pcapng (VMess
over TLS, flagged "Obfuscated TLS-in-TLS" by nDPI's heuristic), a positive.

A proxy flow counts as a positive only when it carried a fetch: at least POSITIVE_MIN_BYTES of TCP payload from
the server (the outer handshake, the inner server flight and a response); Chromium also opens proxy connections
it never completes (preconnects), reported apart.

It is a report: it always exits 0.

    CHOKEPOINT_LAB=cpd .venv/bin/python bench/tls_in_tls_rates.py [--rounds 6] [--keep DIR] [--no-lab]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from chokepoint.backends.offline import analyze_capture
from chokepoint.policy import load_profile

REPO = Path(__file__).resolve().parents[1]
POSITIVE_MIN_BYTES = 1600
TLS_PROXIES = ("trojan", "vmess-tls", "vless-tls", "vmess-ws-tls")
PAGES = ("/", "/large?bytes=30000", "/page?id=7")
BROWSER_PAGES = ("/", "/page?id=7", "/news/today")  # HTML pages (a large binary body is a download)


@dataclass
class Tally:
    flagged: int = 0
    total: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, hit: bool, what: str) -> None:
        self.total += 1
        if hit:
            self.flagged += 1
            if len(self.examples) < 8:
                self.examples.append(what)

    def __str__(self) -> str:
        pct = 100.0 * self.flagged / self.total if self.total else 0.0
        return f"{self.flagged}/{self.total} = {pct:.1f} %"


def flows(path: Path) -> list[dict]:
    return analyze_capture(str(path), load_profile("demo")).records


def server_payload(path: Path) -> dict[int, int]:
    """TCP payload bytes each client port received, read from the capture."""
    from chokepoint.packet.decode import Decoder
    from chokepoint.packet.pcap import open_capture

    totals: dict[int, int] = {}
    decoder = Decoder()
    with open_capture(path) as reader:
        for frame in reader:
            pkt = decoder.decode(frame)
            if pkt is not None and pkt.proto == 6 and pkt.payload and pkt.dport > 1024 and pkt.sport < 20000:
                totals[pkt.dport] = totals.get(pkt.dport, 0) + len(pkt.payload)
    return totals


def describe(record: dict) -> str:
    found = record["chokepoint"].get("tls_in_tls")
    return f"{record['src_port']}->{record['dest_port']} {record.get('tls', {}).get('sni')} {found}"


def lab_traffic(work: Path, rounds: int) -> dict[str, list[Path]]:
    from chokepoint.lab import trafficgen
    from chokepoint.lab.trafficgen import SITES, TrafficBench

    captures: dict[str, list[Path]] = {}
    sites = list(SITES)
    with TrafficBench(work) as bench:
        for client in ("curl", "chromium"):
            n = rounds if client == "curl" else max(1, rounds // 2)
            for setting in ("direct", *TLS_PROXIES):
                path = work / f"{client}-{setting}.pcap"
                if setting == "direct":
                    proxy_cm = None
                else:
                    proxy_cm = bench.proxy(setting)
                proxy = proxy_cm.__enter__() if proxy_cm else None
                try:
                    with bench.capture(path):
                        for i in range(n):
                            pages = PAGES if client == "curl" else BROWSER_PAGES
                            url = f"https://{sites[i % len(sites)]}{pages[i % len(pages)]}"
                            try:
                                if client == "curl" and i % 3 == 2:  # three pages on one keep-alive connection
                                    bench.curl(url, url.replace(PAGES[i % len(PAGES)], "/a"), url + "?2", proxy=proxy)
                                elif client == "curl":
                                    bench.curl(url, proxy=proxy)
                                else:
                                    bench.chromium(url, proxy=proxy)
                            except trafficgen.BenchError as exc:
                                print(f"  ({client} {setting}: {exc})")
                finally:
                    if proxy_cm:
                        proxy_cm.__exit__(None, None, None)
                captures.setdefault(setting, []).append(path)
    return captures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="fetches per client and setting (Chromium: half)")
    parser.add_argument("--keep", type=Path, help="keep the captures in this folder")
    parser.add_argument("--no-lab", action="store_true", help="only the shared data")
    parser.add_argument("--data", type=Path, default=REPO / ".." / "shared" / "data")
    args = parser.parse_args(argv)

    lab_pos, lab_idle, lab_neg = Tally(), Tally(), Tally()
    per_proxy: dict[str, Tally] = {}
    if not args.no_lab:
        from chokepoint.lab.trafficgen import PROXIES, missing_tools

        missing = missing_tools(TLS_PROXIES)
        if os.geteuid() != 0 or missing:
            print(f"lab traffic skipped: {'not root' if os.geteuid() else 'missing ' + ', '.join(missing)}")
        else:
            with tempfile.TemporaryDirectory(prefix="tls-in-tls-") as scratch:
                work = args.keep or Path(scratch)
                work.mkdir(parents=True, exist_ok=True)
                for setting, paths in lab_traffic(work, args.rounds).items():
                    for path in paths:
                        received = server_payload(path)
                        for record in flows(path):
                            if record.get("app_proto") not in ("tls", "tor"):
                                continue
                            hit = "tls_in_tls" in record["chokepoint"]
                            what = f"{path.name}: {describe(record)}"
                            if setting == "direct":
                                lab_neg.add(hit, what)
                            elif record["dest_port"] == PROXIES[setting].server_port:
                                if received.get(record["src_port"], 0) >= POSITIVE_MIN_BYTES:
                                    lab_pos.add(hit, what)
                                    per_proxy.setdefault(f"{path.stem}", Tally()).add(hit, what)
                                else:
                                    lab_idle.add(hit, what)
    data_neg, data_pos = Tally(), Tally()
    pcaps = args.data / "ndpi" / "pcap"
    if pcaps.is_dir():
        for path in sorted(pcaps.iterdir()):
            for record in flows(path):
                if record.get("app_proto") not in ("tls", "tor") or "tls" not in record:
                    continue
                hit = "tls_in_tls" in record["chokepoint"]
                encapsulated = path.name == "tls_heur__vmess-tcp-tls.pcapng" and record["dest_port"] == 1234
                (data_pos if encapsulated else data_neg).add(hit, f"{path.name}: {describe(record)}")
    else:
        print(f"../shared/data not found: {pcaps}")

    print("TLS-in-TLS detector (dissect/tlsintls.py)")
    print(f"  lab, proxied fetches detected (TPR):            {lab_pos}")
    for name, tally in sorted(per_proxy.items()):
        print(f"      {name:24} {tally}")
    print(f"  lab, idle proxy connections flagged:            {lab_idle}")
    print(f"  lab, direct curl/Chromium TLS flows flagged (FPR): {lab_neg}")
    print(f"  shared data, encapsulated flow detected:        {data_pos}")
    print(f"  shared data, ordinary TLS flows flagged (FPR):  {data_neg}")
    for label, tally in (("lab false positives", lab_neg), ("data false positives", data_neg), ("lab misses", None)):
        if tally is not None and tally.examples:
            print(f"  {label}: " + "; ".join(tally.examples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
