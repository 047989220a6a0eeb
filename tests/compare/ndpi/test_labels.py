"""chokepoint.compare.ndpi.labels: nDPI labels mapped to our ``app_proto`` vocabulary."""

from __future__ import annotations

import pytest

from chokepoint.appproto import AppProto
from chokepoint.compare.ndpi import NDPI_MASTER_TO_APP_PROTO, ndpi_app_protos

# --- the mapping -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("master", "app", "l4", "ports", "expected"),
    [
        ("TLS", "Tor", "TCP", (51112, 443), {AppProto.TOR}),
        ("TLS", None, "TCP", (1, 443), {AppProto.TLS}),
        ("TLS", "DoH_DoT", "TCP", (1, 853), {AppProto.TLS}),
        ("TLS", "Signal", "TCP", (1, 443), {AppProto.TLS}),
        ("DNS", "YouTube", "UDP", (1, 53), {AppProto.DNS}),
        ("DNS", "Tor", "UDP", (1, 53), {AppProto.DNS}),  # only TLS.Tor is Tor for us
        ("HTTP", "Google", "TCP", (1, 80), {AppProto.HTTP}),
        ("HTTP_Proxy", None, "TCP", (1, 8080), {AppProto.HTTP}),
        ("HTTP_Connect", None, "TCP", (1, 8080), {AppProto.HTTP_CONNECT}),
        ("QUIC", "Google", "UDP", (1, 443), {AppProto.QUIC}),
        ("SSH", None, "TCP", (1, 22), {AppProto.SSH}),
        ("SOCKS", None, "TCP", (1, 1080), {AppProto.SOCKS}),
        ("OpenVPN", "NordVPN", "UDP", (1, 1194), {AppProto.OPENVPN}),
        ("WireGuard", None, "UDP", (1, 51820), {AppProto.WIREGUARD}),
        ("IPSec", None, "UDP", (10500, 500), {AppProto.IKE}),
        ("IPSec", None, "UDP", (14500, 4500), {AppProto.IKE, AppProto.IPSEC}),
        ("IPSec", None, "ESP", (0, 0), {AppProto.IPSEC}),
        ("IPSec", None, "AH", (0, 0), {AppProto.IPSEC}),
        ("PPTP", None, "TCP", (1, 1723), {AppProto.PPTP}),
        ("GRE", None, "GRE", (0, 0), {AppProto.GRE}),
        ("Tor", None, "TCP", (1, 9001), {AppProto.TOR}),
        ("ICMP", None, "ICMP", (0, 0), {AppProto.ICMP}),
        ("WebSocket", None, "TCP", (1, 50999), set()),
        ("MDNS", None, "UDP", (5353, 5353), set()),
        ("Telegram", None, "TCP", (1, 443), set()),  # not in the table at all
        ("Unknown", None, "TCP", (1, 8388), set()),
    ],
)
def test_label_mapping(master, app, l4, ports, expected):
    assert ndpi_app_protos(master, app, l4, ports) == expected


def test_mapping_targets_are_our_vocabulary():
    assert {v for v in NDPI_MASTER_TO_APP_PROTO.values() if v is not None} <= set(AppProto)
    assert AppProto.UNKNOWN not in NDPI_MASTER_TO_APP_PROTO.values()
