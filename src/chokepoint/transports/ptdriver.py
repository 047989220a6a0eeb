"""Chokepoint's own driver for a managed pluggable transport (obfs4proxy), so obfs4 runs without Tor.

It does what Tor does with a ``ClientTransportPlugin`` / ``ServerTransportPlugin`` line, following the
Pluggable Transport Specification v1 (pt-spec.txt, sections 3.2-3.3):

- ``server``: starts ``obfs4proxy`` with ``TOR_PT_MANAGED_TRANSPORT_VER=1``, ``TOR_PT_STATE_LOCATION``,
  ``TOR_PT_SERVER_TRANSPORTS=obfs4``, ``TOR_PT_SERVER_BINDADDR=obfs4-ADDR:PORT`` and ``TOR_PT_ORPORT`` (where the
  deobfuscated stream goes: a SOCKS5 server in the lab), waits for ``SMETHOD`` / ``SMETHODS DONE``; obfs4proxy
  writes the bridge line with the server's ``cert`` to ``<state>/obfs4_bridgeline.txt``;
- ``client``: starts ``obfs4proxy`` with ``TOR_PT_CLIENT_TRANSPORTS=obfs4``, reads ``CMETHOD obfs4 socks5
  HOST:PORT``, then listens on ``--listen``; every accepted connection is relayed through obfs4proxy's SOCKS5
  port to ``--bridge``, the per-bridge arguments (``cert=...;iat-mode=0``) carried as the SOCKS5
  username/password as section 3.5 says.

``TOR_PT_EXIT_ON_STDIN_CLOSE=1``: the driver keeps obfs4proxy's stdin open and closes it to stop it (obfs4proxy
0.0.14 also stops when its stdin reaches end of file). ``python -m chokepoint.transports.ptdriver --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

PT_PROGRAM = "obfs4proxy"


class PTError(Exception):
    """The transport program said ``*-ERROR`` or exited before it was ready."""


def _env(state: Path, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "TOR_PT_MANAGED_TRANSPORT_VER": "1",
        "TOR_PT_STATE_LOCATION": str(state),
        "TOR_PT_EXIT_ON_STDIN_CLOSE": "1",
        **more,
    }


def _start(env: dict[str, str], done: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Start the transport program and read its configuration lines up to ``done``."""
    proc = subprocess.Popen(
        [PT_PROGRAM, "-enableLogging", "-logLevel", "INFO"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        line = line.strip()
        print(f"pt: {line}", flush=True)
        lines.append(line)
        if "-ERROR" in line.split(" ", 1)[0]:
            raise PTError(line)
        if line == done:
            return proc, lines
    raise PTError(f"{PT_PROGRAM} exited (status {proc.wait()}) before {done}")


def bridge_args(bridgeline: Path, timeout: float = 10.0) -> str:
    """``cert=...;iat-mode=N`` from obfs4proxy's bridge line file (waits for the server to write it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            for line in bridgeline.read_text().splitlines():
                if line.startswith("Bridge obfs4"):
                    return ";".join(word for word in line.split()[4:] if "=" in word)
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise PTError(f"no bridge line in {bridgeline}")
        time.sleep(0.1)


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass


async def _socks5_via_pt(socks: tuple[str, int], bridge: tuple[str, int], args: str):
    """Open a connection to ``bridge`` through the transport's SOCKS5 port, ``args`` as the credentials."""
    reader, writer = await asyncio.open_connection(*socks)
    raw = args.encode()
    user, password = raw[:255], raw[255:] or b"\0"
    writer.write(b"\x05\x01\x02")
    if await reader.readexactly(2) != b"\x05\x02":
        raise PTError("the transport's SOCKS5 port refused username/password authentication")
    writer.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
    if (await reader.readexactly(2))[1] != 0:
        raise PTError("the transport rejected the bridge arguments")
    family = socket.AF_INET6 if ":" in bridge[0] else socket.AF_INET
    atyp = b"\x04" if family == socket.AF_INET6 else b"\x01"
    writer.write(b"\x05\x01\x00" + atyp + socket.inet_pton(family, bridge[0]) + struct.pack("!H", bridge[1]))
    reply = await reader.readexactly(4)
    if reply[1] != 0:
        raise PTError(f"the transport could not reach the bridge (SOCKS5 reply {reply[1]})")
    await reader.readexactly({1: 4, 4: 16}.get(reply[3], 0) + 2)
    return reader, writer


async def _serve_client(listen: tuple[str, int], socks: tuple[str, int], bridge: tuple[str, int], args: str) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            b_reader, b_writer = await _socks5_via_pt(socks, bridge, args)
        except (OSError, PTError, asyncio.IncompleteReadError) as exc:
            print(f"driver: {exc}", flush=True)
            c_writer.close()
            return
        await asyncio.gather(_pipe(c_reader, b_writer), _pipe(b_reader, c_writer))
        for w in (c_writer, b_writer):
            w.close()

    server = await asyncio.start_server(handle, *listen)
    print(f"driver: relaying {listen[0]}:{listen[1]} -> obfs4 {bridge[0]}:{bridge[1]}", flush=True)
    async with server:
        await server.serve_forever()


def _stop_on_signals(proc: subprocess.Popen[str]) -> None:
    def stop(signum, frame) -> None:
        if proc.stdin is not None:
            proc.stdin.close()  # TOR_PT_EXIT_ON_STDIN_CLOSE
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chokepoint.transports.ptdriver", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="role", required=True)
    srv = sub.add_parser("server", help="run obfs4proxy as a server transport")
    srv.add_argument("--state", type=Path, required=True)
    srv.add_argument("--bind", required=True, help="ADDR:PORT the obfs4 listener binds")
    srv.add_argument("--orport", required=True, help="ADDR:PORT the deobfuscated stream is sent to")
    cli = sub.add_parser("client", help="relay a local port through obfs4proxy to a bridge")
    cli.add_argument("--state", type=Path, required=True)
    cli.add_argument("--listen", required=True)
    cli.add_argument("--bridge", required=True, help="ADDR:PORT of the obfs4 server")
    cli.add_argument("--bridgeline", type=Path, required=True, help="the server's obfs4_bridgeline.txt")
    args = parser.parse_args(argv)
    args.state.mkdir(parents=True, exist_ok=True)
    try:
        if args.role == "server":
            env = _env(
                args.state,
                TOR_PT_SERVER_TRANSPORTS="obfs4",
                TOR_PT_SERVER_BINDADDR=f"obfs4-{args.bind}",
                TOR_PT_ORPORT=args.orport,
            )
            proc, _ = _start(env, "SMETHODS DONE")
            _stop_on_signals(proc)
            return proc.wait()
        bridge_arguments = bridge_args(args.bridgeline)
        proc, lines = _start(_env(args.state, TOR_PT_CLIENT_TRANSPORTS="obfs4"), "CMETHODS DONE")
        _stop_on_signals(proc)
        socks = next((_host_port(line.split()[3]) for line in lines if line.startswith("CMETHOD obfs4 ")), None)
        if socks is None:
            raise PTError("obfs4proxy offered no obfs4 client method")
        asyncio.run(_serve_client(_host_port(args.listen), socks, _host_port(args.bridge), bridge_arguments))
    except PTError as exc:
        print(f"driver: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
