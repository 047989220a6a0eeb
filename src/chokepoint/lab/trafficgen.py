"""Captures of real programs' traffic, for tuning and measuring detectors (TLS-in-TLS, mid-connection flows).

A self-contained bench beside the lab, named after it: two namespaces ``<lab>-tgc`` (client) and ``<lab>-tgs``
(server) joined by one veth with segmentation offloads off (so a capture shows wire-sized segments), no censor.
The server runs the lab services (``chokepoint.lab.services``: HTTP/1.1, HTTPS with a leaf per SNI from a CA made
for the bench, HTTP/3) on the site addresses, and the real proxy servers; the client runs the proxy clients and
real clients (curl, headless Chromium, aioquic). ``tcpdump`` on the client's veth writes the capture.

Proxies (:data:`PROXIES`), each a real program from Debian with its own config written here:

- ``trojan``: trojan 1.16 (TLS, then a SHA-224 password line and a SOCKS-like request, then the payload);
- ``vmess-tls``, ``vless-tls``, ``vmess-ws-tls``: v2ray 4.34 VMess (AEAD) or VLESS over TLS, VMess over
  WebSocket over TLS;
- ``vmess-tcp``: VMess over plain TCP (fully encrypted, no TLS: the FET case).

Namespaces, addresses (198.18.200.0/24 for the link, 198.18.201.0/24 for the sites: RFC 2544 benchmarking space)
and the processes are torn down on exit, also after a failure; only names of this bench are ever removed. Root
only. Every system command goes through ``lab/system.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chokepoint.lab import instance, system
from chokepoint.lab.ca import LabCA

CLIENT_NS = instance.namespace("tgc")
SERVER_NS = instance.namespace("tgs")
CLIENT_IF, SERVER_IF = "tgc0", "tgs0"
CLIENT_ADDR, SERVER_ADDR = "198.18.200.2", "198.18.200.1"
#: Web sites on the server (the lab services answer any Host): name -> address.
SITES: Mapping[str, str] = {
    "www.site-a.test": "198.18.201.10",
    "www.site-b.test": "198.18.201.11",
    "media.site-c.test": "198.18.201.12",
}
PROXY_NAME = "proxy.test"
ETC_NETNS = Path("/etc/netns")
OFFLOADS_OFF = ("tso", "gso", "gro", "tx-udp-segmentation")
TOOLS = ("ip", "tcpdump", "ethtool", "curl")


class BenchError(RuntimeError):
    """The bench could not be built, or a program it started failed."""


@dataclass(frozen=True, slots=True)
class Proxy:
    """One proxy: its server port on :data:`SERVER_ADDR`, the local SOCKS port of its client, the programs."""

    name: str
    server_port: int
    socks_port: int
    program: str  # "trojan" or "v2ray"


PROXIES: Mapping[str, Proxy] = {
    p.name: p
    for p in (
        Proxy("trojan", 443, 11080, "trojan"),
        Proxy("vmess-tls", 8443, 11081, "v2ray"),
        Proxy("vless-tls", 8444, 11082, "v2ray"),
        Proxy("vmess-ws-tls", 8445, 11083, "v2ray"),
        Proxy("vmess-tcp", 10086, 11084, "v2ray"),
    )
}


def missing_tools(proxies: tuple[str, ...] = ()) -> list[str]:
    """Programs the bench needs that are not installed (``chromium`` is checked by :meth:`TrafficBench.chromium`)."""
    wanted = list(TOOLS) + sorted({PROXIES[p].program for p in proxies})
    return [tool for tool in wanted if system.which(tool) is None]


class TrafficBench:
    """The two namespaces, the services and the CA; a context manager (``with TrafficBench(dir) as bench``)."""

    def __init__(self, workdir: str | os.PathLike[str]) -> None:
        self.workdir = Path(workdir)
        self.state = self.workdir / "state"
        self.secret = uuid.uuid4()
        self._procs: list[subprocess.Popen] = []
        self._ca: LabCA | None = None

    # -- building and tearing down ---------------------------------------------------------------------

    def __enter__(self) -> TrafficBench:
        destroy()  # leftovers of an earlier run that was killed
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self._procs):
            _stop(proc)
        self._procs.clear()
        destroy()

    def _build(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        system.ip_batch([["netns", "add", CLIENT_NS], ["netns", "add", SERVER_NS]])
        system.ip(
            [
                "link",
                "add",
                CLIENT_IF,
                "netns",
                CLIENT_NS,
                "type",
                "veth",
                "peer",
                "name",
                SERVER_IF,
                "netns",
                SERVER_NS,
            ]
        )
        off = [word for feature in OFFLOADS_OFF for word in (feature, "off")]
        for ns, iface, addr in ((CLIENT_NS, CLIENT_IF, CLIENT_ADDR), (SERVER_NS, SERVER_IF, SERVER_ADDR)):
            system.run(["ethtool", "-K", iface, *off], netns=ns)
            system.ip_batch(
                [
                    ["link", "set", "lo", "up"],
                    ["addr", "add", f"{addr}/24", "dev", iface],
                    ["link", "set", iface, "up"],
                ],
                ns,
            )
        system.ip(["route", "add", "198.18.201.0/24", "via", SERVER_ADDR], CLIENT_NS)
        system.ip_batch([["addr", "add", f"{a}/32", "dev", "lo"] for a in SITES.values()], SERVER_NS)
        hosts = "".join(f"{a} {n}\n" for n, a in SITES.items()) + f"{SERVER_ADDR} {PROXY_NAME}\n127.0.0.1 localhost\n"
        for ns in (CLIENT_NS, SERVER_NS):
            etc = ETC_NETNS / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
            (etc / "resolv.conf").write_text("# chokepoint traffic bench: names come from hosts only\n")
        self._ca = LabCA.load_or_create(self.state)
        self._wait_link()
        ready = self.state / "services.ready.json"
        self.start(
            "services",
            [
                sys.executable,
                "-m",
                "chokepoint.lab.services",
                "--role",
                "server",
                "--state-dir",
                str(self.state),
                "--bind",
                ",".join(SITES.values()),
                "--dns-bind",
                "",
                "--echo-ports",
                "",
                "--ready-file",
                str(ready),
            ],
            SERVER_NS,
        )
        _wait(lambda: ready.exists(), 20, "the lab services did not become ready", self.log("services"))

    def _wait_link(self) -> None:
        def reachable() -> bool:
            return system.run(["ping", "-c1", "-W1", SERVER_ADDR], netns=CLIENT_NS, check=False).returncode == 0

        _wait(reachable, 10, "no path from the client namespace to the server namespace")

    @property
    def ca_pem(self) -> Path:
        return self.state / "ca.pem"

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def start(self, name: str, argv: list[str], netns: str) -> subprocess.Popen:
        """Start a program in a namespace (its output to ``<name>.log``); stopped when the bench closes."""
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(
                system.in_netns(argv, netns),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        _stop(proc)
        self._procs.remove(proc)

    # -- captures ---------------------------------------------------------------------------------------

    @contextmanager
    def capture(self, path: str | os.PathLike[str]) -> Iterator[Path]:
        """``tcpdump`` on the client's veth while the block runs (plus a short tail for the last packets)."""
        path = Path(path)
        log = self.log(f"tcpdump-{path.stem}")
        proc = self.start(
            f"tcpdump-{path.stem}",
            ["tcpdump", "-i", CLIENT_IF, "-nn", "-U", "--immediate-mode", "-s", "0", "-w", str(path)],
            CLIENT_NS,
        )
        _wait(lambda: "listening on" in _text(log), 10, "tcpdump did not start", log)
        try:
            yield path
        finally:
            time.sleep(0.5)
            self.stop(proc)

    # -- proxies ------------------------------------------------------------------------------------------

    @contextmanager
    def proxy(self, name: str) -> Iterator[Proxy]:
        """The proxy's server (server namespace) and client (client namespace, SOCKS on 127.0.0.1) while the
        block runs."""
        spec = PROXIES[name]
        assert self._ca is not None
        cert, key = self._ca.issue(PROXY_NAME)
        (self.state / "proxy.pem").write_bytes(cert)
        (self.state / "proxy.key").write_bytes(key)
        server_conf, client_conf = (self.state / f"{name}-server.json", self.state / f"{name}-client.json")
        server, client = _configs(spec, self.secret, self.state, self.ca_pem)
        server_conf.write_text(json.dumps(server, indent=2))
        client_conf.write_text(json.dumps(client, indent=2))
        argv = (
            (lambda conf: ["trojan", "-c", str(conf)])
            if spec.program == "trojan"
            else (lambda conf: ["v2ray", "-config", str(conf)])
        )
        procs = [self.start(f"{name}-server", argv(server_conf), SERVER_NS)]
        try:
            self._listening(SERVER_NS, spec.server_port, f"{name}-server")
            procs.append(self.start(f"{name}-client", argv(client_conf), CLIENT_NS))
            self._listening(CLIENT_NS, spec.socks_port, f"{name}-client")
            yield spec
        finally:
            for proc in reversed(procs):
                self.stop(proc)

    def _listening(self, netns: str, port: int, name: str) -> None:
        def bound() -> bool:
            out = system.run(["ss", "-ltnH", f"sport = :{port}"], netns=netns, check=False).stdout
            return bool(out.strip())

        _wait(bound, 15, f"{name} is not listening on port {port}", self.log(name))

    # -- clients ------------------------------------------------------------------------------------------

    def curl(self, *urls: str, proxy: Proxy | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess[bytes]:
        """``curl`` from the client namespace (through the proxy's SOCKS port when given, names resolved by the
        proxy); several URLs of one host share a connection (HTTP/1.1 keep-alive). Raises :class:`BenchError`
        when a page does not load."""
        argv = ["curl", "-sS", "-w", "%{http_code} ", "--max-time", str(timeout), "--cacert", str(self.ca_pem)]
        if proxy is not None:
            argv += ["-x", f"socks5h://127.0.0.1:{proxy.socks_port}"]
        for url in urls:
            argv += ["-o", "/dev/null", url]
        done = system.run(argv, netns=CLIENT_NS, check=False, timeout=timeout + 5)
        codes = done.stdout.split()
        if done.returncode != 0 or len(codes) != len(urls) or not all(c.startswith(b"2") for c in codes):
            via = proxy.name if proxy else "no proxy"
            raise BenchError(f"curl {' '.join(urls)} via {via}: {done.returncode} {done.stderr!r}")
        return done

    def chromium(self, url: str, *, proxy: Proxy | None = None, timeout: float = 40.0) -> str:
        """Headless Chromium (Debian's ``chromium``) loads ``url`` from the client namespace and returns the DOM;
        background networking off, a fresh profile per run; certificate errors are ignored (the bench CA is not in
        its NSS store), which does not change the handshake."""
        binary = system.which("chromium")
        if binary is None:
            raise BenchError("chromium is not installed")
        profile = self.workdir / f"chromium-{uuid.uuid4().hex[:8]}"
        argv = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--metrics-recording-only",
            "--disable-features=MediaRouter,OptimizationHints",
            f"--user-data-dir={profile}",
            "--ignore-certificate-errors",
            "--dump-dom",
        ]
        if proxy is not None:
            argv.append(f"--proxy-server=socks5://127.0.0.1:{proxy.socks_port}")
        try:
            done = system.run([*argv, url], netns=CLIENT_NS, check=False, timeout=timeout)
        except system.CommandError as exc:  # a timeout
            raise BenchError(f"chromium {url}: {exc}") from None
        finally:
            shutil.rmtree(profile, ignore_errors=True)
        if done.returncode != 0 or b"CHOKEPOINT-LAB-ORIGIN" not in done.stdout:
            raise BenchError(
                f"chromium {url} via {proxy.name if proxy else 'no proxy'}: {done.returncode} {done.stderr[-400:]!r}"
            )
        return done.stdout.decode("utf-8", "replace")


