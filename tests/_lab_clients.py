"""Client programs run with ``python -c`` inside a client network namespace, shared by the lab tests
(``tests/lab/_e2e.py``, ``tests/lab/_conformance.py``) and the backend tests (``tests/backends/conftest.py``).

Each is a self-contained script for the interpreter running the tests (``sys.executable``, the venv the lab
itself runs under: aioquic and dnspython are installed there). Scripts that take a JSON argument read it from
``argv[1]``; every script prints one JSON document on stdout.
"""

from __future__ import annotations

from typing import Any

#: TCP connects, one after another; argv: timeout (s), then ``"addr,port[,source port]"`` ... (IPv4 or IPv6).
#: Prints one JSON list of outcomes: "ok", "refused" (an RST), "timeout", or another errno name.
TCP_CONNECTS = """
import errno, json, socket, sys
out = []
for spec in sys.argv[2:]:
    addr, port, *sport = spec.split(",")
    sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(float(sys.argv[1]))
    try:
        if sport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", int(sport[0])))
        sock.connect((addr, int(port)))
        out.append("ok")
    except socket.timeout:
        out.append("timeout")
    except ConnectionRefusedError:
        out.append("refused")
    except OSError as exc:
        out.append(errno.errorcode.get(exc.errno, str(exc.errno)))
    finally:
        sock.close()
print(json.dumps(out))
"""

#: One DNS query over UDP with dnspython, then EVERY answer that arrives within the wait (an on-path injector's
#: forged answer and the real one both reach the socket), each with its wire bytes. argv[1]: JSON
#: ``{"server", "name", "qtype", "wait"}``.
DNS_ALL_ANSWERS = """
import json, socket, sys, time
import dns.message
a = json.loads(sys.argv[1])
query = dns.message.make_query(a["name"], a["qtype"])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = time.monotonic()
sock.sendto(query.to_wire(), (a["server"], 53))
out = []
while (left := sent + a["wait"] - time.monotonic()) > 0:
    sock.settimeout(left)
    try:
        data, peer = sock.recvfrom(4096)
    except socket.timeout:
        break
    answer = dns.message.from_wire(data)
    out.append({"after_ms": round((time.monotonic() - sent) * 1000, 3), "from": peer[0], "wire": data.hex(),
                "id_matches": answer.id == query.id, "flags": answer.flags, "qlen": len(query.to_wire()),
                "answers": [[rrset.ttl, rr.to_text()] for rrset in answer.answer for rr in rrset]})
print(json.dumps(out))
"""

#: HTTP/3 GET (RFC 9114) of ``/h3`` with aioquic, trusting only ``cafile`` (the lab CA), from a chosen local
#: address/port, with a chosen QUIC version, optionally after a dummy datagram on the same 4-tuple (``prelude``).
#: argv[1]: JSON, see :func:`h3_get_args`. Prints {"outcome": "ok"|"timeout"|"error ...", "status", "origin",
#: "version", "local_port"}; "timeout" when no response arrived within ``timeout`` seconds.
H3_GET = """
import asyncio, json, os, socket, sys
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
a = json.loads(sys.argv[1])

class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.done = asyncio.get_running_loop().create_future()
        self.headers, self.body = {}, b""

    def quic_event_received(self, event):
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                self.headers = dict(ev.headers)
            elif isinstance(ev, DataReceived):
                self.body += ev.data
            if getattr(ev, "stream_ended", False) and not self.done.done():
                self.done.set_result(None)

async def get(out):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=a["sni"])
    config.load_verify_locations(a["cafile"])
    config.original_version = a["version"]
    config.supported_versions = [a["version"]] + [v for v in (1, 0x6B3343CF) if v != a["version"]]
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a["bind"] or "0.0.0.0", a["local_port"]))
    out["local_port"] = sock.getsockname()[1]
    peer = (a["address"], a["port"])
    if a["prelude"] == "dummy-udp":
        sock.sendto(os.urandom(64), peer)
        await asyncio.sleep(0.05)
    transport, client = await loop.create_datagram_endpoint(
        lambda: Client(QuicConnection(configuration=config)), sock=sock)
    try:
        client.connect(peer)
        await client.wait_connected()
        stream = client._quic.get_next_available_stream_id()
        client.h3.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"https"),
                                        (b":authority", a["sni"].encode()), (b":path", b"/h3")], end_stream=True)
        client.transmit()
        await client.done
        out.update(outcome="ok", status=int(client.headers[b":status"]), origin=b"CHOKEPOINT-LAB-ORIGIN" in client.body,
                   version=client._quic._version)
    finally:
        client.close()
        transport.close()

async def main():
    out = {"outcome": "timeout"}
    try:
        await asyncio.wait_for(get(out), a["timeout"])
    except asyncio.TimeoutError:
        out["outcome"] = "timeout"
    except ConnectionError as exc:
        out["outcome"] = f"error {exc!r}"
    print(json.dumps(out))

asyncio.run(main())
"""


def h3_get_args(
    address: str,
    sni: str,
    cafile: str,
    *,
    port: int = 443,
    version: int = 1,
    bind: str = "",
    local_port: int = 0,
    prelude: str = "",
    timeout: float = 2.0,
) -> dict[str, Any]:
    """The JSON argument of :data:`H3_GET` (``bind``/``local_port`` empty/0: any local address/port)."""
    return {
        "address": address,
        "port": port,
        "sni": sni,
        "version": version,
        "bind": bind,
        "local_port": local_port,
        "prelude": prelude,
        "timeout": timeout,
        "cafile": cafile,
    }


__all__ = ["DNS_ALL_ANSWERS", "H3_GET", "TCP_CONNECTS", "h3_get_args"]
