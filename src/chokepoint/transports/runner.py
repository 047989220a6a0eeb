"""Run one transport between two network namespaces and carry downloads through it.

:class:`TransportRun` renders a :class:`~chokepoint.transports.spec.TransportSpec` with a :class:`Placement`
(where the client and server run, the server's address and port, the origin to download from), starts the
server side, then the client side, waits until the client is ready and fetches the origin's
``/large?bytes=N`` with curl inside the client namespace (``transfer()``). Every daemon's output goes to
``<dir>/<side>-<name>.log``; ``stop()`` ends the process groups it started (SIGTERM, then SIGKILL) and
nothing else. Failures are typed: :class:`TransportError` with ``kind`` ``missing`` (a program is not
installed), ``setup`` (a command failed), ``crashed`` (a daemon exited) or ``not-ready`` (the client never
became ready while its daemons ran: what a blocked handshake looks like), always with the log that shows why.
All commands go through :mod:`chokepoint.lab.system` as argument lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chokepoint.lab import system
from chokepoint.transports import materials
from chokepoint.transports.spec import Daemon, TransportSpec

#: The origin's ``/large`` body (``chokepoint.lab.services.app``): a 64-byte pattern repeated.
LARGE_PATTERN = b"chokepoint lab large body: 0123456789 abcdefghijklmnopqrstuvwxy\n"
SOCKS_PORT = 1080
#: Tunnel-inner addresses (RFC 2544, used only on tunnel interfaces; one transport runs at a time).
TUN_SERVER_IP = "198.18.240.1"
TUN_CLIENT_IP = "198.18.240.2"
SERVER_NAME = "proxy.transport.test"


class TransportError(Exception):
    """A transport could not be brought up; ``kind`` says how (module docstring), ``log`` shows why."""

    def __init__(self, kind: str, message: str, log: str = "") -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.log = log


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a transport runs: namespaces, addresses and the origin the client downloads from."""

    client_ns: str
    server_ns: str
    server_ip: str
    client_ip: str
    origin_ip: str
    origin_port: int = 80
    lab: str = "cpk"
    extra: tuple[tuple[str, str], ...] = ()  # more template variables (the lab's Tor network)


@dataclass(slots=True)
class Transfer:
    """One download through the transport (curl's own numbers; ``ok``: every byte arrived intact)."""

    ok: bool
    bytes: int
    expected: int
    seconds: float
    first_byte_s: float | None
    curl_exit: int
    error: str
    http_code: int = 0
    started: float = 0.0  # time.monotonic() when it began

    @property
    def kbps(self) -> float:
        return self.bytes * 8 / 1000 / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "bytes": self.bytes,
            "expected": self.expected,
            "seconds": round(self.seconds, 3),
            "first_byte_s": None if self.first_byte_s is None else round(self.first_byte_s, 3),
            "kbps": round(self.kbps, 1),
            "curl_exit": self.curl_exit,
            "error": self.error,
            "http_code": self.http_code,
        }


def expected_body(size: int) -> bytes:
    whole, rest = divmod(size, len(LARGE_PATTERN))
    return LARGE_PATTERN * whole + LARGE_PATTERN[:rest]


def missing_programs(spec: TransportSpec) -> list[str]:
    return [p for p in spec.programs if shutil.which(p) is None]


def program_version(spec: TransportSpec) -> str:
    """The installed version the spec's ``version`` command reports ('' when it cannot tell)."""
    if not spec.version_argv:
        return ""
    try:
        proc = system.run(list(spec.version_argv), check=False, timeout=10)
    except system.CommandError:
        return ""
    match = re.search(spec.version_pattern, (proc.stdout + proc.stderr).decode("utf-8", "replace"))
    return match.group(1) if match and match.groups() else (match.group(0) if match else "")


@dataclass
class _Proc:
    side: str
    daemon: Daemon
    pid: int
    log: Path


