"""``analyze --ray``: a real Ray head on loopback (started here, always stopped), against local runs on the real
captures of ../shared/data/ndpi (spread by file) and on one generated capture split by flow hash; ``--ray`` without
an address: a Ray started by the run itself and shut down after it."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from chokepoint.backends.offline import CaptureResult, analyze
from chokepoint.backends.raycluster import LOCAL, ProfileSpec, analyze_on_ray, local_cpus, plan
from chokepoint.packet.samples import write_mixed_capture
from chokepoint.policy import load_profile
from tests._corpus import NDPI_PCAPS, capture_paths, not_found

RAY = Path(sys.executable).with_name("ray")


def test_a_corpus_is_spread_by_file_and_a_single_capture_split_by_flow_hash():
    assert plan(["a", "b", "c"], 2) == [("a", 0, 1), ("b", 0, 1), ("c", 0, 1)]
    assert plan(["a"], 4) == [("a", 0, 4), ("a", 1, 4), ("a", 2, 4), ("a", 3, 4)]
    assert plan(["a", "b"], 8, shards=2) == [("a", 0, 2), ("a", 1, 2), ("b", 0, 2), ("b", 1, 2)]


def test_profile_files_are_given_to_workers_by_absolute_path():
    assert ProfileSpec.of("gfw", None, {}, None) == ProfileSpec("gfw")
    spec = ProfileSpec.of(None, "rules.yaml", {"r.p": "1"}, "2024-01-01")
    assert spec == ProfileSpec(os.path.abspath("rules.yaml"), True, (("r.p", "1"),), "2024-01-01")
    assert ProfileSpec.of("my/profile.yaml", None, {}, None).name == os.path.abspath("my/profile.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_of(temp_dir: str) -> list[int]:
    """The processes of the Ray started with ``--temp-dir=temp_dir``: those whose command line names it (GCS,
    raylet, monitors) and all their descendants (agents and workers rename themselves ``ray::...``)."""
    parents: dict[int, int] = {}
    roots = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if temp_dir.encode() in cmdline and int(entry.name) != os.getpid():
            roots.add(int(entry.name))
    found, grew = set(roots), True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


def _stop_own_cluster(temp_dir: str) -> None:
    """Stop only the Ray this module started (``ray stop`` would stop every Ray of the machine, other
    users' too): SIGTERM its processes by pid, SIGKILL what is left after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = _processes_of(temp_dir)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while pids and _processes_of(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_head():
    """A local Ray head with two CPUs on 127.0.0.1, its own port and temporary directory; stopped (only it)
    whatever happens."""
    if not RAY.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("ray is not installed (make setup installs the scale extra)")
        pytest.skip("ray is not installed (make setup installs the scale extra)")
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="cpk-ray-", dir="/tmp")  # short: Ray's socket paths live below it
    args = [str(RAY), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
    args += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}"]
    # Token authentication with a token of its own, for the head and the drivers of these tests (in-process and
    # the command lines they start): nothing depends on, or is written to, ~/.ray/auth_token.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        try:
            subprocess.run(args, check=True, capture_output=True, timeout=120)
            yield f"127.0.0.1:{port}"
        finally:
            _stop_own_cluster(temp_dir)


def same(local: list[CaptureResult], remote: list[CaptureResult]) -> None:
    assert [r.path for r in local] == [r.path for r in remote]
    for a, b in zip(local, remote):
        assert sorted(a.lines()) == sorted(b.lines()), a.path
        assert (a.frames, a.packets, a.truncated, a.error) == (b.frames, b.packets, b.truncated, b.error)
        assert +a.skipped == +b.skipped and +a.engine == +b.engine, a.path


def test_ndpi_corpus_on_ray_equals_the_local_run(ray_head):
    paths = [str(p) for p in capture_paths()]
    if not paths:
        if os.environ.get("CI") == "true":
            pytest.fail(not_found(NDPI_PCAPS))
        pytest.skip(not_found(NDPI_PCAPS))
    local = analyze(paths, load_profile("gfw"))
    same(local, analyze_on_ray(paths, ProfileSpec("gfw"), ray_head))


