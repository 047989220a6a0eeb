"""``chokepoint trace``: refuses without raw-socket rights in one line; ``trace analyze`` prints the table or JSON
for two captures; bad usage and bad files are exit 2 with a clear line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.trace._paths import ROUTERS, packets, path, write

CLI = [sys.executable, "-m", "chokepoint.cli", "trace"]


def run(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_refuses_without_raw_socket_rights_in_one_line() -> None:
    proc = run("127.0.0.1", "--domain", "blocked.example", prefix=("setpriv", "--bounding-set=-net_raw"))
    assert proc.returncode == 3, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "raw-socket rights" in lines[0]


def test_analyze_prints_json_and_a_table(tmp_path) -> None:
    test = write(tmp_path / "t.pcap", packets(path(8, censor_hop=3), range(1, 10)))
    control = write(tmp_path / "c.pcap", packets(path(8), range(1, 10), first_port=50000))
    proc = run("analyze", str(test), str(control), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["outcome"], data["censor"], data["path"]) == (
        "censor-identified",
        {"ttl": 3, "ip": ROUTERS[2]},
        "on-path",
    )
    table = run("analyze", str(test), str(control))
    assert table.returncode == 0 and "censor-identified" in table.stdout and ROUTERS[2] in table.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("analyze",), "usage: chokepoint trace analyze"),
        (("analyze", "/nonexistent/a.pcap", "/nonexistent/b.pcap"), "no such file"),
        (("127.0.0.1",), "--domain is required"),
        (("127.0.0.1", "--domain", "x.example", "--max-ttl", "99"), "--max-ttl 99"),
    ],
)
def test_bad_usage_is_exit_2_with_a_reason(args, message) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc
