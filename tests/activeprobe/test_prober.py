"""The prober process on loopback (no namespace: ``--no-setup``): each reaction as the paper defines it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from chokepoint.activeprobe.plan import TOR_VERSIONS_CELL


def _server(behaviour: str) -> int:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            if behaviour == "data":
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
                conn.close()
            elif behaviour == "fin":
                conn.recv(4096)
                conn.close()  # everything read: FIN
            elif behaviour == "rst":
                time.sleep(0.3)
                conn.close()  # unread data in the buffer: RST (Frolov et al., NDSS 2020)
            else:
                threading.Timer(5, conn.close).start()  # keeps reading nothing: the prober times out

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prober():
    proc = subprocess.Popen(
        [sys.executable, "-m", "chokepoint.activeprobe.prober", "--pool", "127.0.64.0/20", "--no-setup", "--seed", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert json.loads(proc.stdout.readline()) == {"ready": True}
    yield proc
    proc.stdin.close()
    proc.wait(timeout=5)


def _ask(proc, job: dict) -> dict:
    proc.stdin.write(json.dumps(job) + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


@pytest.mark.parametrize("behaviour", ["data", "fin", "rst", "timeout"])
def test_each_reaction(prober, behaviour):
    port = _server(behaviour)
    payload = os.urandom(221)
    result = _ask(
        prober,
        {
            "id": 1,
            "kind": "random",
            "dst": "127.0.0.1",
            "port": port,
            "payload": payload.hex(),
            "ttl": 48,
            "timeout": 1.5,
        },
    )
    assert result["reaction"] == behaviour, result
    assert result["src"].startswith("127.0.") and result["sport"] > 0
    if behaviour == "data":
        assert result["bytes_back"] == 28


def test_refused_and_the_tor_probe_against_a_non_tor_tls_server(prober):
    assert (
        _ask(
            prober,
            {
                "id": 2,
                "kind": "random",
                "dst": "127.0.0.1",
                "port": _free_port(),
                "payload": "00",
                "ttl": 48,
                "timeout": 1,
            },
        )["reaction"]
        == "refused"
    )
    port = _server("data")  # not TLS at all: the handshake fails
    result = _ask(
        prober,
        {
            "id": 3,
            "kind": "tor",
            "dst": "127.0.0.1",
            "port": port,
            "payload": TOR_VERSIONS_CELL.hex(),
            "ttl": 48,
            "timeout": 1,
        },
    )
    assert result["reaction"] in ("error", "rst", "fin") and result["reaction"] != "tor"
