"""Helpers for ``test_profile_conformance.py``: every bundled profile's ``examples:`` checked on the wire.

A :class:`ProfileLab` is one ``chokepoint.lab.up(profile=NAME, mode="inline")`` (under the lab session lock,
``lab down`` in a ``finally``) plus a small *realisation* of the profile's examples in the lab:

* every example gets its own server site address (198.19.0.10-39, in order, skipping those an address list of
  the profile names, e.g. a stand-in Tor relay), so residual blocks, kernel state and probabilistic draws of
  one example never touch another, and no example is blocked for its site;
* the lab DNS map (``lab.up(dns_map=...)``, resolver and control resolver alike) resolves each example target
  to the address of the first example naming it (or to the example's ``server_ip``);
* the lab services listen on fixed ports (HTTP 80, HTTPS and HTTP/3 443, echo 9000), so each example's own
  port is mapped onto the right service with a DNAT rule in ``cpk-server`` (``nft``, table
  ``ip cpk_conformance``): a TLS example on port 8443 reaches the HTTPS service, a raw TCP/UDP example the
  echo service. The client and the censor see the example's own port on the wire;
* an example ``server_ip`` outside the lab (e.g. 198.51.100.7) is routed by the censor to the server, which
  DNATs it to the example's site address; an example ``client_ip`` (a client "outside") is added to the
  client's ``cl0`` (/32, source-bound by the client program) and routed back by the censor.

Everything is added inside the lab namespaces only and goes away with them (``lab down``).

An example with a ``local_time`` runs in a lab of its own whose censor clock is offset
(``lab.up(clock_offset_s=...)``, ``censord --clock-offset``) so that the profile's local clock (its fixed
``timezone``) reads that time when the lab comes up: Myanmar's nightly shutdown is checked at 02:30 and its
edge at 00:59 whatever the wall clock says. An example with ``params`` (rule-param overrides, e.g. a deferred
drop after 3 s instead of 24 h) runs in a lab brought up with them (``lab.up(params=...)``, ``censord --param``).
``LabManager.get(name, local_time, params)`` keys labs by all three.

Clients are the REAL ones, run in ``cpk-client``: curl (HTTP, HTTPS), dig and dnspython (DNS), openssl s_client
(certificate issuer), aioquic (QUIC / HTTP/3, ``cafile`` = the lab CA), Python sockets (raw TCP / UDP, TLS with
the ClientHello split into two records via ``ssl.MemoryBIO``). ``tcpdump -w`` captures in ``cpk-client`` (and
``cpk-server`` for the server side of injected resets) are decoded with the project's own reader and decoder
(``chokepoint.packet``; ``censor.packet_fields``), and the censor's ``events.jsonl`` says which packets it
injected, so each injected packet is found on the wire and its fields are checked there.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chokepoint import lab
from chokepoint.backends.censor import LINKTYPE_ETHERNET, ip_packet, packet_fields
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.clock import clock_offset_for as lab_clock_offset_for
from chokepoint.lab.clock import local_now
from chokepoint.lab.instance import PREFIX
from chokepoint.packet.pcap import open_capture
from chokepoint.policy.conditions import atoms
from chokepoint.policy.profile import Profile, list_profiles, load_profile
from chokepoint.policy.provenance import Example
from tests._lab_clients import DNS_ALL_ANSWERS, H3_GET, h3_get_args

from ._lab import OURS, CurlResult, foreign, run_curl, tools_reason

CLIENT_NS, CENSOR_NS, SERVER_NS = f"{PREFIX}client", f"{PREFIX}censor", f"{PREFIX}server"
CLIENT_IP = "198.18.0.2"
SERVER_LINK_IP = "198.19.0.2"
LAB_DNS = "198.19.0.53"
CONTROL_DNS = "198.18.9.1"
SITE_BASE = 10  # 198.19.0.10-39: the server's site addresses (docs/lab.md)
SITES = 30
ORIGIN_MARKER = "CHOKEPOINT-LAB-ORIGIN"
CA_FILE = str(st.STATE_DIR / "ca.pem")
SEED = 20261127  # the censor's RNG seed (probabilistic rules, injector fields)
#: Where each example protocol is served in the lab (transport, service port).
SERVICE = {
    "tls": ("tcp", 443),
    "http": ("tcp", 80),
    "quic": ("udp", 443),
    "tcp": ("tcp", 9000),
    "udp": ("udp", 9000),
    "dns": ("udp", 53),
}
DEFAULT_PORT = {"tls": 443, "http": 80, "quic": 443, "dns": 53}
#: A name no profile lists: used to show that a residual block (not a rule) catches a follow-up flow.
UNLISTED = "conformance-unlisted.test"
TOOLS = ("curl", "dig", "openssl", "tcpdump", "nft", "sysctl")
NAT_TABLE = "cpk_conformance"


def missing_reason() -> str | None:
    """Why the conformance tests cannot run here (None: they can)."""
    return tools_reason(TOOLS, "the conformance tests")


def cases() -> list[tuple[str, str]]:
    """(profile, example id) for every bundled profile and example, grouped by profile (one lab each)."""
    return [(name, ex.id) for name in list_profiles() for ex in load_profile(name).examples]


def example_of(profile: Profile, ident: str) -> Example:
    return next(e for e in profile.examples if e.id == ident)


def rule_probability(profile: Profile, ex: Example) -> float:
    """The probability with which the example's rule acts; for an allowed example, the lowest of all the
    profile's rules (any of them could wrongly fire, and a probabilistic one would do so only sometimes)."""
    rules = [profile.policy.rule(ex.rule)] if ex.rule else list(profile.policy.rules) if ex.outcome == "allowed" else []
    return min((float(dict(r.params or ()).get("probability", 1.0)) for r in rules), default=1.0)


