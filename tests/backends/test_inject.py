"""The injector: raw IPv4 (IP_HDRINCL) and IPv6 sockets, and the link-layer path for IPv4 ID 0.

Packets are crafted by the project's own crafter (``chokepoint.enforce.craft``), injected from the censor
namespace of a real client/censor/server path and captured on the receiving host's interface.
"""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.backends.inject import InjectError, Injector, destination_of
from chokepoint.enforce.craft import Stamp, tcp_reset, udp_datagram
from chokepoint.packet.build import checksum

from .conftest import CLIENT_IP, SERVER_IP, SERVER_IP6

RST_TO_CLIENT = tcp_reset(
    SERVER_IP, CLIENT_IP, 80, 40001, 1000, 2000, with_ack=True, stamp=Stamp(ttl=55, ip_id=1234, df=False, window=0)
)
RST_TO_CLIENT_ID0 = tcp_reset(
    SERVER_IP, CLIENT_IP, 80, 40002, 1000, 2000, with_ack=False, stamp=Stamp(ttl=101, ip_id=0, df=False, window=0)
)
RST6_TO_CLIENT = tcp_reset(
    SERVER_IP6, "2001:db8:0:1::2", 80, 40003, 5, 6, with_ack=True, stamp=Stamp(ttl=33, window=512)
)
UDP_TO_SERVER = udp_datagram(CLIENT_IP, SERVER_IP, 40004, 5353, b"chokepoint", Stamp(ttl=64, ip_id=77))

SEND = """
import json, sys
from chokepoint.backends.inject import Injector, InjectError
out = []
with Injector() as injector:
    for hexed in sys.argv[1:]:
        try:
            sent = injector.send(bytes.fromhex(hexed))
            out.append({"sent": sent.size, "dst": sent.destination})
        except InjectError as exc:
            out.append({"error": str(exc), "errno": exc.errno})
    out.append(dict(injector.counters))
print(json.dumps(out))
"""


def inject(netpath, *packets: bytes) -> list[dict]:
    proc = netpath.in_censor(SEND, *(p.hex() for p in packets))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- no root needed ---------------------------------------------------------------------------------------
def test_destination_of_real_packets():
    assert destination_of(RST_TO_CLIENT) == (4, CLIENT_IP)
    assert destination_of(RST6_TO_CLIENT) == (6, "2001:db8:0:1::2")
    assert destination_of(UDP_TO_SERVER) == (4, SERVER_IP)


@pytest.mark.parametrize("bad", [b"", b"\x45" + b"\0" * 10, b"\x60" + b"\0" * 30, b"\x20" + b"\0" * 60])
def test_destination_of_rejects_non_ip(bad):
    with pytest.raises(InjectError):
        destination_of(bad)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([RST_TO_CLIENT, RST6_TO_CLIENT, UDP_TO_SERVER]),
    st.integers(0, 80),
    st.binary(max_size=8),
    st.integers(0, 79),
    st.integers(0, 255),
)
def test_destination_of_on_mutated_packets_raises_only_inject_error(packet, cut, splice, pos, value):
    mutated = bytearray(packet[:cut] + splice + packet[cut:])
    if mutated:
        mutated[pos % len(mutated)] = value
    try:
        version, dst = destination_of(bytes(mutated))
    except InjectError:
        return
    assert version in (4, 6) and dst


def test_send_rejects_garbage_without_a_socket():
    injector = Injector()
    with pytest.raises(InjectError):
        injector.send(b"\x00garbage")
    assert not injector._sockets and not injector.counters


# -- on the wire ------------------------------------------------------------------------------------------
def test_ipv4_and_ipv6_injections_arrive_byte_for_byte(netpath):
    with netpath.capture(netpath.client, "cl0", 80, seconds=5) as seen:
        results = inject(netpath, RST_TO_CLIENT, RST6_TO_CLIENT)
    assert results[0] == {"sent": len(RST_TO_CLIENT), "dst": CLIENT_IP}
    assert results[1] == {"sent": len(RST6_TO_CLIENT), "dst": "2001:db8:0:1::2"}
    arrived = {c.raw for c in seen if not c.outgoing}
    assert RST_TO_CLIENT in arrived  # TTL 55, IP ID 1234, no DF: exactly as crafted
    assert RST6_TO_CLIENT in arrived  # hop limit 33 kept


def test_ipv4_id_zero_goes_out_below_ip_and_stays_zero(netpath):
    # A packet from the client teaches the censor its link address (what any real trigger does first).
    netpath.client_run(["curl", "-s", "-m", "2", "-o", "/dev/null", f"http://{SERVER_IP}/"])
    with netpath.capture(netpath.client, "cl0", 80, seconds=5) as seen:
        results = inject(netpath, RST_TO_CLIENT_ID0)
    assert results[-1].get("sent-v4-link") == 1, results
    arrived = [c.raw for c in seen if not c.outgoing and c.pkt and c.pkt.dport == 40002]
    assert arrived == [RST_TO_CLIENT_ID0]
    (ip_id,) = struct.unpack_from("!H", arrived[0], 4)
    assert ip_id == 0 and checksum(arrived[0][:20]) == 0


def test_ipv4_id_zero_without_a_neighbour_is_filled_by_the_kernel(netpath, tmp_path):
    # Through the raw socket (no ARP entry known), Linux replaces IP ID 0: documented, and counted.
    empty_arp = tmp_path / "arp"
    empty_arp.write_text("IP address       HW type     Flags       HW address            Mask     Device\n")
    code = SEND.replace("Injector()", f"Injector(arp_table={str(empty_arp)!r})")
    with netpath.capture(netpath.client, "cl0", 80, seconds=5) as seen:
        proc = netpath.in_censor(code, RST_TO_CLIENT_ID0.hex())
    counters = json.loads(proc.stdout)[-1]
    assert counters == {"ipid0-kernel-filled": 1, "sent-v4": 1}
    arrived = [c.raw for c in seen if not c.outgoing and c.pkt and c.pkt.dport == 40002]
    assert len(arrived) == 1
    assert struct.unpack_from("!H", arrived[0], 4)[0] != 0
    assert arrived[0][20:] == RST_TO_CLIENT_ID0[20:] and arrived[0][8] == 101  # TCP and TTL untouched


def test_injection_toward_the_server_leaves_on_the_server_side(netpath):
    with netpath.capture(netpath.server, "sv0", 5353, seconds=5) as seen:
        results = inject(netpath, UDP_TO_SERVER)
    assert results[0]["dst"] == SERVER_IP
    assert [c.raw for c in seen if not c.outgoing] == [UDP_TO_SERVER]


def test_unroutable_destination_is_an_inject_error(netpath):
    unroutable = tcp_reset("2001:db8:0:2::2", "2001:db8:ffff::1", 80, 1, 1, 1, with_ack=True, stamp=Stamp())
    results = inject(netpath, unroutable, RST_TO_CLIENT)
    assert "errno" in results[0] and results[0]["errno"] != 0
    assert results[1]["sent"] == len(RST_TO_CLIENT)  # one failure does not break the injector
    assert results[2] == {"error-v6": 1, "sent-v4": 1}