@dataclass
class TransportRun:
    """One run of one transport (module docstring). Use as a context manager, or call ``stop()``."""

    spec: TransportSpec
    placement: Placement
    directory: Path
    port: int | None = None
    procs: list[_Proc] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)

    # -- context ------------------------------------------------------------------------------------------
    def _context(self) -> dict[str, str]:
        p = self.placement
        port = self.port or self.spec.port
        ctx = {
            "server_ip": p.server_ip,
            "client_ip": p.client_ip,
            "port": str(port),
            "origin_ip": p.origin_ip,
            "origin_port": str(p.origin_port),
            "socks_port": str(SOCKS_PORT),
            "tun_server_ip": TUN_SERVER_IP,
            "tun_client_ip": TUN_CLIENT_IP,
            "server_name": SERVER_NAME,
            "lab": p.lab,
            "python": _python(),
        }
        ctx.update(dict(self.spec.vars))
        ctx.update(dict(p.extra))
        ctx.update(
            materials.make(
                self.spec.materials,
                self.directory / "materials",
                server_name=SERVER_NAME,
                server_ip=p.server_ip,
                port=port,
            )
        )
        for side in ("server", "client"):
            ctx[f"{side}_dir"] = str(self.directory / side)
        # the spec's own vars may name other variables ($lab in an interface name)
        for key, value in list(ctx.items()):
            if "$" in value and key in dict(self.spec.vars):
                ctx[key] = self.spec.render(value, ctx)
        return ctx

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Server side, client side, then wait until the client is ready (``TransportError`` otherwise)."""
        missing = missing_programs(self.spec)
        if missing:
            packages = ", ".join(self.spec.packages) or "?"
            raise TransportError("missing", f"not installed: {', '.join(missing)} (Debian: {packages})")
        if self.spec.unavailable:
            raise TransportError("missing", f"cannot run here: {self.spec.unavailable}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.context = self._context()
        for side, netns in (("server", self.placement.server_ns), ("client", self.placement.client_ns)):
            self._start_side(side, netns)
        self._wait_ready()

    def _start_side(self, side: str, netns: str) -> None:
        spec_side = getattr(self.spec, side)
        sdir = self.directory / side
        sdir.mkdir(parents=True, exist_ok=True)
        ctx = {**self.context, "dir": str(sdir)}
        for name, template in spec_side.files:
            (sdir / name).write_text(self.spec.render(template, ctx), encoding="utf-8")
        for argv in spec_side.steps:
            self._step(side, netns, argv, ctx)
        for daemon in spec_side.run:
            argv = [self.spec.render(a, ctx) for a in daemon.argv]
            env = {k: self.spec.render(v, ctx) for k, v in daemon.env}
            log = self.directory / f"{side}-{daemon.name}.log"
            try:
                pid = system.spawn(argv, netns=netns, log_path=log, env=env or None)
            except system.MissingTool as exc:
                raise TransportError("missing", str(exc)) from None
            self.procs.append(_Proc(side, daemon, pid, log))
        deadline = time.monotonic() + max((d.grace for d in spec_side.run), default=0.0)
        while time.monotonic() < deadline:
            self._check_alive(side)
            time.sleep(0.05)
        self._check_alive(side)
        for argv in spec_side.after:
            self._step(side, netns, argv, ctx)

    def _step(self, side: str, netns: str, argv: tuple[str, ...], ctx: dict[str, str]) -> None:
        rendered = [self.spec.render(a, ctx) for a in argv]
        try:
            system.run(rendered, netns=netns, timeout=30)
        except system.MissingTool as exc:
            raise TransportError("missing", str(exc)) from None
        except system.CommandError as exc:
            raise TransportError("setup", f"{side}: {exc}", self.logs()) from None

    def _check_alive(self, side: str | None = None) -> None:
        for proc in self.procs:
            if (side is None or proc.side == side) and not _alive(proc.pid):
                raise TransportError("crashed", f"{proc.side} {proc.daemon.name} exited", self.logs())

    def _wait_ready(self) -> None:
        ready = self.spec.ready
        if ready is None:
            return
        deadline = time.monotonic() + ready.timeout
        while True:
            self._check_alive()
            if self._is_ready():
                return
            if time.monotonic() >= deadline:
                raise TransportError("not-ready", f"client not ready within {ready.timeout:g} s", self.logs())
            time.sleep(0.1)

    def _is_ready(self) -> bool:
        ready = self.spec.ready
        assert ready is not None
        ctx = {**self.context, "dir": str(self.directory / "client")}
        if ready.kind == "listen":
            host, _, port = self.spec.render(str(ready.value), ctx).rpartition(":")
            proc = system.run(["ss", "-Hltn", f"sport = :{port}"], netns=self.placement.client_ns, check=False)
            return host in proc.stdout.decode() or (host in ("0.0.0.0", "*") and bool(proc.stdout.strip()))
        if ready.kind == "log":
            needle = self.spec.render(str(ready.value), ctx)
            logs = [p.log for p in self.procs if not ready.process or p.daemon.name == ready.process]
            return any(needle in _read(log) for log in logs)
        argv = [self.spec.render(a, ctx) for a in ready.value]
        return system.run(argv, netns=self.placement.client_ns, check=False, timeout=10).returncode == 0

    def stop(self) -> None:
        """End every process group this run started (SIGTERM, SIGKILL after 2 s), then run the sides'
        ``teardown`` commands (failures ignored); idempotent."""
        live = [p for p in self.procs if _alive(p.pid)]
        for proc in live:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_alive(p.pid) for p in live):
            time.sleep(0.05)
        for proc in live:
            if _alive(proc.pid):
                _signal_group(proc.pid, signal.SIGKILL)
        for proc in live:
            _reap(proc.pid)
        self.procs.clear()
        if self.context:
            for side, netns in (("client", self.placement.client_ns), ("server", self.placement.server_ns)):
                ctx = {**self.context, "dir": str(self.directory / side)}
                for argv in getattr(self.spec, side).teardown:
                    system.run([self.spec.render(a, ctx) for a in argv], netns=netns, check=False)
            self.context = {}

    def __enter__(self) -> TransportRun:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- traffic ------------------------------------------------------------------------------------------
    def curl_argv(self, url: str, out: Path, timeout: float) -> list[str]:
        fetch = self.spec.fetch
        ctx = {**self.context, "dir": str(self.directory / "client")}
        argv = ["curl", "-sS", "--max-time", f"{timeout:g}", "-o", str(out), "-w", "%{json}"]
        if fetch.via == "socks5h":
            argv += ["--socks5-hostname", self.spec.render(fetch.proxy or "127.0.0.1:$socks_port", ctx)]
        elif fetch.via == "http-proxy":
            argv += ["-p", "-x", "http://" + self.spec.render(fetch.proxy, ctx)]
        elif fetch.interface:
            argv += ["--interface", self.spec.render(fetch.interface, ctx)]
        return [*argv, url]

    def transfer(self, size: int = 256 * 1024, timeout: float = 8.0, index: int = 0) -> Transfer:
        """Download ``size`` bytes of the origin's ``/large`` through the transport."""
        url = f"http://{self.placement.origin_ip}:{self.placement.origin_port}/large?bytes={size}"
        out = self.directory / f"download-{index}.bin"
        out.unlink(missing_ok=True)
        started = time.monotonic()
        proc = system.run(
            self.curl_argv(url, out, timeout), netns=self.placement.client_ns, check=False, timeout=timeout + 10
        )
        elapsed = time.monotonic() - started
        try:
            info = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
        except ValueError:
            info = {}
        exit_code = int(info.get("exitcode", proc.returncode))
        body = out.read_bytes() if out.exists() else b""
        intact = len(body) == size and hashlib.sha256(body).digest() == hashlib.sha256(expected_body(size)).digest()
        out.unlink(missing_ok=True)
        error = str(info.get("errormsg") or "") or proc.stderr.decode("utf-8", "replace").strip()
        first = info.get("time_starttransfer")
        return Transfer(
            ok=intact and exit_code == 0,
            bytes=len(body),
            expected=size,
            seconds=float(info.get("time_total") or elapsed),
            first_byte_s=float(first) if first else None,
            curl_exit=exit_code,
            error=error if exit_code else ("" if intact else "body differs from the origin's"),
            http_code=int(info.get("http_code") or 0),
            started=started,
        )

    # -- logs ---------------------------------------------------------------------------------------------
    def logs(self, lines: int = 25) -> str:
        """The tail of every daemon log of this run, each under a header."""
        parts = []
        for proc in self.procs:
            text = _read(proc.log).splitlines()[-lines:]
            parts.append(f"== {proc.side} {proc.daemon.name} ({proc.log})\n" + "\n".join(text))
        return "\n".join(parts)


def _python() -> str:
    import sys

    return sys.executable


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        waited = 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return _zombie(pid) is False
    return waited == 0


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


__all__ = ["Placement", "Transfer", "TransportError", "TransportRun", "expected_body", "missing_programs"]