# --------------------------------------------------------------------------------------- realisation plan


def neutral_sites(profile: Profile) -> list[str]:
    """The lab's site addresses (198.19.0.10-39) that none of the profile's address lists names: a site a list
    names (e.g. a stand-in Tor relay) would be blocked for that reason, whatever example it served."""
    listed = [
        ipaddress.ip_network(entry, strict=False)
        for spec in profile.policy.lists.values()
        if spec.kind == "cidr"
        for entry in spec.entries
    ]
    sites = (ipaddress.ip_address(f"198.19.0.{SITE_BASE + n}") for n in range(SITES))
    return [str(site) for site in sites if not any(site in net for net in listed if net.version == 4)]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one example's client connects, and how the lab serves it."""

    example: Example
    site: str  # the lab site address that serves it
    address: str  # what the client connects to (the site, or the example's server_ip)
    port: int
    transport: str  # tcp / udp
    client_bind: str = ""  # the example's client_ip, bound by the client program


@dataclass(slots=True)
class LabPlan:
    """What one profile needs in the lab besides ``lab up``: DNS map, DNAT rules, routes, client aliases."""

    targets: dict[str, Target] = field(default_factory=dict)
    dns_names: dict[str, str] = field(default_factory=dict)
    nat: list[str] = field(default_factory=list)  # nft rule bodies for the server's prerouting
    server_routes: list[str] = field(default_factory=list)  # non-lab server addresses the censor routes on
    client_aliases: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, profile: Profile) -> LabPlan:
        plan = cls()
        sites = neutral_sites(profile)
        if len(profile.examples) > len(sites):
            raise ValueError(
                f"{profile.name}: {len(profile.examples)} examples, only {len(sites)} site addresses its lists do "
                "not name"
            )
        for ex, site in zip(profile.examples, sites):
            address = ex.server_ip or site
            transport, service_port = SERVICE.get(ex.protocol, ("tcp", 9000))
            port = ex.port or DEFAULT_PORT.get(ex.protocol, service_port)
            if ex.protocol == "dns":
                address, port = LAB_DNS, 53
            plan.targets[ex.id] = Target(ex, site, address, port, transport, ex.client_ip)
            if ex.target and ex.target not in plan.dns_names:
                plan.dns_names[ex.target] = address if ex.protocol != "dns" else site
            if ex.protocol == "dns":
                continue
            if ex.server_ip and ipaddress.ip_address(ex.server_ip) not in ipaddress.ip_network("198.19.0.0/24"):
                if ex.server_ip not in plan.server_routes:
                    plan.server_routes.append(ex.server_ip)
            if address != site or port != service_port:
                plan.nat.append(f"ip daddr {address} {transport} dport {port} dnat to {site}:{service_port}")
            if ex.client_ip and ex.client_ip not in plan.client_aliases:
                plan.client_aliases.append(ex.client_ip)
        # A follow-up flow to the same server (residual checks) may use a name no profile lists.
        return plan

    def dns_map(self) -> dict[str, Any]:
        return {"names": {name: [addr] for name, addr in self.dns_names.items()}}


