"""Fixtures for the manager's tests: an app on SQLite or on a real PostgreSQL server, tokens, a real manager
process, and small policies.

``postgres_url``: a PostgreSQL cluster of its own (Debian's ``postgresql`` package: ``initdb``/``pg_ctl`` run as
the ``postgres`` user in a temporary directory, listening on a unix socket there and a free loopback port),
stopped and removed after the session whatever happens. Skipped with the reason when PostgreSQL is not
installed or we are not root (it must switch to ``postgres``), failed instead under CI=true.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POLICY = """\
profile:
  name: test-fleet
  title: a small policy for the manager's tests
  country: XX
  observed: "2026-12"
  description: blocks names in a list the manager feeds
  cite: [test]
lists:
  blocked:
    kind: domain
    items: [blocked.test]
    cite: test
rules:
  - id: block-sni
    action: reset
    cite: test
    when:
      tls.sni: {in_list: blocked}
  - id: block-host
    action: drop
    cite: test
    when:
      http.host: {in_list: blocked}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(reason)


REAPER = """
import os, shutil, subprocess, sys, time
pid, pg_ctl, data, base = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
while True:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.5)
if os.path.isdir(data):
    subprocess.run(["runuser", "-u", "postgres", "--", pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"],
                   capture_output=True, timeout=60, cwd="/")
shutil.rmtree(base, ignore_errors=True)
"""


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        _skip_or_fail("PostgreSQL is not installed (Debian package postgresql: scripts/install-system-deps.sh)")
    if os.geteuid() != 0:
        _skip_or_fail("starting a PostgreSQL cluster for the tests needs root (to run it as the postgres user)")
    try:
        pg = pwd.getpwnam("postgres")
    except KeyError:
        _skip_or_fail("no postgres user (the postgresql package creates it)")
    base = Path(tempfile.mkdtemp(prefix="cpm-pg-"))
    os.chown(base, pg.pw_uid, pg.pw_gid)
    data = base / "data"
    port = free_port()

    def as_postgres(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=60, cwd=base
        )

    started = False
    # a reaper outlives this process: if it dies without its finally (a killed xdist worker), the cluster still
    # goes away
    subprocess.Popen(
        [sys.executable, "-c", REAPER, str(os.getpid()), str(bindir / "pg_ctl"), str(data), str(base)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        made = as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        if made.returncode != 0:
            pytest.fail(f"initdb failed: {made.stderr}")
        options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} -c fsync=off"
        run = as_postgres(
            str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-o", options, "-w", "start"
        )
        if run.returncode != 0:
            pytest.fail(f"pg_ctl start failed: {run.stderr}\n{(base / 'log').read_text(errors='replace')}")
        started = True
        create = as_postgres(str(bindir / "createdb"), "-h", str(base), "-p", str(port), "-U", "postgres", "chokepoint")
        if create.returncode != 0 and shutil.which("createdb"):
            create = as_postgres("createdb", "-h", str(base), "-p", str(port), "-U", "postgres", "chokepoint")
        if create.returncode != 0:
            pytest.fail(f"createdb failed: {create.stderr}")
        yield f"postgresql://postgres@127.0.0.1:{port}/chokepoint"
    finally:
        if started:
            as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'manager.db'}"


@dataclass
class Api:
    """A manager app in-process (FastAPI's TestClient) with an admin token."""

    client: object
    app: object
    admin: str

    @property
    def store(self):
        return self.app.state.ctx.store

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}

    def token(self, role: str, deployment: str | None = None) -> str:
        return self.store.create_token(f"{role}-{deployment}", role, deployment)[0]

    def call(self, method: str, path: str, token: str | None = None, **kw):
        return self.client.request(method, "/api/v1" + path, headers=self.headers(token), **kw)

    def deployment(self, name: str, policy: str | None = POLICY):
        assert self.call("POST", "/deployments", json={"name": name}).status_code == 201
        if policy is not None:
            answer = self.call(
                "POST", f"/deployments/{name}/policy", json={"files": {"policy.yaml": policy}, "expected_version": 0}
            )
            assert answer.status_code == 201, answer.text


def make_api(db_url: str, **settings) -> Iterator[Api]:
    from fastapi.testclient import TestClient

    from chokepoint.manager.app import Settings, create_app

    app = create_app(Settings(db_url=db_url, **settings))
    admin, _ = app.state.ctx.store.create_token("root", "admin")
    with TestClient(app) as client:
        yield Api(client, app, admin)


@pytest.fixture
def api(sqlite_url: str) -> Iterator[Api]:
    yield from make_api(sqlite_url)


@dataclass
class RunningManager:
    url: str
    admin: str
    db_url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_manager(db_url: str, log: Path, *extra: str, port: int | None = None) -> RunningManager:
    """``chokepoint manager serve`` as a real process (its first admin token made by the real CLI too)."""
    import httpx

    env = {**os.environ, "CHOKEPOINT_MANAGER_DB": db_url}
    made = subprocess.run(
        [sys.executable, "-m", "chokepoint.cli", "manager", "token", "create", "--role", "admin", "--name", "root"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip()
    port = port or free_port()
    handle = open(log, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chokepoint.cli", "manager", "serve", "--port", str(port), *extra],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # a loaded 2-core machine can take long to import and migrate
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the manager exited: {log.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return RunningManager(url, admin, db_url, proc, log)
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the manager did not come up: {log.read_text()}")


@pytest.fixture
def manager_process(tmp_path: Path) -> Iterator[RunningManager]:
    running = start_manager(f"sqlite:///{tmp_path / 'manager.db'}", tmp_path / "manager.log")
    try:
        yield running
    finally:
        running.stop()