def destroy() -> None:
    """Remove the bench's namespaces and /etc/netns files (only its own names), whatever state they are in."""
    present = set(system.netns_list())
    for ns in (CLIENT_NS, SERVER_NS):
        if ns in present:
            for pid in system.netns_pids(ns):  # programs the bench started there (the namespace is its own)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            system.ip(["netns", "delete", ns], check=False)
        shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)


def _configs(spec: Proxy, secret: uuid.UUID, state: Path, ca_pem: Path) -> tuple[dict, dict]:
    cert, key = str(state / "proxy.pem"), str(state / "proxy.key")
    if spec.program == "trojan":
        server = {
            "run_type": "server",
            "local_addr": SERVER_ADDR,
            "local_port": spec.server_port,
            "remote_addr": "127.0.0.1",
            "remote_port": 80,
            "password": [str(secret)],
            "log_level": 2,
            "ssl": {"cert": cert, "key": key, "alpn": ["http/1.1"]},
        }
        client = {
            "run_type": "client",
            "local_addr": "127.0.0.1",
            "local_port": spec.socks_port,
            "remote_addr": SERVER_ADDR,
            "remote_port": spec.server_port,
            "password": [str(secret)],
            "log_level": 2,
            "ssl": {
                "verify": True,
                "verify_hostname": True,
                "cert": str(ca_pem),
                "sni": PROXY_NAME,
                "alpn": ["h2", "http/1.1"],
            },
        }
        return server, client
    protocol = "vless" if spec.name.startswith("vless") else "vmess"
    user = {"id": str(secret)} if protocol == "vless" else {"id": str(secret), "alterId": 0}
    stream: dict = {"network": "ws" if "ws" in spec.name else "tcp"}
    if stream["network"] == "ws":
        stream["wsSettings"] = {"path": "/chokepoint"}
    tls = spec.name.endswith("-tls")
    server_stream, client_stream = dict(stream), dict(stream)
    if tls:
        server_stream |= {
            "security": "tls",
            "tlsSettings": {"certificates": [{"certificateFile": cert, "keyFile": key}]},
        }
        client_stream |= {
            "security": "tls",
            "tlsSettings": {
                "serverName": PROXY_NAME,
                "certificates": [{"usage": "verify", "certificateFile": str(ca_pem)}],
            },
        }
    inbound = {
        "listen": SERVER_ADDR,
        "port": spec.server_port,
        "protocol": protocol,
        "settings": {"clients": [user]},
        "streamSettings": server_stream,
    }
    if protocol == "vless":
        inbound["settings"]["decryption"] = "none"
    server = {"log": {"loglevel": "warning"}, "inbounds": [inbound], "outbounds": [{"protocol": "freedom"}]}
    out_user = dict(user) | ({"encryption": "none"} if protocol == "vless" else {"security": "aes-128-gcm"})
    client = {
        "log": {"loglevel": "warning"},
        "inbounds": [{"listen": "127.0.0.1", "port": spec.socks_port, "protocol": "socks", "settings": {"udp": False}}],
        "outbounds": [
            {
                "protocol": protocol,
                "settings": {"vnext": [{"address": SERVER_ADDR, "port": spec.server_port, "users": [out_user]}]},
                "streamSettings": client_stream,
            }
        ],
    }
    return server, client


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _wait(ready, seconds: float, message: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    tail = _text(log)[-600:] if log is not None else ""
    raise BenchError(f"{message}{': ' + tail if tail else ''}")