# ------------------------------------------------------------------------------------------------- capture


@dataclass
class Capture:
    """Packets ``tcpdump -w`` saw on one interface while a ``with`` block ran, decoded with the project's
    decoder into ``censor.packet_fields`` dictionaries (plus ``time``)."""

    netns: str
    iface: str
    packets: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""

    def describe(self) -> str:
        return "\n".join(json.dumps({k: v for k, v in p.items() if k != "payload_hex"}) for p in self.packets[-40:])


@contextmanager
def capture(bpf: str, *, netns: str = CLIENT_NS, iface: str = "cl0") -> Iterator[Capture]:
    """tcpdump on ``iface`` in ``netns`` for the duration of the block (then 0.3 s for late injections)."""
    result = Capture(netns, iface)
    fd, path = tempfile.mkstemp(prefix=f"{PREFIX}conf-", suffix=".pcap")
    os.close(fd)
    argv = system.in_netns(
        ["tcpdump", "-i", iface, "-nn", "-U", "--immediate-mode", "-s", "0", "-w", path, *bpf.split()], netns
    )
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = proc.stderr.readline().decode()
        assert "listening on" in started, f"tcpdump did not start in {netns}: {started!r}"
        yield result
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        try:
            with open_capture(path) as reader:
                for frame in reader:
                    data = ip_packet(frame.data) if frame.linktype == LINKTYPE_ETHERNET else frame.data
                    fields = packet_fields(data)
                    fields["time"] = frame.ts
                    result.packets.append(fields)
        except (OSError, ValueError) as exc:
            result.error = str(exc)
        finally:
            os.unlink(path)


# ------------------------------------------------------------------------------------------ client programs

#: (The DNS and HTTP/3 clients, shared with ``_e2e.py``, are in ``tests/_lab_clients.py``.)

#: Raw TCP to an echo service: connect (bound to ``bind`` if given), send ``chunks`` one segment each, read
#: until everything came back. ``attempts``: repeat with fresh connections; ``until`` stops at the first
#: outcome other than ``ok``. Prints one result per attempt.
TCP_CLIENT = """
import errno, json, socket, sys, time
a = json.loads(sys.argv[1])
results = []
for attempt in a["attempts"]:
    chunks = [bytes.fromhex(c) for c in attempt]
    total = b"".join(chunks)
    out = {"outcome": "ok", "sent": len(total), "echoed": 0, "local_port": 0}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(a["wait"])
    try:
        if a["bind"]:
            sock.bind((a["bind"], 0))
        sock.connect((a["address"], a["port"]))
        out["local_port"] = sock.getsockname()[1]
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            sock.sendall(chunk)
            time.sleep(0.05)
        got = b""
        deadline = time.monotonic() + a["wait"]
        while len(got) < len(total):
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                out["outcome"] = "closed"
                break
            got += data
        out["echoed"] = len(got)
        if out["outcome"] == "ok" and got != total:
            out["outcome"] = "garbled"
    except socket.timeout:
        out["outcome"] = "timeout"
    except ConnectionResetError:
        out["outcome"] = "reset"
    except OSError as exc:
        out["outcome"] = errno.errorcode.get(exc.errno, str(exc))
    finally:
        sock.close()
    results.append(out)
    if a["until"] and out["outcome"] != "ok":
        break
print(json.dumps(results))
"""

