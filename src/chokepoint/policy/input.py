"""What the policy sees of a flow: one flat, read-only view of the dissected facts.

The engine fills a ``MatchInput`` from the flow after each inspected packet; the compiled policy reads
it and never touches the flow itself. Fields a flow has not produced (yet) are ``None`` / empty.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class MatchInput:
    # network facts (always present)
    transport: str  # "tcp" | "udp" | "icmp" | "esp" | "ah" | "gre" | "ip"
    client_ip: str
    server_ip: str
    client_port: int
    server_port: int
    direction: str  # of the packet being inspected: "c2s" (client to server) or "s2c"
    packet_index_in_flow: int = 0  # 1-based count of packets in the flow so far
    tcp_header_len: int = 0  # of the packet being inspected (Henan checks for exactly 20)
    # per-packet facts added for the country profiles (filled by Engine.match_input)
    payload: bytes = b""  # transport payload of the packet being inspected (one segment/datagram)
    data_packet_index_c2s: int = 0  # client packets with a payload so far, this one included (Iran: 2)
    local_hour: int | None = None  # hour 0-23 of the packet's time in the profile's timezone (Myanmar)
    # application facts
    app_proto: str = "unknown"
    dns_qname: str | None = None  # lowercase, no trailing dot
    dns_qtype: int | None = None
    tls_sni: str | None = None
    http_host: str | None = None  # lowercase, port stripped
    http_method: str | None = None
    http_path: str | None = None  # percent-decoded path (no query)
    http_query: str | None = None  # percent-decoded query string (no '?')
    http_user_agent: str | None = None
    quic_sni: str | None = None
    quic_version: int | None = None
    ja3: str | None = None  # md5 hex
    ja4: str | None = None
    tls_alpn: tuple[str, ...] = ()
    tls_versions: tuple[int, ...] = ()  # supported_versions offered (RFC 8446 4.2.1); () without the extension
    encap: tuple[str, ...] = ()  # encapsulation labels of the flow's first packet (packet/decap.py)
    tls_ech: bool = False  # encrypted_client_hello 0xfe0d present
    tls_esni: bool = False  # encrypted_server_name 0xffce present
    tls_record_fragmented: bool = False  # the ClientHello spans more than one TLS record
    first_payload_c2s: bytes = b""  # the client's first data packet (as seen, not reassembled)
    first_payload_s2c: bytes = b""
    stream_c2s: bytes = b""  # reassembled client bytes so far (bounded)
    fully_encrypted: bool | None = None  # Wu et al. 2023 verdict on the first client data packet
    fet_exemption: str | None = None  # "ex1".."ex5" when exempted
    tls_in_tls: bool | None = None  # an encapsulated TLS handshake (dissect/tlsintls.py, Xue et al. 2024)

    def domains(self) -> list[tuple[str, str]]:
        """Every domain-name fact with the field it came from, for domain rules."""
        out = []
        for name, value in (
            ("dns.qname", self.dns_qname),
            ("tls.sni", self.tls_sni),
            ("http.host", self.http_host),
            ("quic.sni", self.quic_sni),
        ):
            if value:
                out.append((name, value))
        return out
