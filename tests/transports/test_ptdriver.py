"""The obfs4 PT driver: bridge arguments from obfs4proxy's bridge line, and a real obfs4 hop on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from chokepoint.transports.ptdriver import PTError, bridge_args

LINE = "Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=AbC+/0= iat-mode=0\n"


def test_bridge_args_are_the_key_value_words(tmp_path):
    path = tmp_path / "obfs4_bridgeline.txt"
    path.write_text("# comment\n" + LINE)
    assert bridge_args(path) == "cert=AbC+/0=;iat-mode=0"
    with pytest.raises(PTError):
        bridge_args(tmp_path / "absent.txt", timeout=0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("obfs4proxy") is None, reason="obfs4proxy is not installed (Debian obfs4proxy)")
def test_bytes_cross_a_real_obfs4_hop(tmp_path):
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen()

    def serve() -> None:
        conn, _ = echo.accept()
        while data := conn.recv(4096):
            conn.sendall(data.upper())
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    bridge, listen = _free_port(), _free_port()
    driver = [sys.executable, "-m", "chokepoint.transports.ptdriver"]
    server = subprocess.Popen(
        [
            *driver,
            "server",
            "--state",
            str(tmp_path / "s"),
            "--bind",
            f"127.0.0.1:{bridge}",
            "--orport",
            f"127.0.0.1:{echo.getsockname()[1]}",
        ],
        stdout=subprocess.DEVNULL,
    )
    client = None
    try:
        client = subprocess.Popen(
            [
                *driver,
                "client",
                "--state",
                str(tmp_path / "c"),
                "--listen",
                f"127.0.0.1:{listen}",
                "--bridge",
                f"127.0.0.1:{bridge}",
                "--bridgeline",
                str(tmp_path / "s" / "obfs4_bridgeline.txt"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", listen), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the driver never listened"
                time.sleep(0.1)
        conn.sendall(b"through obfs4")
        assert conn.recv(100) == b"THROUGH OBFS4"
        conn.close()
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=5)
