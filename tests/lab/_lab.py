"""Shared helpers for the lab tests that build real namespaces (root only).

``lab_guard`` serialises lab test sessions (``state.session_lock``), starts from a clean slate and calls
``lab down`` in a ``finally`` - also when the test fails. Other tools' ``cpk-*`` namespaces (e.g. another
suite's throwaway ``cpk-t-*``) are never touched: ``down`` gets them as ``keep``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from chokepoint import lab
from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

CLI = [sys.executable, "-m", "chokepoint.cli"]
#: Namespaces the lab tests create (the default lab, the extra host of the test topology, a stray one).
OURS = (
    frozenset(topo.default_topology().namespaces())
    | {f"{PREFIX}extra", f"{PREFIX}zzstray"}
    # the nodes a fleet adds (lab/fleet.py: client<i>, censor<i>)
    | {f"{PREFIX}{host}{i}" for i in range(2, 17) for host in ("client", "censor")}
    # the routers of --hops-client/--hops-server (lab/geometry.py: near<j>, far<j>)
    | {f"{PREFIX}{host}{j}" for j in range(1, 17) for host in ("near", "far")}
)


@functools.cache
def root_reason() -> str | None:
    """Why the namespace tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"{PREFIX}zzcheck-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


def tools_reason(tools: Sequence[str], who: str) -> str | None:
    """Why ``who`` (e.g. "the end-to-end tests") cannot run here: no root/namespaces, or a missing tool."""
    reason = root_reason()
    if reason:
        return reason
    for tool in tools:
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed ({who} run it in the lab namespaces)"
    return None


@dataclass(frozen=True, slots=True)
class CurlResult:
    """One curl run in the lab: exit code, body, stderr, ``-w %{json}``'s metrics (empty when curl printed
    none) and the response head when it was asked for (``-D``)."""

    code: int
    body: bytes
    stderr: str
    info: dict[str, Any]
    head: str = ""

    @property
    def status(self) -> int:
        return int(self.info.get("http_code") or self.info.get("response_code") or 0)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __str__(self) -> str:  # shown by assertion messages
        return (
            f"curl exit {self.code}, HTTP {self.status}, stderr {self.stderr.strip()[:300]!r}, body {self.body[:200]!r}"
        )


def run_curl(run: Any, url: str, *opts: str, timeout: float = 3.0, body: bool = True, head: bool = False) -> CurlResult:
    """curl through ``run(argv, timeout=...)`` (a lab runner: the client namespace, its CA bundle); ``-w
    %{json}`` gives the metrics; ``head``: ``-D`` to stderr keeps the response head apart."""
    argv = ["curl", "-sS", "-m", f"{timeout:g}", *(["-D", "/dev/stderr"] if head else []), *opts, "-w", "\n%{json}"]
    if not body:
        argv += ["-o", "/dev/null"]
    proc = run([*argv, url], timeout=timeout + 10)
    data, _, tail = proc.stdout.rpartition(b"\n")
    try:
        info = json.loads(tail)
    except ValueError:
        data, info = proc.stdout, {}
    err = proc.stderr.decode("utf-8", "replace")
    response_head = ""
    if head and err.startswith("HTTP/"):
        response_head, _, err = err.partition("\r\n\r\n")
    return CurlResult(proc.returncode, data, err, info, response_head)


def foreign() -> list[str]:
    """``cpk-*`` namespaces that are not ours (another suite's): never removed by these tests."""
    return [ns for ns in topo.lab_namespaces() if ns not in OURS]


def leftovers() -> dict[str, list[str]]:
    """Everything of ours that ``lab down`` must have removed; all lists empty when clean."""
    etc = sorted(p.name for p in topo.ETC_NETNS.glob(f"{PREFIX}*")) if topo.ETC_NETNS.is_dir() else []
    host_veths = [
        link["ifname"]
        for link in system.ip_json(["link", "show", "type", "veth"])
        if str(link.get("ifalias", "")).startswith(topo.LINK_ALIAS)
    ]
    return {
        "namespaces": [ns for ns in topo.lab_namespaces() if ns in OURS],
        "etc_netns": [name for name in etc if name in OURS],
        "host_veths": host_veths,
        "state_dir": [str(st.STATE_DIR)] if st.STATE_DIR.exists() else [],
    }


def clean() -> bool:
    return not any(leftovers().values())


def down_keeping_foreign() -> topo.Teardown:
    return lab.down(keep=foreign())


@pytest.fixture
def lab_guard() -> Iterator[None]:
    reason = root_reason()
    if reason:
        pytest.skip(reason)
    require_ping()
    with st.session_lock(timeout=600):
        deadline = time.monotonic() + 30  # a lab up by someone who does not take the session lock
        while any(ns in OURS for ns in topo.lab_namespaces()) and time.monotonic() < deadline:
            time.sleep(0.2)
        down_keeping_foreign()
        try:
            yield
        finally:
            report = down_keeping_foreign()
            assert not report.errors, report.errors


def run_cli(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def ping(netns: str, address: str, *, count: int = 1) -> tuple[bool, list[int]]:
    """Real ping (iputils) inside ``netns``: (all answered, TTLs of the replies)."""
    proc = system.run(
        ["ping", "-n", "-c", str(count), "-i", "0.05", "-W", "1", address], netns=netns, check=False, timeout=10
    )
    ttls = [int(m) for m in re.findall(rb"ttl=(\d+)", proc.stdout)]
    return proc.returncode == 0 and len(ttls) == count, ttls


def forwarded(netns: str) -> tuple[int, int]:
    """(IPv4 ForwDatagrams, IPv6 Ip6OutForwDatagrams) of ``netns``: packets the kernel routed through it."""
    snmp = system.run(["cat", "/proc/net/snmp"], netns=netns).stdout.decode().splitlines()
    names, values = [line.split() for line in snmp if line.startswith("Ip:")][:2]
    v4 = int(values[names.index("ForwDatagrams")])
    snmp6 = system.run(["cat", "/proc/net/snmp6"], netns=netns).stdout.decode().split()
    v6 = int(snmp6[snmp6.index("Ip6OutForwDatagrams") + 1])
    return v4, v6


def reap(pid: int) -> None:
    """Kill a process this test spawned and collect it (subprocess may have collected it already)."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def require_ping() -> None:
    if shutil.which("ping") is None:
        pytest.skip("`ping` is not installed (Debian package iputils-ping)")
