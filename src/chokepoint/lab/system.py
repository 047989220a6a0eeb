"""The one module of the lab that runs system commands (``ip``, ``nft``, ``iptables``, ``tc``, ``sysctl``).

Everything that touches the host goes through here, always as an argument list (never a shell string), so
every command the lab runs can be found, logged and tested in one place. A command inside a network
namespace is run as ``ip netns exec NS argv...`` (which also bind-mounts ``/etc/netns/NS/*`` over ``/etc``,
see ip-netns(8)); ``ip`` itself takes ``-n NS`` instead, which saves one exec.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Debian package that provides each tool the lab needs (for "missing tool" messages).
TOOL_PACKAGES = {
    "ip": "iproute2",
    "tc": "iproute2",
    "nft": "nftables",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "sysctl": "procps",
    "ethtool": "ethtool",
}
#: Seconds a system command may take before it is killed (none of ours should take more than a fraction).
DEFAULT_TIMEOUT = 30.0


class CommandError(Exception):
    """A system command failed (non-zero exit, not found, or timed out); ``str()`` says which and why."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        super().__init__(argv, returncode, stderr)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr

    def __str__(self) -> str:
        how = "timed out" if self.returncode is None else f"exit {self.returncode}"
        detail = [line.strip() for line in self.stderr.strip().splitlines() if line.strip()]
        tail = f": {'; '.join(detail[-3:])}" if detail else ""
        return f"`{' '.join(self.argv)}` failed ({how}){tail}"


class MissingTool(CommandError):
    """The program itself is not installed."""

    def __str__(self) -> str:
        tool = Path(self.argv[0]).name
        package = TOOL_PACKAGES.get(tool)
        hint = f" (Debian package {package})" if package else ""
        return f"`{tool}` not found{hint}; the lab needs it"


def _checked_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, (str, bytes)) or not all(isinstance(a, str) for a in argv):
        raise TypeError("argv must be a list of str (never a shell string)")
    if not argv:
        raise ValueError("empty argv")
    return list(argv)


def in_netns(argv: Sequence[str], netns: str | None) -> list[str]:
    """``argv`` as run inside ``netns`` (``ip netns exec NS ...``), or unchanged for the host."""
    argv = _checked_argv(argv)
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    input: bytes | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (in ``netns`` if given) to completion with output captured.

    Raises ``CommandError`` on a non-zero exit when ``check`` (always on timeout), ``MissingTool`` when the
    program is not installed.
    """
    full = in_netns(argv, netns)
    try:
        proc = subprocess.run(
            full,
            input=input,
            capture_output=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise MissingTool(full, 127, "") from None
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if exc.stderr else ""
        raise CommandError(full, None, stderr) from None
    if check and proc.returncode != 0:
        if proc.returncode == 255 and netns and b"exec of" in proc.stderr and b"failed" in proc.stderr:
            raise MissingTool([argv[0]], 127, proc.stderr.decode("utf-8", "replace"))
        raise CommandError(full, proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc


def run_foreground(argv: Sequence[str], *, netns: str | None = None) -> int:
    """Run ``argv`` with the caller's stdin/stdout/stderr and return its exit status (128+N if killed by
    signal N, as a shell reports it). Used by ``lab exec``."""
    full = in_netns(argv, netns)
    try:
        code = subprocess.run(full).returncode
    except FileNotFoundError:
        raise MissingTool(full, 127, "") from None
    return 128 - code if code < 0 else code


def spawn(argv: Sequence[str], *, netns: str | None, log_path: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` detached (own session, stdin from /dev/null, stdout+stderr appended to ``log_path``)
    inside ``netns``; return its pid. ``ip netns exec`` execs the command, so the pid is the command's own."""
    full = in_netns(argv, netns)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                cwd="/",
                env=None if env is None else {**os.environ, **env},
            )
        except FileNotFoundError:
            raise MissingTool(full, 127, "") from None
    return proc.pid


def ip(args: Sequence[str], netns: str | None = None, *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``ip [-n NS] args...``."""
    return run(["ip", *(["-n", netns] if netns else []), *_checked_argv(args)], check=check)


def ip_json(args: Sequence[str], netns: str | None = None) -> list[dict[str, Any]]:
    """``ip -json [-n NS] args...``, decoded (an empty list when ``ip`` prints nothing)."""
    out = run(["ip", "-json", *(["-n", netns] if netns else []), *_checked_argv(args)]).stdout
    return json.loads(out) if out.strip() else []


def ip_batch(commands: Sequence[Sequence[str]], netns: str | None = None) -> None:
    """Run several ``ip`` commands in one process (``ip [-n NS] -batch -``); stops at the first failure,
    which is raised as ``CommandError``. Tokens must not contain whitespace or quotes."""
    lines = []
    for command in commands:
        tokens = _checked_argv(command)
        for token in tokens:
            if not token or any(c.isspace() or c in "\"'\\#" for c in token):
                raise ValueError(f"ip batch token {token!r} would need quoting")
        lines.append(" ".join(tokens))
    if not lines:
        return
    prefix = ["ip", *(["-n", netns] if netns else [])]
    try:
        run([*prefix, "-batch", "-"], input=("\n".join(lines) + "\n").encode())
    except MissingTool:
        raise
    except CommandError as exc:  # "Command failed -:N": report line N as the command that failed
        failed = re.search(r"Command failed -:(\d+)", exc.stderr)
        if failed is None or not 1 <= int(failed.group(1)) <= len(lines):
            raise
        reason = "\n".join(line for line in exc.stderr.splitlines() if not line.startswith("Command failed"))
        raise CommandError([*prefix, *lines[int(failed.group(1)) - 1].split()], exc.returncode, reason) from None


def netns_list() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    return [entry["name"] for entry in ip_json(["netns", "list"])]


def netns_pids(netns: str) -> list[int]:
    """Pids of the processes inside ``netns`` (``ip netns pids``); empty if the namespace is gone."""
    proc = run(["ip", "netns", "pids", netns], check=False)
    return [int(word) for word in proc.stdout.split() if word.isdigit()]


def sysctl(settings: Mapping[str, str | int], netns: str | None = None) -> None:
    """``sysctl -q -w key=value ...`` (inside ``netns``: sysctls under net.* are per namespace)."""
    if settings:
        run(["sysctl", "-q", "-w", *(f"{key}={value}" for key, value in settings.items())], netns=netns)


def nft(
    json_obj: Mapping[str, Any], netns: str | None = None, *, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Apply a libnftables JSON document (``{"nftables": [...]}``) atomically: ``nft -j -f -``."""
    return run(["nft", "-j", "-f", "-"], netns=netns, input=json.dumps(json_obj).encode(), check=check)


def iptables(
    args: Sequence[str], netns: str | None = None, v6: bool = False, *, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """``iptables -w args...`` (``ip6tables`` when ``v6``), waiting for the xtables lock."""
    return run(["ip6tables" if v6 else "iptables", "-w", *_checked_argv(args)], netns=netns, check=check)


def tc(args: Sequence[str], netns: str | None = None, *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``tc args...``."""
    return run(["tc", *_checked_argv(args)], netns=netns, check=check)


def which(tool: str) -> str | None:
    """Full path of ``tool`` on PATH, or None."""
    return shutil.which(tool)


__all__ = [
    "CommandError",
    "MissingTool",
    "TOOL_PACKAGES",
    "in_netns",
    "ip",
    "ip_batch",
    "ip_json",
    "iptables",
    "netns_list",
    "netns_pids",
    "nft",
    "run",
    "run_foreground",
    "spawn",
    "sysctl",
    "tc",
    "which",
]
