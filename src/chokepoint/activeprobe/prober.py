"""The prober process: sends the censor's probes from its pool of addresses and reports the reactions.

Run by the censor daemon inside the lab's prober namespace (``lab/circumvention.py``)::

    python -m chokepoint.activeprobe.prober --pool 198.18.64.0/20 --ports 32768-60999 --timestamps shared-clock

At start it makes the whole pool local (``ip route replace local POOL dev lo``, so a probe can leave from any
of its addresses, as the GFW's probers come from thousands: Alice et al., IMC 2020, section 3.3), sets the
namespace's ephemeral port range to the profile's source ports (section 3.4: about 90% from 32768-60999, the
Linux default) and its TCP timestamps: ``shared-clock`` (``net.ipv4.tcp_timestamps=2``: no per-connection
offset, so every probe's TSval comes from one clock, whatever its source address, as the paper's Figure 5
shows for the GFW; the kernel's clock runs at 1000 Hz, not the 250 Hz of most GFW probes) or
``per-connection`` (the Linux default). Then it reads one job per line on stdin (JSON: ``id``, ``kind``
replay/random/tor, ``dst``, ``port``, ``payload`` hex, ``ttl``, ``timeout``) and writes one result per line on
stdout (``id``, ``src``, ``sport``, ``reaction`` data/fin/rst/timeout/refused/error/tor, ``bytes_back``,
``after_s``, ``error``). It exits when stdin closes.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import ssl
import sys
import threading
import time

from chokepoint.lab import system

#: After the first bytes of a data reaction, how long to keep reading the rest.
DATA_GRACE_S = 0.3


def setup(pool: str, ports: tuple[int, int], timestamps: str) -> None:
    system.run(["ip", "route", "replace", "local", pool, "dev", "lo"])
    system.sysctl(
        {
            "net.ipv4.ip_local_port_range": f"{ports[0]} {ports[1]}",
            "net.ipv4.tcp_timestamps": 2 if timestamps == "shared-clock" else 1,
        }
    )


def _verdict(kind: str, data: bytes) -> str:
    if kind == "tor" and data[2:3] == b"\x07":
        return "tor"  # a VERSIONS cell (command 7) came back
    return "data"


def probe(job: dict, src: str) -> dict:
    """Send one probe from ``src`` and classify the server's reaction."""
    result = {
        "id": job["id"],
        "src": src,
        "sport": 0,
        "reaction": "error",
        "bytes_back": 0,
        "after_s": 0.0,
        "error": "",
    }
    payload = bytes.fromhex(job["payload"])
    kind = job.get("kind", "")
    timeout = float(job.get("timeout", 8.0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    started = time.monotonic()
    data = b""
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(job.get("ttl", 64)))
        sock.bind((src, 0))
        result["sport"] = sock.getsockname()[1]
        sock.settimeout(timeout)
        sock.connect((job["dst"], int(job["port"])))
        if kind == "tor":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        sock.sendall(payload)
        deadline = started + timeout
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                result["reaction"] = _verdict(kind, data) if data else "fin"
                break
            if not data:
                result["after_s"] = round(time.monotonic() - started, 3)
                deadline = min(deadline, time.monotonic() + DATA_GRACE_S)
            data += chunk
    except ConnectionRefusedError:
        result["reaction"] = "refused"
    except TimeoutError:
        result["reaction"] = _verdict(kind, data) if data else "timeout"
    except ConnectionResetError:
        result["reaction"] = _verdict(kind, data) if data else "rst"
    except (ssl.SSLError, OSError) as exc:
        reset = "reset" in str(exc).lower() or "eof" in str(exc).lower()
        result["reaction"], result["error"] = ("rst" if reset else "error"), str(exc)
    finally:
        result["bytes_back"] = len(data)
        if not result["after_s"]:
            result["after_s"] = round(time.monotonic() - started, 3)
        try:
            sock.close()
        except OSError:
            pass
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chokepoint.activeprobe.prober", description=__doc__.split("\n")[0])
    parser.add_argument("--pool", required=True, help="CIDR of source addresses")
    parser.add_argument("--ports", default="32768-60999")
    parser.add_argument("--timestamps", choices=("shared-clock", "per-connection"), default="per-connection")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-setup", action="store_true", help="do not change routes or sysctls (tests)")
    args = parser.parse_args(argv)
    lo, _, hi = args.ports.partition("-")
    pool = ipaddress.ip_network(args.pool)
    if not args.no_setup:
        setup(str(pool), (int(lo), int(hi)), args.timestamps)
    rng = random.Random(args.seed)
    hosts = pool.num_addresses - 2
    lock = threading.Lock()

    def run(job: dict) -> None:
        src = str(pool.network_address + 1 + rng.randrange(hosts))
        result = probe(job, src)
        with lock:
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            job = json.loads(line)
        except ValueError:
            continue
        threading.Thread(target=run, args=(job,), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
