"""The one vocabulary of application-protocol names (EVE ``app_proto``).

Every dissector, rule and output uses these lowercase names and nothing else.
"""

from enum import StrEnum


class AppProto(StrEnum):
    DNS = "dns"
    HTTP = "http"
    HTTP_CONNECT = "http-connect"
    TLS = "tls"
    QUIC = "quic"
    SSH = "ssh"
    SOCKS = "socks"
    OPENVPN = "openvpn"
    WIREGUARD = "wireguard"
    IKE = "ike"  # ISAKMP / IKEv1 / IKEv2 on UDP 500/4500
    IPSEC = "ipsec"  # ESP (IP proto 50 or UDP-encapsulated) and AH (51)
    PPTP = "pptp"
    GRE = "gre"
    TOR = "tor"
    FULLY_ENCRYPTED = "fully-encrypted"
    ICMP = "icmp"
    UNKNOWN = "unknown"


#: One-line meaning of each name, rendered into docs/architecture.md.
DESCRIPTIONS: dict[AppProto, str] = {
    AppProto.DNS: "DNS over UDP or TCP (RFC 1035, RFC 7766)",
    AppProto.HTTP: "HTTP/1.x request from the client (partial: a response seen without it)",
    AppProto.HTTP_CONNECT: "HTTP/1.x CONNECT (a proxy tunnel request)",
    AppProto.TLS: "TLS over TCP, identified by its ClientHello (partial: a ServerHello, or records mid-connection)",
    AppProto.QUIC: "QUIC or Google QUIC, identified by its Initial/CHLO (partial: other long headers, Version "
    "Negotiation, or short headers on UDP/443)",
    AppProto.SSH: "SSH, identified by its identification banner (RFC 4253 section 4.2)",
    AppProto.SOCKS: "SOCKS4, SOCKS4a or SOCKS5 client handshake",
    AppProto.OPENVPN: "OpenVPN control channel over UDP or TCP",
    AppProto.WIREGUARD: "WireGuard handshake/cookie/transport messages",
    AppProto.IKE: "ISAKMP / IKEv1 / IKEv2 key exchange on UDP 500/4500",
    AppProto.IPSEC: "IPsec ESP or AH (IP protocols 50/51, or ESP in UDP 4500)",
    AppProto.PPTP: "PPTP control connection (TCP 1723)",
    AppProto.GRE: "GRE (IP protocol 47), e.g. the PPTP data channel",
    AppProto.TOR: "Tor, identified by the fingerprint of its TLS ClientHello",
    AppProto.FULLY_ENCRYPTED: "no protocol recognised, and the first client payload looks fully encrypted (Wu et al.)",
    AppProto.ICMP: "ICMP / ICMPv6",
    AppProto.UNKNOWN: "no protocol recognised, and no fully-encrypted verdict",
}
