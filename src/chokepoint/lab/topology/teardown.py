"""``destroy()``: remove the lab, whatever state it is in (processes, ``cpk-*`` namespaces, stray host veths,
``/etc/netns`` files), and report what went and what stayed; ``lab_namespaces()`` lists what is there."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from chokepoint.lab import system
from chokepoint.lab.topology.model import ETC_NETNS, LINK_ALIAS, PREFIX

#: Seconds ``destroy()`` waits after SIGTERM before SIGKILL, and after SIGKILL.
TERM_GRACE = 1.0
KILL_GRACE = 2.0


@dataclass(slots=True)
class Teardown:
    """What ``destroy()`` removed, and what it could not remove (``errors``; empty means all gone)."""

    killed: list[int] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return not (self.killed or self.namespaces or self.links or self.files or self.errors)


def lab_namespaces() -> list[str]:
    """Every existing namespace whose name starts with ``cpk-``."""
    try:
        names = system.netns_list()
    except system.CommandError:
        names = []
    dangling = [p.name for p in Path("/run/netns").glob(PREFIX + "*")] if Path("/run/netns").is_dir() else []
    return sorted({n for n in [*names, *dangling] if n.startswith(PREFIX)})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while pids and time.monotonic() < deadline:
        time.sleep(0.02)
        pids = [pid for pid in pids if _alive(pid)]
    return pids


def destroy(
    namespaces: Iterable[str] | None = None, *, extra_pids: Iterable[int] = (), keep: Iterable[str] = ()
) -> Teardown:
    """Remove the lab, whatever is left of it; never raises for parts already gone.

    ``namespaces``: the ones to remove (default: every ``cpk-*``). Processes inside them (``ip netns pids``)
    and ``extra_pids`` get SIGTERM, then SIGKILL after ``TERM_GRACE`` s; then the namespaces are deleted
    (with them their veths, addresses, routes, nftables/iptables rulesets, tc qdiscs and conntrack
    entries, which live inside the namespace), then host-namespace veths carrying the lab's ifalias and
    ``/etc/netns/<namespace>`` directories. Namespaces in ``keep`` (another tool's ``cpk-*``) are left alone."""
    report = Teardown()
    spared = set(keep)
    selected = sorted(set(namespaces) if namespaces is not None else set(lab_namespaces()) - spared)
    present = set(lab_namespaces())
    targets = [name for name in selected if name in present]
    pids = sorted({pid for name in targets for pid in system.netns_pids(name)} | set(extra_pids))
    pids = [pid for pid in pids if pid != os.getpid() and _alive(pid)]
    if pids:
        _signal_all(pids, signal.SIGTERM)
        left = _wait_gone(pids, TERM_GRACE)
        _signal_all(left, signal.SIGKILL)
        left = _wait_gone(left, KILL_GRACE)
        report.killed = pids
        report.errors += [f"process {pid} survived SIGKILL" for pid in left]
    for name in targets:
        proc = system.run(["ip", "netns", "delete", name], check=False)
        if proc.returncode == 0:
            report.namespaces.append(name)
            continue
        stale = Path("/run/netns") / name
        try:
            stale.unlink()
            report.namespaces.append(name)
        except FileNotFoundError:
            report.namespaces.append(name)
        except OSError as exc:
            report.errors.append(f"namespace {name}: {proc.stderr.decode(errors='replace').strip() or exc}")
    try:
        for link in system.ip_json(["link", "show", "type", "veth"]):
            if str(link.get("ifalias", "")).startswith(LINK_ALIAS):
                gone = system.ip(["link", "delete", link["ifname"]], check=False)
                if gone.returncode == 0:
                    report.links.append(link["ifname"])
                else:
                    report.errors.append(f"veth {link['ifname']}: {gone.stderr.decode(errors='replace').strip()}")
    except system.CommandError as exc:
        report.errors.append(f"cannot list host veths: {exc}")
    etc_dirs = (
        [ETC_NETNS / name for name in selected]
        if namespaces is not None
        else sorted(p for p in ETC_NETNS.glob(PREFIX + "*") if p.name not in spared)
        if ETC_NETNS.is_dir()
        else []
    )
    for path in etc_dirs:
        if path.exists() or path.is_symlink():
            try:
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                report.files.append(str(path))
            except OSError as exc:
                report.errors.append(f"{path}: {exc.strerror or exc}")
    try:
        ETC_NETNS.rmdir()  # only if empty (nothing but the lab uses it here)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            report.errors.append(f"{ETC_NETNS}: {exc.strerror}")
    return report