#: A long TCP flow to an echo service: ``chunk`` seeded random bytes at a time, at ``kbps`` for ``duration`` s,
#: echo read all along. "ok" when everything sent came back; "timeout" when the echo stalled for ``wait`` s
#: with bytes outstanding (``stalled_after_s``: when the last echo came); "reset"/"closed" otherwise.
TCP_STREAM_CLIENT = """
import errno, json, random, select, socket, sys, time
a = json.loads(sys.argv[1])
rng = random.Random(a["seed"])
out = {"outcome": "ok", "sent": 0, "echoed": 0, "local_port": 0, "stalled_after_s": None}
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    if a["bind"]:
        sock.bind((a["bind"], 0))
    sock.settimeout(a["wait"])
    sock.connect((a["address"], a["port"]))
    out["local_port"] = sock.getsockname()[1]
    sock.setblocking(False)
    interval = a["chunk"] * 8 / (a["kbps"] * 1000)
    start = last_echo = time.monotonic()
    next_send, pending = start, b""
    while True:
        now = time.monotonic()
        sending = now - start < a["duration"]
        if sending and not pending and now >= next_send:
            pending, next_send = rng.randbytes(a["chunk"]), next_send + interval
        if not sending and not pending and out["echoed"] >= out["sent"]:
            break
        if pending:
            try:
                n = sock.send(pending)
                pending, out["sent"] = pending[n:], out["sent"] + n
            except BlockingIOError:
                pass
        if select.select([sock], [], [], 0.002)[0]:
            data = sock.recv(65536)
            if not data:
                out["outcome"] = "closed"
                break
            out["echoed"] += len(data)
            last_echo = time.monotonic()
        if out["echoed"] < out["sent"] and time.monotonic() - last_echo > a["wait"]:
            out["outcome"], out["stalled_after_s"] = "timeout", round(last_echo - start, 3)
            break
except socket.timeout:
    out["outcome"] = "timeout"
except ConnectionResetError:
    out["outcome"] = "reset"
except OSError as exc:
    out["outcome"] = errno.errorcode.get(exc.errno, str(exc))
finally:
    sock.close()
print(json.dumps(out))
"""

#: UDP datagrams to an echo service from one socket; prints how many came back and the outcome.
UDP_CLIENT = """
import json, socket, sys, time
a = json.loads(sys.argv[1])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if a["bind"]:
    sock.bind((a["bind"], 0))
sent = [bytes.fromhex(p) for p in a["payloads"]]
for payload in sent:
    sock.sendto(payload, (a["address"], a["port"]))
    time.sleep(0.05)
got = []
deadline = time.monotonic() + a["wait"]
while len(got) < len(sent) and (left := deadline - time.monotonic()) > 0:
    sock.settimeout(left)
    try:
        got.append(sock.recvfrom(65536)[0])
    except socket.timeout:
        break
outcome = "ok" if sorted(got) == sorted(sent) else ("timeout" if not got else "partial")
print(json.dumps({"outcome": outcome, "sent": len(sent), "echoed": len(got)}))
"""

#: A real TLS client (Python ssl, MemoryBIO) over a socket whose first flight is re-framed: the ClientHello
#: record is cut into two TLS records (same bytes, two 5-byte record headers). Then one HTTP/1.1 GET.
TLS_SPLIT_CLIENT = """
import json, socket, ssl, sys
a = json.loads(sys.argv[1])
out = {"outcome": "ok", "records": 0, "origin": False}
context = ssl.create_default_context()
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = context.wrap_bio(incoming, outgoing, server_hostname=a["sni"])
sock = socket.create_connection((a["address"], a["port"]), timeout=a["wait"])
def split(flight):
    body = flight[5:5 + int.from_bytes(flight[3:5], "big")]
    assert flight[0] == 22 and len(body) > 2, "not a handshake record"
    cut = len(body) // 2
    out["records"] = 2
    rec = lambda part: flight[:3] + len(part).to_bytes(2, "big") + part
    return rec(body[:cut]) + rec(body[cut:]) + flight[5 + len(body):]
first = True
try:
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        data = outgoing.read()
        if data:
            sock.sendall(split(data) if first else data)
            first = False
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed during the handshake")
        incoming.write(chunk)
    sock.sendall(outgoing.read())
    tls.write(f"GET / HTTP/1.1\\r\\nHost: {a['sni']}\\r\\nConnection: close\\r\\n\\r\\n".encode())
    sock.sendall(outgoing.read())
    body = b""
    while True:
        try:
            data = tls.read(65536)
            if not data:
                break
            body += data
            continue
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        incoming.write(chunk)
    out["origin"] = b"CHOKEPOINT-LAB-ORIGIN" in body
    if not out["origin"]:
        out["outcome"] = "no-origin"
except socket.timeout:
    out["outcome"] = "timeout"
except ConnectionResetError:
    out["outcome"] = "reset"
except ssl.SSLError as exc:
    out["outcome"] = f"ssl-error {exc}"
print(json.dumps(out))
"""