def test_one_capture_split_by_flow_hash_equals_the_local_run(ray_head, tmp_path):
    write_mixed_capture(tmp_path / "mixed.pcap", 300, seed=3)
    path = str(tmp_path / "mixed.pcap")
    local = analyze([path], load_profile("iran"))
    remote = analyze_on_ray([path], ProfileSpec("iran"), ray_head)
    same(local, remote)
    assert len(remote[0].eve) == len(local[0].eve) > 100


def test_the_command_line_gives_the_local_lines(ray_head, tmp_path):
    write_mixed_capture(tmp_path / "mixed.pcap", 60, seed=1)
    paths = ["mixed.pcap", *(str(p) for p in capture_paths()[:3])]  # relative to the command's directory
    cli = [sys.executable, "-m", "chokepoint.cli", "analyze", *paths, "-p", "gfw", "-f", "eve"]
    local = subprocess.run(cli, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    remote = subprocess.run(
        [*cli, "--ray", ray_head, "-w", "2"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert remote.returncode == local.returncode == 0, remote.stderr
    assert sorted(local.stdout.splitlines()) == sorted(remote.stdout.splitlines())


def test_ray_without_an_address_means_a_local_ray(monkeypatch, tmp_path):
    """``--ray`` alone (last, or before another option) asks for a local Ray; ``--ray ADDRESS`` for that cluster."""
    from typer.testing import CliRunner

    from chokepoint.cli import analyze as analyze_cli
    from chokepoint.cli import app

    write_mixed_capture(tmp_path / "m.pcap", 5, seed=1)
    asked: list[str] = []

    def fake(paths, spec, address, workers):
        asked.append(address)
        return analyze(paths, load_profile("demo"))

    monkeypatch.setattr(analyze_cli, "_on_ray", fake)
    capture = str(tmp_path / "m.pcap")
    for argv, address in (
        ([capture, "--ray"], LOCAL),
        ([capture, "--ray", "-f", "eve"], LOCAL),
        ([capture, "--ray", "local"], LOCAL),
        (["--ray", capture, "-f", "eve"], LOCAL),  # a capture, not an address (no port)
        ([capture, "--ray", "10.0.0.1:6379", "-f", "eve"], "10.0.0.1:6379"),
        ([capture, "--ray=auto"], "auto"),
    ):
        result = CliRunner().invoke(app, ["analyze", *argv])
        assert result.exit_code == 0, (argv, result.output)
        assert asked.pop() == address, argv
    assert local_cpus() >= 1


def _ray_missing() -> None:
    if not RAY.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("ray is not installed (make setup installs the scale extra)")
        pytest.skip("ray is not installed (make setup installs the scale extra)")


def test_a_local_ray_is_started_for_the_run_and_shut_down(tmp_path):
    """No address: the run starts its own Ray (this machine's CPUs), gives a local run's lines, and stops it."""
    _ray_missing()
    import ray

    write_mixed_capture(tmp_path / "mixed.pcap", 120, seed=4)
    path = str(tmp_path / "mixed.pcap")
    local = analyze([path], load_profile("gfw"))
    remote = analyze_on_ray([path], ProfileSpec("gfw"), None)
    same(local, remote)
    assert not ray.is_initialized()


def test_the_command_line_starts_a_local_ray_without_an_address(tmp_path):
    _ray_missing()
    write_mixed_capture(tmp_path / "mixed.pcap", 60, seed=2)
    cli = [sys.executable, "-m", "chokepoint.cli", "analyze", "mixed.pcap", "-p", "gfw", "-f", "eve"]
    local = subprocess.run(cli, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    remote = subprocess.run([*cli, "--ray"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert remote.returncode == local.returncode == 0, remote.stderr
    assert sorted(local.stdout.splitlines()) == sorted(remote.stdout.splitlines())
