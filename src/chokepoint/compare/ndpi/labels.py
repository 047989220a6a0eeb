"""nDPI labels in our vocabulary: which ``app_proto`` values agree with an nDPI master/application label
(``ndpi_app_protos``), with IPSec told apart from IKE by transport."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from chokepoint.appproto import AppProto
from chokepoint.compare.ndpi.out import NdpiFlow
from chokepoint.compare.normalize import l4_name

#: nDPI master protocol name -> our ``app_proto``; ``None``: a protocol we do not dissect (excluded from
#: the score and counted separately). Names missing here are treated as ``None`` too.
NDPI_MASTER_TO_APP_PROTO: Mapping[str, AppProto | None] = MappingProxyType(
    {
        "DNS": AppProto.DNS,
        "HTTP": AppProto.HTTP,
        "HTTP_Proxy": AppProto.HTTP,  # plain HTTP/1.x requests sent to a proxy port
        "HTTP_Connect": AppProto.HTTP_CONNECT,
        "TLS": AppProto.TLS,  # TLS.<App> (TLS.Signal, TLS.DoH_DoT, ...) is still TLS
        "QUIC": AppProto.QUIC,  # IETF and Google QUIC alike
        "SSH": AppProto.SSH,
        "SOCKS": AppProto.SOCKS,
        "OpenVPN": AppProto.OPENVPN,
        "WireGuard": AppProto.WIREGUARD,
        "IPSec": AppProto.IPSEC,  # IKE or ESP/AH: refined by transport, see ndpi_app_protos()
        "PPTP": AppProto.PPTP,
        "GRE": AppProto.GRE,
        "Tor": AppProto.TOR,
        "ICMP": AppProto.ICMP,
        "ICMPV6": AppProto.ICMP,
        # Listed to record the decision; we have no dissector for these:
        "WebSocket": None,  # nDPI matches RFC 6455 frames, not the HTTP upgrade request
        "DTLS": None,
        "MDNS": None,  # DNS wire format, but nDPI gives it its own label (RFC 6762)
        "LLMNR": None,
        "Unknown": None,
    }
)

#: Labels whose application part changes our name: nDPI reports Tor as TLS with application Tor.
_LABEL_OVERRIDES: Mapping[tuple[str, str], AppProto] = MappingProxyType({("TLS", "Tor"): AppProto.TOR})


def ndpi_app_protos(
    master: str, app: str | None = None, l4: str = "", ports: tuple[int, int] = (0, 0)
) -> frozenset[AppProto]:
    """Our ``app_proto`` names that agree with an nDPI label; empty when we do not dissect it.

    nDPI labels both IKE and ESP "IPSec". UDP 500 carries IKE only (RFC 7296 section 2); UDP 4500
    carries IKE behind a non-ESP marker and ESP alike (RFC 3948 section 2), which the ``.out`` file does
    not tell apart, so both are accepted there; IP protocols 50/51 and anything else are ESP/AH.
    """
    if app is not None and (master, app) in _LABEL_OVERRIDES:
        return frozenset({_LABEL_OVERRIDES[(master, app)]})
    mapped = NDPI_MASTER_TO_APP_PROTO.get(master)
    if mapped is None:
        return frozenset()
    if mapped is AppProto.IPSEC and l4_name(l4) == "UDP":
        if 500 in ports:
            return frozenset({AppProto.IKE})
        if 4500 in ports:
            return frozenset({AppProto.IKE, AppProto.IPSEC})
    return frozenset({mapped})


def expected_app_protos(flow: NdpiFlow) -> frozenset[AppProto]:
    """``ndpi_app_protos`` for one parsed flow."""
    return ndpi_app_protos(flow.master, flow.app, flow.l4, (flow.port_a, flow.port_b))
