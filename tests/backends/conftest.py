"""A real client -> censor -> server path in throwaway network namespaces (``cpk-t-bk-*``), for the inline and
mirror backend tests (root only; skipped with the reason otherwise).

The path mirrors the lab's addresses and interface names (docs: /work/notes/lab-overview.md): client
198.18.0.2 / 2001:db8:0:1::2 on ``cl0``, censor ``ce0``/``ce1``, server 198.19.0.2 (+ 198.19.0.10-14) /
2001:db8:0:2::2 on ``sv0``. The namespaces are removed in a ``finally`` (also when a test fails), and the
lab's session lock is held meanwhile so a lab test session never tears them down under us.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chokepoint.backends.kernel import KernelProgram
from chokepoint.lab.instance import PREFIX
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import Packet
from tests._lab_clients import TCP_CONNECTS

HERE = Path(__file__).resolve().parent
PREFIX = f"{PREFIX}t-bk-"
CLIENT, CENSOR, SERVER = PREFIX + "cl", PREFIX + "ce", PREFIX + "sv"
NAMESPACES = (CLIENT, CENSOR, SERVER)
SERVER_IP = "198.19.0.2"
SERVER_IP6 = "2001:db8:0:2::2"
CLIENT_IP = "198.18.0.2"
EXTRA_SERVER_IPS = [f"198.19.0.{n}" for n in range(10, 15)]


#: Run in the client: UDP echo through the censor, IPv4 and IPv6, until both answer (neighbour discovery done
#: on every link, the path proven) - at most 10 s.
WARM_UP = """
import socket, sys, time
for family, addr in ((socket.AF_INET, "198.19.0.2"), (socket.AF_INET6, "2001:db8:0:2::2")):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(0.1)
    for attempt in range(100):
        sock.sendto(b"warm-up", (addr, 9000))
        try:
            if sock.recv(100) == b"warm-up":
                break
        except OSError:
            pass
    else:
        sys.exit(f"no echo from {addr}")
"""


@functools.cache
def root_reason() -> str | None:
    if os.geteuid() != 0:
        return "the inline/mirror backend tests need root (network namespaces, NFQUEUE, raw sockets)"
    for tool in ("ip", "iptables", "nft", "tc", "curl"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def sh(argv: Sequence[str], *, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout, **kw)


def in_ns(ns: str, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    return sh(["ip", "netns", "exec", ns, *argv], **kw)


def remove_namespaces() -> None:
    for ns in NAMESPACES:
        pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        sh(["ip", "netns", "delete", ns], check=False)


def create_namespaces() -> None:
    for ns in NAMESPACES:
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        # No duplicate address detection: link-local addresses usable at once, so neighbour discovery
        # (and with it the first IPv6 packet) does not wait a second for DAD.
        in_ns(ns, ["sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
    sh(["ip", "link", "add", "cl0", "netns", CLIENT, "type", "veth", "peer", "name", "ce0", "netns", CENSOR])
    sh(["ip", "link", "add", "ce1", "netns", CENSOR, "type", "veth", "peer", "name", "sv0", "netns", SERVER])
    plan = {
        CLIENT: [("cl0", ["198.18.0.2/24", "2001:db8:0:1::2/64"])],
        CENSOR: [("ce0", ["198.18.0.1/24", "2001:db8:0:1::1/64"]), ("ce1", ["198.19.0.1/24", "2001:db8:0:2::1/64"])],
        SERVER: [("sv0", ["198.19.0.2/24", "2001:db8:0:2::2/64"] + [f"{ip}/32" for ip in EXTRA_SERVER_IPS])],
    }
    for ns, links in plan.items():
        for dev, addrs in links:
            for addr in addrs:
                extra = ["nodad"] if ":" in addr else []
                sh(["ip", "-n", ns, "addr", "add", addr, "dev", dev, *extra])
            sh(["ip", "-n", ns, "link", "set", dev, "up"])
    sh(["ip", "-n", CLIENT, "route", "add", "default", "via", "198.18.0.1"])
    sh(["ip", "-n", CLIENT, "-6", "route", "add", "default", "via", "2001:db8:0:1::1"])
    sh(["ip", "-n", SERVER, "route", "add", "default", "via", "198.19.0.1"])
    sh(["ip", "-n", SERVER, "-6", "route", "add", "default", "via", "2001:db8:0:2::1"])
    in_ns(CENSOR, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])


@dataclass
class Captured:
    t: float  # time.monotonic() in the capturing process
    outgoing: bool
    raw: bytes  # the IP packet
    pkt: Packet | None


@dataclass
class NetPath:
    client: str = CLIENT
    censor: str = CENSOR
    server: str = SERVER
    servers: subprocess.Popen | None = None

    def client_run(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return in_ns(self.client, argv, check=False, **kw)

    def client_python(self, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return in_ns(self.client, [sys.executable, "-c", textwrap.dedent(code), *args], check=False, timeout=timeout)

    def curl(self, url: str, *opts: str, timeout: float = 5) -> tuple[int, str, str]:
        """(curl exit code, body, stderr)."""
        proc = self.client_run(["curl", "-sS", "-m", str(timeout), *opts, url], timeout=timeout + 5)
        return proc.returncode, proc.stdout, proc.stderr

    def connect(self, *targets: str, timeout: float = 0.5) -> list[str]:
        """Outcome of a TCP connect from the client to each ``"addr,port[,source port]"``."""
        proc = self.client_python(TCP_CONNECTS, str(timeout), *targets, timeout=10 + timeout * len(targets))
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def kernel(self) -> KernelProgram:
        return KernelProgram(self.censor)

    def in_censor(self, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return in_ns(self.censor, [sys.executable, "-c", textwrap.dedent(code), *args], check=False, timeout=timeout)

    @contextmanager
    def capture(self, ns: str, iface: str, port: int, seconds: float = 10) -> Iterator[list[Captured]]:
        """Packets to/from ``port`` seen on ``iface`` in ``ns`` while the block runs (filled in at its end)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(HERE / "_capture.py"), iface, str(seconds), str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        packets: list[Captured] = []
        try:
            yield packets
        finally:
            time.sleep(0.3)
            proc.terminate()
            out, _ = proc.communicate(timeout=10)
            for line in out.splitlines():
                record = json.loads(line)
                raw = bytes.fromhex(record["ip"])
                pkt = Decoder().decode(Frame(0.0, 101, raw, len(raw), 0))
                packets.append(Captured(record["t"], record["out"], raw, pkt))


