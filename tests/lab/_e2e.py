"""Shared helpers for the end-to-end lab tests (``test_e2e_inline.py``, ``test_e2e_mirror.py``; root only).

``running_lab()`` writes a small profile (rules + ``personality:``) to a test directory and brings the real lab
up with ``chokepoint.lab.up`` while holding the lab session lock (``chokepoint.lab.state.session_lock``, like
``_lab.lab_guard``), then always runs ``lab down`` (in a ``finally``) and checks that nothing of the lab is left.
The :class:`LabRun` it yields runs REAL clients inside ``cpk-client`` through ``chokepoint.lab.system``: curl,
dig, openssl s_client, Python (dnspython, aioquic, raw sockets) and tcpdump captures on any lab interface,
whose text output (``tcpdump -v``) is parsed into :class:`Seen` packets. The DNS, HTTP/3 and TCP-connect client
programs are shared with the conformance and backend tests (``tests/_lab_clients.py``); the rules, fixture and
checks the inline and mirror tests share are at the end of this module.

Addresses (docs/lab.md): the client is 198.18.0.2, the server's site addresses 198.19.0.10-39 serve HTTP :80,
HTTPS :443, HTTP/3 (UDP :443) and echo :7/:9000; the lab resolver is 198.19.0.53 (behind the censor), the
control resolver 198.18.9.1 (directly on the client, outside the censor's path). Tests give each scenario its
own site address, so residual blocks or kernel state of one check never touch another.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX
from tests._lab_clients import DNS_ALL_ANSWERS, H3_GET, TCP_CONNECTS, h3_get_args

from ._lab import OURS, CurlResult, foreign, leftovers, run_curl, tools_reason

CLIENT_NS, CENSOR_NS, SERVER_NS = f"{PREFIX}client", f"{PREFIX}censor", f"{PREFIX}server"
CLIENT_IP = "198.18.0.2"
LAB_DNS = "198.19.0.53"
CONTROL_DNS = "198.18.9.1"
DEFAULT_A = "198.19.0.10"  # what the lab resolvers answer for every name
ORIGIN_MARKER = "CHOKEPOINT-LAB-ORIGIN"
CA_FILE = str(st.STATE_DIR / "ca.pem")
#: curl exit codes (curl(1) "EXIT CODES").
CURL_OK, CURL_CONNECT, CURL_TIMEOUT, CURL_TLS_CONNECT, CURL_RECV = 0, 7, 28, 35, 56
TOOLS = ("curl", "dig", "openssl", "tcpdump", "iptables")


def missing_reason() -> str | None:
    """Why the end-to-end tests cannot run here (None: they can)."""
    return tools_reason(TOOLS, "the end-to-end tests")


# ------------------------------------------------------------------------------------------------ profiles

PROFILE_HEAD = """\
profile:
  name: {name}
  title: end-to-end test profile {name}
  country: XX
  observed: "2026-11"
  description: written by tests/lab/_e2e.py for one end-to-end test
  cite: ["tests/lab/_e2e.py"]