# --------------------------------------------------------------------------------------------- the lab


@dataclass
class ProfileLab:
    """A lab running one profile, with its examples realised (:class:`LabPlan`)."""

    profile: Profile
    plan: LabPlan
    state: st.LabState
    workdir: Path

    # -- running things ---------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        netns: str = CLIENT_NS,
        timeout: float = 30,
        input: bytes | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        return system.run(list(argv), netns=netns, check=check, timeout=timeout, input=input)

    def python(self, code: str, args: dict[str, Any], *, timeout: float = 30) -> Any:
        proc = self.run([sys.executable, "-c", textwrap.dedent(code), json.dumps(args)], timeout=timeout)
        assert proc.returncode == 0, f"client script failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}"
        return json.loads(proc.stdout)

    def curl(self, url: str, *opts: str, timeout: float = 3.0, body: bool = True) -> CurlResult:
        """curl in the client (its CA bundle trusts the lab CA), keeping the response head."""
        return run_curl(self.run, url, *opts, timeout=timeout, body=body, head=True)

    def dig(self, server: str, name: str, qtype: str = "A") -> list[str]:
        proc = self.run(["dig", f"@{server}", name, qtype, "+short", "+time=2", "+tries=1"], timeout=15)
        return proc.stdout.decode().split()

    def dns_answers(self, server: str, name: str, qtype: str = "A", wait: float = 1.0) -> list[dict[str, Any]]:
        return self.python(DNS_ALL_ANSWERS, {"server": server, "name": name, "qtype": qtype, "wait": wait})

    def tcp(
        self,
        target: Target,
        attempts: list[list[bytes]],
        *,
        wait: float = 1.5,
        until: bool = False,
        address: str | None = None,
    ) -> list[dict[str, Any]]:
        args = {
            "address": address or target.address,
            "port": target.port,
            "bind": target.client_bind,
            "attempts": [[c.hex() for c in a] for a in attempts],
            "wait": wait,
            "until": until,
        }
        return self.python(TCP_CLIENT, args, timeout=len(attempts) * (2 * wait + 1) + 20)

    def tcp_stream(
        self, target: Target, *, chunk: int, kbps: float, duration: float, seed: str, wait: float = 1.5
    ) -> dict[str, Any]:
        args = {
            "address": target.address,
            "port": target.port,
            "bind": target.client_bind,
            "chunk": chunk,
            "kbps": kbps,
            "duration": duration,
            "seed": seed,
            "wait": wait,
        }
        return self.python(TCP_STREAM_CLIENT, args, timeout=duration + 2 * wait + 20)

    def udp(self, target: Target, payloads: list[bytes], *, wait: float = 1.5) -> dict[str, Any]:
        args = {
            "address": target.address,
            "port": target.port,
            "bind": target.client_bind,
            "payloads": [p.hex() for p in payloads],
            "wait": wait,
        }
        return self.python(UDP_CLIENT, args, timeout=wait + 20)

    def tls_split(self, target: Target, sni: str, *, wait: float = 3.0) -> dict[str, Any]:
        args = {"address": target.address, "port": target.port, "sni": sni, "wait": wait}
        return self.python(TLS_SPLIT_CLIENT, args, timeout=wait * 3 + 20)

    def quic(
        self,
        target: Target,
        sni: str,
        *,
        version: int = 1,
        local_port: int = 0,
        prelude: str = "",
        timeout: float = 2.0,
    ) -> dict[str, Any]:
        args = h3_get_args(
            target.address,
            sni,
            CA_FILE,
            port=target.port,
            version=version,
            bind=target.client_bind,
            local_port=local_port,
            prelude=prelude,
            timeout=timeout,
        )
        return self.python(H3_GET, args, timeout=timeout + 20)

    def showcerts(self, address: str, port: int, sni: str, *, netns: str = CLIENT_NS) -> str:
        proc = self.run(
            ["openssl", "s_client", "-connect", f"{address}:{port}", "-servername", sni, "-showcerts"],
            netns=netns,
            timeout=15,
            input=b"",
        )
        return (proc.stdout + proc.stderr).decode("utf-8", "replace")

    @contextmanager
    def sysctl(self, name: str, value: str, *, netns: str = CLIENT_NS) -> Iterator[None]:
        """Set a (per-namespace) sysctl for the block, then restore the old value."""
        old = self.run(["sysctl", "-n", name], netns=netns, check=True).stdout.decode().strip()
        self.run(["sysctl", "-w", f"{name}={value}"], netns=netns, check=True)
        try:
            yield
        finally:
            self.run(["sysctl", "-w", f"{name}={old}"], netns=netns, check=True)

    # -- the censor's files -----------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        path = self.state.path("events.jsonl")
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    def actions(self, since: int = 0) -> list[dict[str, Any]]:
        """The censor's enforced verdicts (``chokepoint`` events) after the first ``since`` events."""
        return [e for e in self.events()[since:] if e.get("event_type") == "chokepoint"]

    def mark(self) -> int:
        return len(self.events())

    def wait_actions(self, since: int, predicate, timeout: float = 2.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.actions(since) if predicate(e)]
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def censor_alive(self) -> bool:
        info = self.state.processes.get("censor")
        return bool(info and info.alive())

    def profile_with_params(self, ex: Example) -> Profile:
        """The profile as the censor loaded it for ``ex`` (with the example's rule-param overrides)."""
        return load_profile(self.profile.name, params=dict(ex.params)) if ex.params else self.profile

    def censor_local_time(self) -> dt.datetime:
        """The censor's clock now, in the profile's timezone, as its ``censor-stats.json`` reports it (the
        daemon's own view of the injected clock), advanced by the stats file's age."""
        stats, age = self.state.read_stats()
        assert stats and "clock" in stats, f"no clock in the censor's stats: {stats}"
        assert stats["clock"]["offset_s"] == (self.state.clock_offset_s or 0.0), (stats["clock"], self.state)
        return profile_now(self.profile, stats["clock"]["now"] + (age or 0.0))

    # -- realisation ------------------------------------------------------------------------------------
    def realise(self) -> None:
        """DNAT rules in the server, routes in the censor, client aliases (all inside the lab namespaces)."""
        plan = self.plan
        if plan.nat:
            rules = "\n".join(f"    {rule}" for rule in plan.nat)
            script = (
                f"table ip {NAT_TABLE} {{\n  chain prerouting {{\n"
                f"    type nat hook prerouting priority dstnat; policy accept;\n{rules}\n  }}\n}}\n"
            )
            self.run(["nft", "-f", "-"], netns=SERVER_NS, input=script.encode(), check=True)
        for address in plan.server_routes:
            self.run(["ip", "route", "add", f"{address}/32", "via", SERVER_LINK_IP], netns=CENSOR_NS, check=True)
        for address in plan.client_aliases:
            self.run(["ip", "addr", "add", f"{address}/32", "dev", "cl0"], netns=CLIENT_NS, check=True)
            self.run(["ip", "route", "add", f"{address}/32", "via", CLIENT_IP], netns=CENSOR_NS, check=True)


