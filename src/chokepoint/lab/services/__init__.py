"""The lab services (docs/lab.md): what the censored client talks to.

In ``cpk-server`` (role ``server``): HTTP :80, HTTPS :443 and HTTP/3 (QUIC, UDP :443) for ANY hostname
with certificates issued on the fly by the lab CA, TCP+UDP echo :7 and :9000 on every server address,
and DNS (UDP+TCP :53) on 198.19.0.53 / 2001:db8:0:2::53 answering every name with 198.19.0.10 /
2001:db8:0:2::10. In ``cpk-control`` (role ``control``): the same DNS answers on 198.18.9.1, the
control resolver outside the censor's path, and the Web Connectivity test helper on 198.18.9.1:8080
(``chokepoint.lab.testhelper``). ``launch(state)`` starts them detached for ``lab up``;
``python -m chokepoint.lab.services`` runs one role in the foreground.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chokepoint.lab.state import LabState, ProcessInfo

#: Defaults of ``python -m chokepoint.lab.services`` (the default topology's addresses).
SERVER_WEB_ADDRESSES = (
    "198.19.0.2",
    *(f"198.19.0.{n}" for n in range(10, 40)),
    "2001:db8:0:2::2",
    *(f"2001:db8:0:2::{n}" for n in range(10, 40)),
)
SERVER_DNS_ADDRESSES = ("198.19.0.53", "2001:db8:0:2::53")
CONTROL_DNS_ADDRESSES = ("198.18.9.1",)
#: Process names in state.json.
SERVER_PROCESS = "services"
CONTROL_PROCESS = "control-resolver"
READY_TIMEOUT = 20.0


class ServicesLaunchError(RuntimeError):
    """A service process exited or did not become ready; the message carries its log's tail."""


def ready_file_path(state_dir: str | Path, role: str) -> Path:
    """Where a services process of ``role`` (or of another host's server role, by host name) reports its bound
    endpoints."""
    return Path(state_dir) / f"services-{role}.ready.json"


def process_name(host: str) -> str:
    """The state's name for the services process of ``host``: ``services`` (server), ``control-resolver``
    (control), ``services-HOST`` (e.g. the "vps" range's hosts)."""
    return {"server": SERVER_PROCESS, "control": CONTROL_PROCESS}.get(host, f"{SERVER_PROCESS}-{host}")


def service_argv(
    state: LabState,
    role: str,
    *,
    web: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    dns_map: str | Path | None = None,
    extra_args: Sequence[str] = (),
    ready: Path | None = None,
) -> list[str]:
    """The command line of one services process (``state.python_argv`` = the lab's own interpreter)."""
    args = [
        "--role",
        role,
        "--state-dir",
        str(state.state_dir),
        "--ready-file",
        str(ready or ready_file_path(state.state_dir, role)),
    ]
    if role == "server":
        args += ["--bind", ",".join(web)]
    args += ["--dns-bind", ",".join(dns)]
    if dns_map is not None:
        args += ["--dns-map", str(dns_map)]
    args += list(extra_args)
    return state.python_argv("chokepoint.lab.services", *args)


def lab_addresses(state: LabState) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """``{host: (web addresses, dns addresses)}`` from the lab's topology: every server address serves
    the web and echo services except the DNS addresses, which serve DNS; every control address serves DNS; the
    hosts of the "vps" range (lab/ranges.py) serve the web and echo services too (not HTTP/3: see ``launch``),
    so a block of the range can be told from a server that is not there."""
    from chokepoint.lab import ranges
    from chokepoint.lab.topology import DNS_V4, DNS_V6

    dns_ips = {str(DNS_V4), str(DNS_V6)}
    out: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    server = state.topology.host("server")
    ips = [str(addr.ip) for addr in server.addresses()]
    out["server"] = (tuple(ip for ip in ips if ip not in dns_ips), tuple(ip for ip in ips if ip in dns_ips))
    if "control" in state.topology.host_names():  # not on its link to the server (the test helper's path)
        control = state.topology.host("control")
        out["control"] = ((), tuple(str(a.ip) for i in control.interfaces if i.name != "cs0" for a in i.addresses))
    for spans in ranges.SERVER_RANGES.values():
        if spans.host != "server" and spans.host in state.topology.host_names():
            out[spans.host] = (tuple(str(a) for a in spans.addresses()), ())
    return out


def launch(
    state: LabState,
    *,
    dns_map: str | Path | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = READY_TIMEOUT,
) -> list[ProcessInfo]:
    """Start the server services in ``cpk-server`` and the control resolver in ``cpk-control``
    (detached, via ``state.start``), and wait until each has bound all its sockets. ``dns_map`` is
    given to both (same answers); ``extra_args`` are appended to both command lines (e.g. ports).

    Raises ``ServicesLaunchError`` (with the log's tail) when one exits or is not ready in ``timeout``
    seconds; the caller (``lab up``) rolls the lab back. The caller saves ``state``."""
    started = []
    for host, (web, dns) in lab_addresses(state).items():
        role = "control" if host == "control" else "server"
        ready = ready_file_path(state.state_dir, role if host in ("server", "control") else host)
        ready.unlink(missing_ok=True)
        # The vps host's UDP 443 belongs to its transport servers (wireguard-go binds it on every address): its
        # range hosts serve HTTP, HTTPS and echo, not HTTP/3.
        extra = [*extra_args, "--no-http3"] if host not in ("server", "control") else list(extra_args)
        argv = service_argv(state, role, web=web, dns=dns, dns_map=dns_map, extra_args=extra, ready=ready)
        info = state.start(process_name(host), host, argv)
        started.append((info, ready))
    from chokepoint.lab import testhelper

    if _has_test_helper_address(state):  # the test helper, beside the control resolver it asks
        ready = ready_file_path(state.state_dir, testhelper.PROCESS_NAME)
        ready.unlink(missing_ok=True)
        argv = state.python_argv(
            "chokepoint.lab.testhelper", "--ready-file", str(ready), "--cafile", str(Path(state.state_dir) / "ca.pem")
        )
        started.append((state.start(testhelper.PROCESS_NAME, "control", argv), ready))
    for info, ready in started:
        wait_ready(info, ready, timeout)
    return [info for info, _ in started]


def _has_test_helper_address(state: LabState) -> bool:
    """Whether the topology's control host holds the test helper's address (the lab's, not a test's)."""
    from chokepoint.lab import testhelper

    if "control" not in state.topology.host_names():
        return False
    return any(str(a.ip) == testhelper.LAB_ADDRESS for a in state.topology.host("control").addresses())


def wait_ready(info: ProcessInfo, ready: Path, timeout: float) -> dict:
    """The ready file's content once it appears; ``ServicesLaunchError`` if the process dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            try:
                data = json.loads(ready.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict) and data.get("pid") == info.pid:
                return data
        if not info.alive():
            raise ServicesLaunchError(
                f"{info.name} exited in {info.netns} before it was ready; its log ({info.log}):\n{info.log_tail()}"
            )
        time.sleep(0.05)
    raise ServicesLaunchError(
        f"{info.name} in {info.netns} was not ready after {timeout:g} s; its log ({info.log}):\n{info.log_tail()}"
    )
