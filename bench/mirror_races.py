"""Lab benchmark: how often an on-path (mirror) censor wins its race against the real answer, with the far side's
distance in place (lab/geometry.py, lab/delay.py).

One run (root; takes the lab session lock, brings labs up itself and takes them down in a ``finally``), each race
``--tries`` times (default 200) from the client, each try a fresh socket:

- **DNS forgery** (gfw, mirror, ``gfw-dns-inject``): a query for www.google.com to the lab resolver 198.19.0.53;
  won when the first answer the client receives is forged (not the lab's own 198.19.0.0/16 answer).
- **RST injection** (gfw, mirror, ``gfw-http-host-reset`` with probability 1 and no residual block, so every try
  is a new race): ``GET /`` with ``Host: www.google.com`` to 198.19.0.10; won when the connection is reset before
  any byte of the server's answer.
- **Block page** (iran, mirror, ``iran-http-blockpage``): ``GET /`` with ``Host: queerquotes.blogspot.com``; won
  when the first bytes received are the block page (``iframe src="http://10.10``), not the site.

The labs are ``lab up``'s default: the profile's ``distance`` as the far side's delay, unless ``--delay-ms`` is
given (``--delay-ms 0``: the flat lab); ``--position`` adds the profile's routers (``lab up --distance``).
Literature: the GFW's injected DNS answers arrive before the real resolver's for queries that cross the border
(censor-behaviours.md, "the censor races the real answer"; no percentage is given there, uncertain), which is
why DNS injection works at all; RST injection hits ~75% of requests (Rambert et al., WWW 2021, a secondary
summary), the win rate of an injected RST is not given; Iran's block page is what OONI sees in place of the
site (OONI ooni.ir_0 fingerprint), no race figure published.

Usage: ``sudo .venv/bin/python bench/mirror_races.py [--tries 200] [--delay-ms D] [--position] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab.instance import PREFIX

CLIENT = f"{PREFIX}client"

#: Runs in the client namespace: argv = race, tries; prints one JSON list of outcomes (won, lost, none).
RACER = r"""
import errno, json, socket, sys, time
import dns.message
race, tries, SOURCE_FIRST = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for i in range(tries):
    if race == "dns":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(dns.message.make_query("www.google.com", "A").to_wire(), ("198.19.0.53", 53))
        try:
            first = dns.message.from_wire(s.recv(4096))
            ips = [rd.to_text() for rr in first.answer for rd in rr]
            out.append("lost" if any(ip.startswith("198.19.") for ip in ips) else "won")
        except (socket.timeout, Exception):
            out.append("none")
        s.close()
        continue
    host = "www.google.com" if race == "rst" else "queerquotes.blogspot.com"
    s = socket.socket(); s.settimeout(3)
    try:
        if race == "blockpage":  # a source address per try: iran's residual block holds the 3-tuple for 60 s
            s.bind((f"198.18.0.{SOURCE_FIRST + i}", 0))
        s.connect(("198.19.0.10", 80))
        s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = s.recv(65536)
        if race == "rst":
            out.append("lost" if data else "won")  # EOF without data: the injected RST/FIN came first
        else:
            out.append("won" if b'iframe src="http://10.10' in data else "lost" if data else "none")
    except ConnectionResetError:
        out.append("won" if race == "rst" else "none")
    except OSError:
        out.append("none")
    finally:
        s.close()
    time.sleep(0.02)
print(json.dumps(out))
"""


#: the block-page race binds each try to its own client address 198.18.0.<SOURCE_FIRST + i>
SOURCE_FIRST = 20


def race(name: str, tries: int) -> dict[str, Any]:
    if name == "blockpage":
        system.ip_batch(
            [["addr", "add", f"198.18.0.{SOURCE_FIRST + i}/32", "dev", "cl0"] for i in range(tries)], CLIENT
        )
    proc = system.run(
        [sys.executable, "-c", RACER, name, str(tries), str(SOURCE_FIRST)],
        netns=CLIENT,
        check=False,
        timeout=tries * 8 + 60,
    )
    outcomes = json.loads(proc.stdout or b"[]")
    counted = {k: outcomes.count(k) for k in ("won", "lost", "none")}
    decided = counted["won"] + counted["lost"]
    return {**counted, "tries": len(outcomes), "win_rate": round(counted["won"] / decided, 4) if decided else None}


LITERATURE = {
    "dns": "injected answers arrive first for resolvers abroad (censor-behaviours.md; no % given: uncertain)",
    "rst": "RST injection on ~75% of requests (Rambert et al., WWW 2021; secondary); race win rate not published",
    "blockpage": "the block page replaces the site (OONI ooni.ir_0); race win rate not published",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=200, help="per race, at most 230")
    parser.add_argument("--delay-ms", type=float, default=None)
    parser.add_argument("--position", action="store_true", help="also the profile's routers (lab up --distance)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.tries <= 230:
        parser.error("--tries: 1 to 230 (the block-page race uses one client address per try)")
    results: dict[str, Any] = {}
    plan = [
        (
            "gfw",
            {"gfw-http-host-reset.probability": "1", "gfw-http-host-reset.residual_s": "0"},
            ["dns", "rst"],
        ),
        ("iran", {}, ["blockpage"]),
    ]
    with st.session_lock(timeout=600):
        try:
            for profile, params, races in plan:
                lab.down()
                state = lab.up(
                    profile, "mirror", params=params, delay_ms=args.delay_ms, distance=True if args.position else None
                )
                for name in races:
                    results[name] = {
                        "profile": profile,
                        "geometry": state.geometry,
                        **race(name, args.tries),
                        "literature": LITERATURE[name],
                    }
                    print(json.dumps({name: results[name]}), flush=True)
        finally:
            lab.down()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