@pytest.fixture(scope="session")
def netpath() -> Iterator[NetPath]:
    reason = root_reason()
    if reason:
        pytest.skip(reason)
    from chokepoint.lab.state import session_lock

    with session_lock(timeout=600):
        remove_namespaces()
        path = NetPath()
        try:
            create_namespaces()
            path.servers = subprocess.Popen(
                ["ip", "netns", "exec", SERVER, sys.executable, str(HERE / "_servers.py")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            line = path.servers.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"test servers did not start: {line!r} {path.servers.stderr.read()}")
            warm = path.client_python(WARM_UP, timeout=30)
            if warm.returncode != 0:
                raise RuntimeError(f"no IPv4/IPv6 path client -> server: {warm.stdout} {warm.stderr}")
            yield path
        finally:
            if path.servers is not None:
                path.servers.kill()
                path.servers.wait()
            remove_namespaces()  # the censor's kernel state (rules, sets, qdiscs) goes with its namespace


@dataclass
class Censord:
    """A censor daemon started as its real command line inside the censor namespace."""

    path: NetPath
    state_dir: Path
    rules: str
    mode: str = "inline"
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> Censord:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        rules_file = self.state_dir / "rules.yaml"
        rules_file.write_text(self.rules)
        self.log = open(self.state_dir / "censord.log", "wb")
        argv = [
            "ip",
            "netns",
            "exec",
            self.path.censor,
            sys.executable,
            "-m",
            "chokepoint.backends.censord",
            "--mode",
            self.mode,
            "--rules",
            str(rules_file),
            "--state-dir",
            str(self.state_dir),
            "--seed",
            "7",
            *self.extra,
        ]
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"censord exited {self.proc.returncode}: {self.log_text()}")
            stats = self.stats()
            if stats and stats.get("running"):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"censord did not come up: {self.log_text()}")

    def log_text(self) -> str:
        return (self.state_dir / "censord.log").read_text(errors="replace")

    def stats(self) -> dict | None:
        try:
            return json.loads((self.state_dir / "censor-stats.json").read_text())
        except (OSError, ValueError):
            return None

    def fresh_stats(self) -> dict:
        """Counters written after now (the daemon rewrites them every second)."""
        since = time.time()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats and stats["updated"] > since:
                return stats
            time.sleep(0.1)
        raise AssertionError("censor-stats.json was not rewritten within 5 s")

    def events(self) -> list[dict]:
        path = self.state_dir / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def actions(self, rule: str | None = None) -> list[dict]:
        return [
            e
            for e in self.events()
            if e["event_type"] == "chokepoint" and (rule is None or e["chokepoint"]["rule"] == rule)
        ]

    def wait_actions(self, rule: str, predicate=bool, timeout: float = 3.0) -> list[dict]:
        """``actions(rule)`` once ``predicate`` holds for them (the daemon writes its event just after it acted,
        so a client can see the verdict before the line is in the file), or as they are at the deadline."""
        deadline = time.monotonic() + timeout
        while not predicate(found := self.actions(rule)) and time.monotonic() < deadline:
            time.sleep(0.05)
        return found

    def stop(self) -> int:
        """SIGTERM and wait: a clean stop."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else 0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.log.close()
        self.path.kernel().remove()


@pytest.fixture
def censord_factory(netpath: NetPath, tmp_path: Path) -> Iterator:
    """``censord_factory(rules, mode=..., extra=[...])`` -> a running daemon, closed (kernel state removed)
    when the test ends."""
    started: list[Censord] = []

    def make(rules: str, *, mode: str = "inline", extra: Sequence[str] = (), name: str = "censor") -> Censord:
        daemon = Censord(netpath, tmp_path / name, rules, mode, list(extra))
        started.append(daemon)
        return daemon.start()

    try:
        yield make
    finally:
        for daemon in started:
            daemon.close()
