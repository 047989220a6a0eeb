"""Run ``python -m chokepoint.lab.services`` on loopback with free high ports (no namespaces, no root)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLIENT_TIMEOUT = 10.0


def ipv6_loopback() -> bool:
    """True when ::1 can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1", taken: set[int] | None = None) -> int:
    """A port that is free for both TCP and UDP on ``host`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            if taken and port in taken:
                continue
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


@dataclass
class Running:
    """A services process and where to reach it."""

    process: subprocess.Popen
    state_dir: Path
    log: Path
    ready_file: Path
    ports: dict[str, int]
    ready: dict = field(default_factory=dict)

    @property
    def echo_ports(self) -> list[int]:
        return [int(p) for p in str(self.ports["echo"]).split(",")]

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "ca.pem"

    def endpoints(self, service: str, transport: str) -> list[tuple[str, int]]:
        return [
            (e["address"], e["port"])
            for e in self.ready["endpoints"]
            if e["service"] == service and e["transport"] == transport
        ]

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""


def services_argv(
    state_dir: Path,
    *,
    role: str = "server",
    bind: tuple[str, ...] = ("127.0.0.1",),
    dns_bind: tuple[str, ...] = ("127.0.0.1",),
    ports: dict[str, int] | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "chokepoint.lab.services",
        "--role",
        role,
        "--state-dir",
        str(state_dir),
        "--dns-bind",
        ",".join(dns_bind),
    ]
    if role == "server":
        argv += ["--bind", ",".join(bind)]
    for name, port in (ports or {}).items():
        argv += [f"--{name}-port" if name != "echo" else "--echo-ports", str(port)]
    return argv + list(extra)


def pick_ports(hosts: tuple[str, ...] = ("127.0.0.1",)) -> dict[str, int]:
    """http, https (+ QUIC on the same UDP port), dns and two echo ports, free on every host."""
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name in ("http", "https", "dns", "echo_a", "echo_b"):
        while True:
            port = free_port(hosts[0], taken)
            taken.add(port)
            if all(_free_on(host, port) for host in hosts[1:]):
                break
        ports[name] = port
    return {
        "http": ports["http"],
        "https": ports["https"],
        "dns": ports["dns"],
        "echo": f"{ports['echo_a']},{ports['echo_b']}",
    }  # type: ignore[dict-item]


def _free_on(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as sock:
                sock.bind((host, port))
        return True
    except OSError:
        return False


def start(
    state_dir: Path,
    *,
    role: str = "server",
    bind: tuple[str, ...] = ("127.0.0.1",),
    dns_bind: tuple[str, ...] = ("127.0.0.1",),
    ports: dict | None = None,
    extra: tuple[str, ...] = (),
    wait: bool = True,
) -> Running:
    """Start a services process; with ``wait``, return once its ready file lists its endpoints."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"services-{role}.log"
    ready_file = state_dir / f"services-{role}.ready.json"
    ports = dict(ports or pick_ports((*bind, *dns_bind)))
    with open(log, "ab") as out:
        process = subprocess.Popen(
            services_argv(state_dir, role=role, bind=bind, dns_bind=dns_bind, ports=ports, extra=extra),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Running(process, state_dir, log, ready_file, ports)
    if wait:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                stop(running)
                raise RuntimeError(f"services did not become ready (exit {process.returncode}):\n{running.log_text()}")
            time.sleep(0.05)
        running.ready = json.loads(ready_file.read_text())
    return running


def stop(running: Running, sig: int = signal.SIGTERM) -> int:
    """Signal the process and return its exit status (SIGKILL after a timeout)."""
    if running.process.poll() is None:
        os.kill(running.process.pid, sig)
        try:
            running.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait(STOP_TIMEOUT)
    return running.process.returncode


def run_client(
    argv: list[str], *, input: bytes | None = None, timeout: float = CLIENT_TIMEOUT, check: bool = False
) -> subprocess.CompletedProcess:
    """Run a real client (curl, openssl, dig) with a hard timeout."""
    return subprocess.run(
        argv, input=input if input is not None else b"", capture_output=True, timeout=timeout, check=check
    )