class LabManager:
    """One lab at a time, one per profile: ``get(name)`` brings the profile's lab up (taking the lab session
    lock) after taking the previous one down (releasing the lock), so other suites can use the lab between
    profiles. ``close()`` takes the last one down."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.current: ProfileLab | None = None
        self.name: str | None = None
        self.failed: dict[str, str] = {}
        self._stack: ExitStack | None = None

    def get(self, name: str, local_time: str | None = None, params: dict[str, str] | None = None) -> ProfileLab:
        """The lab of profile ``name``; with ``local_time`` ("HH:MM"), one whose censor clock reads that time
        in the profile's timezone when it comes up (:func:`clock_offset_for`); with ``params``, one whose
        profile is loaded with those rule-param overrides."""
        key = (
            name
            + (f"@{local_time}" if local_time else "")
            + "".join(f" {k}={v}" for k, v in sorted((params or {}).items()))
        )
        if key in self.failed:
            pytest.fail(f"the lab for {key} did not come up: {self.failed[key]}")
        if self.name == key and self.current is not None:
            return self.current
        self.close()
        reason = missing_reason()
        if reason:
            pytest.skip(reason)
        stack = ExitStack()
        stack.enter_context(st.session_lock(timeout=600))
        self._stack = stack
        deadline = time.monotonic() + 30  # a lab up by someone who does not take the session lock
        while any(ns in OURS for ns in topo.lab_namespaces()) and time.monotonic() < deadline:
            time.sleep(0.2)
        lab.down(keep=foreign())
        stack.callback(self._down)
        profile = load_profile(name)
        plan = LabPlan.of(profile)
        dns_map = self.workdir / f"{name}-dns-map.json"
        dns_map.write_text(json.dumps(plan.dns_map()), encoding="utf-8")
        try:
            offset = None if local_time is None else clock_offset_for(profile, local_time)
            # flat: the examples check what the censor does on the wire, which the far side's delay (lab up's
            # default, the profile's distance) does not change; it would only add ~25% to these tests' time
            state = lab.up(
                name, "inline", seed=SEED, dns_map=dns_map, clock_offset_s=offset, params=params, distance=False
            )
            current = ProfileLab(profile, plan, state, self.workdir)
            current.realise()
        except Exception as exc:  # noqa: BLE001 - reported by every test of the profile
            self.failed[key] = f"{type(exc).__name__}: {exc}"
            self.close()
            pytest.fail(f"the lab for {key} did not come up: {self.failed[key]}")
        self.current, self.name = current, key
        return current

    def _down(self) -> None:
        report = lab.down(keep=foreign())
        assert not report.errors, report.errors

    def close(self) -> None:
        self.current, self.name = None, None
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()


# ----------------------------------------------------------------------------------------------- schedule


def local_hour_atoms(profile: Profile) -> list[tuple[str, tuple[int, ...]]]:
    """(rule id, hours) of every ``local_hour`` test in the profile's rules."""
    out = []
    for rule in profile.policy.rules:
        for atom in atoms(rule.when):
            if atom.field == "local_hour":
                out.append((rule.id, tuple(int(v) for v in atom.value)))
    return out


