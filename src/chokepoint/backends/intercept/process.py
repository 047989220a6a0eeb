"""Running the proxy: its event log, a thread for tests, the process the censor daemon starts
(``python -m chokepoint.backends.intercept``) and the daemon's handle on it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chokepoint.backends.intercept.ca import CensorCA
from chokepoint.backends.intercept.common import (
    DEFAULT_PORT,
    EVENTS_FILE,
    STATS_FILE,
    STATS_INTERVAL,
    Address,
    InterceptError,
)
from chokepoint.backends.intercept.proxy import InterceptProxy


class EventLog:
    """Appends event records to ``events.jsonl`` one whole line per ``write`` (O_APPEND), so the daemon's
    records and the proxy's never interleave."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __call__(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ProxyThread:
    """An :class:`InterceptProxy` on its own event loop in a background thread (tests, embedding):
    ``with ProxyThread(proxy, [("127.0.0.1", 0)]) as addresses: ...``."""

    def __init__(self, proxy: InterceptProxy, listen: Sequence[Address]) -> None:
        self.proxy = proxy
        self.listen = list(listen)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="intercept-proxy", daemon=True)

    def __enter__(self) -> list[Address]:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.proxy.start(self.listen), self.loop).result(10)

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the proxy's loop thread (to read its counters consistently)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


async def serve(proxy: InterceptProxy, listen: Sequence[Address], stop: asyncio.Event) -> None:
    """Listen, write the stats file every second until ``stop`` is set, then close (stats say not running)."""
    await proxy.start(listen)
    proxy.write_stats()
    print(
        f"intercept: listening on {', '.join(f'[{h}]:{p}' for h, p in proxy.listening)}, "
        f"CA {proxy.ca.certificate.subject.rfc4514_string()}",
        file=sys.stderr,
        flush=True,
    )
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), STATS_INTERVAL)
        proxy.write_stats()
    await proxy.close()
    proxy.write_stats(running=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m chokepoint.backends.intercept (--profile NAME | --rules FILE) --state-dir DIR [--port N]
    [--listen ADDR ...] [--seed N] [--clock-offset S] [--param RULE.PARAM=VALUE ...] [--as-of YYYY-MM-DD]``: the proxy process (the
    censor daemon starts it with its own clock offset and overrides; see the docstring)."""
    from chokepoint.backends.options import clock_offset, load_policy, param_override

    parser = argparse.ArgumentParser(
        prog="python -m chokepoint.backends.intercept",
        description="Chokepoint TLS-intercepting proxy (tls-intercept rules)",
    )
    parser.add_argument("--profile")
    parser.add_argument("--rules")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--listen", action="append", help="address to listen on (default 0.0.0.0 and ::)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--clock-offset", type=clock_offset, default=0.0)
    parser.add_argument("--param", type=param_override, action="append", default=[])
    parser.add_argument("--as-of", default=None)
    args = parser.parse_args(argv)
    from chokepoint.policy import PolicyError

    try:
        profile = load_policy(args.profile, args.rules, dict(args.param), args.as_of)
    except PolicyError as exc:
        print(f"intercept: profile rejected: {exc}", file=sys.stderr)
        return 1
    args.state_dir.mkdir(parents=True, exist_ok=True)
    ca = CensorCA.load_or_create(args.state_dir, **CensorCA.names_for(profile.policy))
    events = EventLog(args.state_dir / EVENTS_FILE)
    offset = args.clock_offset
    proxy = InterceptProxy(
        profile,
        ca,
        emit=events,
        seed=args.seed,
        state_dir=args.state_dir,
        clock=(lambda: time.time() + offset) if offset else time.time,
    )
    listen = [(host, args.port) for host in (args.listen or ["0.0.0.0", "::"])]

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(proxy, listen, stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"intercept: cannot listen on port {args.port}: {exc}", file=sys.stderr)
        return 3
    finally:
        events.close()
    return 0


# ------------------------------------------------------------------------------------ the daemon's handle


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the censor daemon dies (prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


class InterceptProcess:
    """The proxy as a child process of the censor daemon (same namespace), started and stopped by it."""

    def __init__(self, proc: subprocess.Popen, state_dir: Path, port: int) -> None:
        self.proc = proc
        self.state_dir = state_dir
        self.port = port

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        profile: str | None = None,
        rules: str | None = None,
        port: int = DEFAULT_PORT,
        seed: int | None = None,
        timeout: float = 10.0,
        clock_offset_s: float = 0.0,
        params: dict[str, str] | None = None,
        as_of: str | None = None,
    ) -> InterceptProcess:
        """Start it and wait until it listens (its stats file says running); ``InterceptError`` otherwise."""
        state_dir = Path(state_dir)
        stats = state_dir / STATS_FILE
        stats.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "chokepoint.backends.intercept",
            "--state-dir",
            str(state_dir),
            "--port",
            str(port),
        ]
        argv += ["--rules", rules] if rules else ["--profile", profile or "demo"]
        if seed is not None:
            argv += ["--seed", str(seed)]
        if clock_offset_s:
            argv += ["--clock-offset", repr(float(clock_offset_s))]
        for key, value in (params or {}).items():
            argv += ["--param", f"{key}={value}"]
        if as_of:
            argv += ["--as-of", str(as_of)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        handle = cls(proc, state_dir, port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise InterceptError(f"the intercept proxy exited at start (status {proc.returncode})")
            data = handle.stats()
            if data.get("running") and data.get("pid") == proc.pid:
                return handle
            time.sleep(0.05)
        handle.stop()
        raise InterceptError(f"the intercept proxy did not come up within {timeout:g} s")

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / STATS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