"""


def write_profile(directory: Path, name: str, rules: str, personality: str = "") -> Path:
    """A profile file ``directory/name.yaml``: the header, ``rules`` (YAML list items under ``rules:``) and an
    optional ``personality:`` section (its body, indented by the caller's text as written)."""
    text = PROFILE_HEAD.format(name=name) + "rules:\n" + textwrap.indent(textwrap.dedent(rules).strip("\n"), "  ")
    if personality.strip():
        text += "\npersonality:\n" + textwrap.indent(textwrap.dedent(personality).strip("\n"), "  ")
    path = directory / f"{name}.yaml"
    path.write_text(text + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ tcpdump output

#: ``tcpdump -nn -S -v -tt`` prints one IPv4 header line, then the transport line (indented); ``-S``: absolute
#: TCP sequence numbers.
_IP_LINE = re.compile(
    r"^(?P<t>\d+\.\d+) IP \(tos \S+, ttl (?P<ttl>\d+), id (?P<id>\d+), offset \d+, "
    r"flags \[(?P<ipflags>[^\]]*)\], proto (?P<proto>\w+) \(\d+\), length (?P<length>\d+)"
)
_ADDR = r"\d+\.\d+\.\d+\.\d+"
_ENDS = re.compile(rf"^\s+(?P<src>{_ADDR})(?:\.(?P<sport>\d+))? > (?P<dst>{_ADDR})(?:\.(?P<dport>\d+))?: (?P<rest>.*)$")
_TCP = re.compile(
    r"Flags \[(?P<flags>[^\]]*)\], cksum \S+ \([^)]*\), seq (?P<seq>\d+)(?::\d+)?"
    r"(?:, ack (?P<ack>\d+))?, win (?P<win>\d+),(?: options \[[^\]]*\],)? length (?P<plen>\d+)"
)


@dataclass(frozen=True, slots=True)
class Seen:
    """One IPv4 packet as tcpdump printed it."""

    time: float
    ttl: int
    ip_id: int
    df: bool
    proto: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    tcp_flags: str = ""  # tcpdump's letters: S F R P U . (ACK)
    seq: int | None = None
    ack: int | None = None
    window: int | None = None
    payload_len: int | None = None
    text: str = ""  # the transport line as printed (e.g. ICMP or DNS details)

    @property
    def is_rst(self) -> bool:
        return "R" in self.tcp_flags


def parse_tcpdump(text: str) -> list[Seen]:
    """The IPv4 packets in ``tcpdump -nn -S -v -tt`` output (other lines are skipped)."""
    out: list[Seen] = []
    lines = text.splitlines()
    for header, body in zip(lines, lines[1:]):
        ip = _IP_LINE.match(header)
        ends = _ENDS.match(body) if ip else None
        if ip is None or ends is None:
            continue
        tcp = _TCP.search(ends["rest"]) if ip["proto"] == "TCP" else None
        out.append(
            Seen(
                time=float(ip["t"]),
                ttl=int(ip["ttl"]),
                ip_id=int(ip["id"]),
                df="DF" in ip["ipflags"],
                proto=ip["proto"],
                src=ends["src"],
                dst=ends["dst"],
                sport=int(ends["sport"]) if ends["sport"] else None,
                dport=int(ends["dport"]) if ends["dport"] else None,
                tcp_flags=tcp["flags"] if tcp else "",
                seq=int(tcp["seq"]) if tcp else None,
                ack=int(tcp["ack"]) if tcp and tcp["ack"] else None,
                window=int(tcp["win"]) if tcp else None,
                payload_len=int(tcp["plen"]) if tcp else None,
                text=ends["rest"],
            )
        )
    return out


@dataclass
class Capture:
    """What a tcpdump running during a ``with`` block printed; filled in when the block ends."""

    namespace: str
    iface: str
    packets: list[Seen] = field(default_factory=list)
    raw: str = ""


# ------------------------------------------------------------------------------------------------ clients

#: One curl run (the lab tests' shared result class).
Curl = CurlResult


#: Run in the client: a TCP connection to argv[1]:argv[2] whose first packet is argv[3] (hex) - e.g. random
#: bytes or a real TLS ClientHello - then whatever comes back within argv[4] s (the echo service returns it).
#: Prints {"connected", "sent", "echoed" (hex), "outcome": ok|timeout|reset|...}.
FIRST_PACKET = """
import errno, json, socket, sys, time
address, port, first, wait = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), float(sys.argv[4])
out = {"connected": False, "sent": len(first), "echoed": "", "outcome": "ok"}
try:
    sock = socket.create_connection((address, port), timeout=wait)
    out["connected"] = True
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(first)
    got = b""
    deadline = time.monotonic() + wait
    while len(got) < len(first) and (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    out["echoed"] = got.hex()
except socket.timeout:
    out["outcome"] = "timeout"
except ConnectionResetError:
    out["outcome"] = "reset"
except OSError as exc:
    out["outcome"] = errno.errorcode.get(exc.errno, str(exc))
print(json.dumps(out))
"""

#: Run anywhere: a real TLS 1.3 ClientHello from Python's ssl module (MemoryBIO, no socket) with SNI argv[1],
#: printed as hex.
CLIENT_HELLO = """
import ssl, sys
context = ssl.create_default_context()
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = context.wrap_bio(incoming, outgoing, server_hostname=sys.argv[1])
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
print(outgoing.read().hex())
"""

#: Run in the client: a raw HTTP/1.1 GET over one TCP connection, reading until the peer closes (or argv[4] s);
#: prints {"data" (text), "closed_by": "fin"|"reset"|"timeout"}. argv: address port host path wait.
HTTP_UNTIL_CLOSE = """
import json, socket, sys, time
address, port, host, path, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
sock = socket.create_connection((address, port), timeout=wait)
sock.sendall(f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nUser-Agent: e2e\\r\\n\\r\\n".encode())
data, closed_by = b"", "timeout"
deadline = time.monotonic() + wait
try:
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            closed_by = "fin"
            break
        data += chunk
except ConnectionResetError:
    closed_by = "reset"
except socket.timeout:
    pass
print(json.dumps({"data": data.decode("latin-1"), "closed_by": closed_by}))
"""


@dataclass
class LabRun:
    """A lab that is up: the profile it runs and real clients in ``cpk-client``."""

    state: st.LabState
    profile_path: Path
    mode: str

    # -- running things in the namespaces ----------------------------------------------------------------
    def run(
        self, argv: Sequence[str], *, netns: str = CLIENT_NS, timeout: float = 30, input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return system.run(list(argv), netns=netns, check=False, timeout=timeout, input=input)

    def python(self, code: str, *args: str, netns: str = CLIENT_NS, timeout: float = 30) -> Any:
        """Run ``code`` with the lab's interpreter inside ``netns``; its stdout parsed as JSON."""
        proc = self.run([sys.executable, "-c", textwrap.dedent(code), *args], netns=netns, timeout=timeout)
        assert proc.returncode == 0, f"client script failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}"
        return json.loads(proc.stdout)

    def curl(self, url: str, *opts: str, timeout: float = 3.0, body: bool = True) -> Curl:
        """curl in the client (its /etc/netns resolv.conf and CA bundle: no flags needed for the lab CA)."""
        return run_curl(self.run, url, *opts, timeout=timeout, body=body)

    def dig(self, server: str, name: str, qtype: str = "A", *opts: str) -> str:
        proc = self.run(["dig", f"@{server}", name, qtype, "+time=2", "+tries=1", *opts], timeout=15)
        return proc.stdout.decode()

    def dns_all_answers(self, server: str, name: str, qtype: str = "A", wait: float = 1.0) -> list[dict[str, Any]]:
        return self.python(DNS_ALL_ANSWERS, json.dumps({"server": server, "name": name, "qtype": qtype, "wait": wait}))

    def openssl(self, address: str, servername: str, timeout: float = 5) -> tuple[int, str]:
        """``openssl s_client -servername NAME`` (verifying against the client's CA bundle) sending one HTTP
        request and reading until the server closes (``-ign_eof``): exit code, output."""
        request = f"GET / HTTP/1.1\r\nHost: {servername}\r\nConnection: close\r\n\r\n".encode()
        proc = self.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"{address}:443",
                "-servername",
                servername,
                "-verify_return_error",
                "-brief",
                "-ign_eof",
            ],
            timeout=timeout,
            input=request,
        )
        return proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", "replace")

    def h3_get(self, address: str, sni: str, timeout: float = 2.0) -> dict[str, Any]:
        """HTTP/3 GET to ``address``:443 with SNI ``sni``: {"outcome": "ok", "status", "origin"} or
        {"outcome": "timeout"} (or {"outcome": "error ..."})."""
        out = self.python(H3_GET, json.dumps(h3_get_args(address, sni, CA_FILE, timeout=timeout)), timeout=timeout + 15)
        return {key: value for key, value in out.items() if key in ("outcome", "status", "origin")}

    def first_packet(self, address: str, port: int, payload: bytes, wait: float = 1.5) -> dict[str, Any]:
        return self.python(FIRST_PACKET, address, str(port), payload.hex(), str(wait), timeout=wait * 3 + 10)

    def http_until_close(self, address: str, host: str, path: str = "/", wait: float = 3.0) -> dict[str, Any]:
        return self.python(HTTP_UNTIL_CLOSE, address, "80", host, path, str(wait), timeout=wait + 10)

    def connects(self, *targets: str, timeout: float = 1.0) -> list[str]:
        return self.python(TCP_CONNECTS, str(timeout), *targets, timeout=10 + timeout * len(targets))

    @contextmanager
    def capture(self, bpf: str, *, netns: str = CLIENT_NS, iface: str = "cl0") -> Iterator[Capture]:
        """tcpdump on ``iface`` in ``netns`` while the block runs; ``Capture.packets`` is filled at its end."""
        argv = system.in_netns(["tcpdump", "-i", iface, "-nn", "-S", "-v", "-tt", "-l", *bpf.split()], netns)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        result = Capture(netns, iface)
        try:
            started = proc.stderr.readline().decode()
            assert "listening on" in started, f"tcpdump did not start: {started!r}"
            yield result
            time.sleep(0.3)  # the last injected packets are still on their way
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                out, _ = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
        result.raw = out.decode("utf-8", "replace")
        result.packets = parse_tcpdump(result.raw)

    # -- the censor's files ------------------------------------------------------------------------------
    def stats(self, *, fresh: bool = True) -> dict[str, Any]:
        """``censor-stats.json``; with ``fresh``, one written after this call (the daemon rewrites it every
        second)."""
        since = time.time()
        deadline = time.monotonic() + 5
        while True:
            data, _ = self.state.read_stats()
            if data is not None and (not fresh or data.get("updated", 0) > since):
                return data
            assert time.monotonic() < deadline, "censor-stats.json was not rewritten within 5 s"
            time.sleep(0.1)

    def events(self) -> list[dict[str, Any]]:
        path = self.state.path("events.jsonl")
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def actions(self, rule: str | None = None) -> list[dict[str, Any]]:
        """The censor's ``chokepoint`` events (one per enforced verdict), of one rule if given."""
        return [
            e
            for e in self.events()
            if e["event_type"] == "chokepoint" and (rule is None or e["chokepoint"]["rule"] == rule)
        ]

    def wait_actions(self, rule: str, count: int = 1, timeout: float = 3.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.actions(rule)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return found


# ---------------------------------------------------------------------------------------------- lifecycle


def lab_processes() -> list[str]:
    """Command lines of running lab processes (services, control resolver, censor daemon) on this host."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode("utf-8", "replace") for a in argv if a]
        text = " ".join(args)
        # this lab's own: its state directory exactly (another lab's, /run/chokepoint-lab-NAME, starts the same)
        ours = any(a == "--state-dir" and b == str(st.STATE_DIR) for a, b in zip(args, args[1:]))
        if ours and any(
            m in text for m in ("chokepoint.lab.services", "chokepoint.backends.censord", "chokepoint.manager")
        ):
            found.append(f"{entry.name}: {text}")
    return found


def all_left_behind() -> dict[str, list[str]]:
    """Everything of a lab that ``lab down`` must remove (all lists empty when clean): our namespaces, their
    /etc/netns files, host veths, the state directory, and lab processes."""
    found = leftovers()
    found["processes"] = lab_processes()
    return found


@contextmanager
def session() -> Iterator[None]:
    """The lab session lock, from a clean slate (other suites' ``cpk-*`` namespaces are left alone)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with st.session_lock(timeout=600):
        deadline = time.monotonic() + 30  # a lab up by someone who does not take the session lock
        while any(ns in OURS for ns in topo.lab_namespaces()) and time.monotonic() < deadline:
            time.sleep(0.2)
        lab.down(keep=foreign())
        yield


@contextmanager
def running_lab(
    directory: Path,
    name: str,
    rules: str,
    personality: str = "",
    *,
    mode: str = "inline",
    seed: int | None = 1,
    locked: bool = False,
) -> Iterator[LabRun]:
    """``lab up`` with a profile written from ``rules``/``personality``; ``lab down`` afterwards whatever happens,
    then nothing of the lab may be left. ``locked``: the caller already holds :func:`session`."""
    profile = write_profile(directory, name, rules, personality)
    with session() if not locked else nullcontext():
        try:
            state = lab.up(str(profile), mode, seed=seed)
            yield LabRun(state, profile, mode)
        finally:
            report = lab.down(keep=foreign())
            assert not report.errors, report.errors
            left = all_left_behind()
            assert not any(left.values()), left


# ------------------------------------------------------------------------------- the inline and mirror labs

RESIDUAL_S = 2.5  # the shared ``residual`` rule's window
BLOCKPAGE_BODY = "blocked by the e2e censor"
RST_FILTER = "tcp[tcpflags] & tcp-rst != 0"

#: The rules the inline and the mirror profiles (``test_e2e_inline.py``, ``test_e2e_mirror.py``) both run: the same
#: rule, a mode-dependent symptom. By id; each a YAML flow mapping (one item of ``rules:``).
SHARED_RULES = {
    "reset-host": "{id: reset-host, action: reset, when: {http.host: {exact: blocked.test}}}",
    "reset-sni": "{id: reset-sni, action: reset, when: {tls.sni: {exact: blocked.test}}}",
    "forge": "{id: forge, action: dns-forge, params: {answers: [198.19.0.99]}, "
    "when: {dns.qname: {exact: forged.test}}}",
    "page": "{id: page, action: blockpage, when: {http.host: {exact: page.test}}}",
    "residual": "{id: residual, action: reset, params: {residual_s: 2.5, residual_scope: 3-tuple}, "
    "when: {http.host: {exact: residual.test}}}",
    "unreachable": "{id: unreachable, action: icmp-unreachable, "
    "when: {all: [{transport: tcp}, {server_ip: 198.19.0.13}]}}",
}


def rules_yaml(*items: str) -> str:
    """A profile's ``rules:`` body, in the given order: each item a :data:`SHARED_RULES` id or a rule of the test's
    own (a YAML flow mapping)."""
    return "\n".join(f"- {SHARED_RULES.get(item, item)}" for item in items)


def class_lab(profile_name: str, rules: str, personality: str, *, mode: str = "inline", seed: int):
    """A class-scoped fixture (named by the module attribute it is assigned to): :func:`running_lab` with this
    profile, up once for the class and down (then checked clean) after it."""

    @pytest.fixture(scope="class")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
        """The lab running the test module's profile, up once for the test class."""
        with running_lab(
            tmp_path_factory.mktemp(profile_name), profile_name, rules, personality, mode=mode, seed=seed
        ) as run:
            yield run

    return fixture


def origin(result: Curl) -> bool:
    """curl got the lab origin's page: exit 0, HTTP 200, the origin's marker in the body."""
    return result.code == CURL_OK and result.status == 200 and ORIGIN_MARKER in result.text


__all__ = [
    "BLOCKPAGE_BODY",
    "CA_FILE",
    "CLIENT_HELLO",
    "CLIENT_IP",
    "CONTROL_DNS",
    "CURL_CONNECT",
    "CURL_OK",
    "CURL_RECV",
    "CURL_TIMEOUT",
    "CURL_TLS_CONNECT",
    "Capture",
    "Curl",
    "DEFAULT_A",
    "LAB_DNS",
    "LabRun",
    "ORIGIN_MARKER",
    "RESIDUAL_S",
    "RST_FILTER",
    "SHARED_RULES",
    "Seen",
    "all_left_behind",
    "class_lab",
    "lab_processes",
    "missing_reason",
    "origin",
    "parse_tcpdump",
    "rules_yaml",
    "running_lab",
    "session",
    "write_profile",
]
