"""The services in the real lab namespaces (root only): ``launch(state)`` on the default topology, then real
clients in ``cpk-client`` with no flags - the lab resolver and the lab CA come from /etc/netns/cpk-client.
No censor runs here, so traffic crosses cpk-censor untouched (the censor's own tests cover actions)."""

from __future__ import annotations

import sys
import textwrap

from chokepoint.lab import services, system
from chokepoint.lab import state as st
from chokepoint.lab import topology as topo
from chokepoint.lab.ca import LabCA
from chokepoint.lab.instance import PREFIX
from chokepoint.lab.services import app
from tests.lab._lab import lab_guard  # noqa: F401  (fixture: root, session lock, lab down in finally)

CLIENT = f"{PREFIX}client"

H3_GET = textwrap.dedent("""
    import asyncio, sys
    from aioquic.asyncio import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration

    class Client(QuicConnectionProtocol):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.http, self.body, self.done = H3Connection(self._quic), b"", asyncio.Event()
        def quic_event_received(self, event):
            for e in self.http.handle_event(event):
                if isinstance(e, DataReceived):
                    self.body += e.data
                if isinstance(e, (DataReceived, HeadersReceived)) and e.stream_ended:
                    self.done.set()

    async def main(address, name, cafile):
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=name, cafile=cafile)
        async with connect(address, 443, configuration=config, create_protocol=Client) as client:
            stream = client._quic.get_next_available_stream_id()
            client.http.send_headers(stream, [(b":method", b"GET"), (b":scheme", b"https"),
                                              (b":authority", name.encode()), (b":path", b"/h3")], end_stream=True)
            client.transmit()
            await asyncio.wait_for(client.done.wait(), 5)
            sys.stdout.buffer.write(client.body)

    asyncio.run(asyncio.wait_for(main(*sys.argv[1:]), 10))
""")

ECHO = textwrap.dedent("""
    import socket, sys
    tcp = socket.create_connection((sys.argv[1], 9000), timeout=5)
    tcp.sendall(b"tcp-echo"); tcp.shutdown(socket.SHUT_WR)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.settimeout(5)
    udp.sendto(b"udp-echo", (sys.argv[1], 7))
    sys.stdout.write(tcp.recv(100).decode() + " " + udp.recv(100).decode())
""")


def client(*argv: str) -> bytes:
    proc = system.run(list(argv), netns=CLIENT, check=False, timeout=20)
    assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc.stdout


def test_services_in_the_lab_namespaces(lab_guard):  # noqa: F811
    state = st.LabState(topology=topo.default_topology())
    state.state_dir.mkdir(parents=True, exist_ok=True)
    topo.create(state.topology)
    ca = LabCA.load_or_create(state.state_dir)
    topo.install_ca(state.topology, ca.cert_pem)
    infos = services.launch(state)
    state.save()
    assert {info.netns for info in infos} == {f"{PREFIX}server", f"{PREFIX}control", f"{PREFIX}vps"}

    # name resolution through /etc/netns/cpk-client/resolv.conf, certificate trust through its ssl copy
    assert client("curl", "-sS", "--max-time", "5", "https://any.name.example/p") == app.page_body(
        "any.name.example", "/p"
    )
    assert client(
        "curl", "-sS", "--max-time", "5", "-H", "Host: by-ip.example", "http://198.19.0.15/"
    ) == app.page_body("by-ip.example", "/")
    assert client("curl", "-sS", "-g", "--max-time", "5", "http://[2001:db8:0:2::29]/six") == app.page_body(
        "[2001:db8:0:2::29]", "/six"
    )
    for resolver_ip, mode in (
        ("198.19.0.53", "+notcp"),
        ("198.19.0.53", "+tcp"),
        ("198.18.9.1", "+notcp"),
        ("198.18.9.1", "+tcp"),
    ):
        answer = client("dig", "+short", "+time=2", "+tries=1", mode, f"@{resolver_ip}", "lab.example", "A")
        assert answer.split() == [b"198.19.0.10"], resolver_ip
    assert client("dig", "+short", "+time=2", "+tries=1", "@198.19.0.53", "lab.example", "AAAA").split() == [
        b"2001:db8:0:2::10"
    ]
    body = client(sys.executable, "-c", H3_GET, "198.19.0.10", "quic.example", str(state.path("ca.pem")))
    assert body == app.page_body("quic.example", "/h3")
    assert client(sys.executable, "-c", ECHO, "198.19.0.20") == b"tcp-echo udp-echo"
    # the "vps" range's hosts (lab/ranges.py), on the VPS behind the server: web and echo, no HTTP/3
    assert client(
        "curl", "-sS", "--max-time", "5", "-H", "Host: in-a-dc.example", "http://198.19.64.100/"
    ) == app.page_body("in-a-dc.example", "/")
    assert client(sys.executable, "-c", ECHO, "198.19.64.109") == b"tcp-echo udp-echo"