def profile_now(profile: Profile, now: float | None = None) -> dt.datetime:
    return local_now(profile.meta.utc_offset_s, now)


def clock_offset_for(profile: Profile, local_time: str, now: float | None = None) -> float:
    """Seconds to add to the wall clock so that the profile's local clock reads ``local_time`` ("HH:MM"):
    ``chokepoint.lab.clock.clock_offset_for`` in the profile's fixed UTC offset."""
    return lab_clock_offset_for(profile.meta.utc_offset_s, local_time, now)


def seeded_bytes(profile: str, ex: Example, attempt: int, size: int) -> bytes:
    return random.Random(f"{profile}/{ex.id}/{attempt}").randbytes(size)


def cut(data: bytes, parts: int) -> list[bytes]:
    """``data`` in ``parts`` consecutive pieces of near-equal size (the client's separate segments)."""
    size = -(-len(data) // parts)
    return [data[i : i + size] for i in range(0, len(data), size)]


__all__ = [
    "CA_FILE",
    "CLIENT_IP",
    "CONTROL_DNS",
    "Capture",
    "CurlResult",
    "LAB_DNS",
    "LabManager",
    "LabPlan",
    "ORIGIN_MARKER",
    "ProfileLab",
    "Target",
    "UNLISTED",
    "capture",
    "cases",
    "clock_offset_for",
    "cut",
    "example_of",
    "local_hour_atoms",
    "missing_reason",
    "profile_now",
    "rule_probability",
    "seeded_bytes",
]
