"""TLS handshake dissection: ClientHello / ServerHello over TCP records or QUIC CRYPTO frames.

Grammar: RFC 8446 §4 (TLS 1.3) and RFC 5246 §7.4 (TLS 1.2); record layer RFC 8446 §5.1 / RFC 5246 §6.2.1.
Extensions: server_name RFC 6066 §3, ALPN RFC 7301, supported_groups RFC 8422 §5.1.1 / RFC 8446 §4.2.7,
ec_point_formats RFC 8422 §5.1.2, signature_algorithms RFC 8446 §4.2.3, key_share RFC 8446 §4.2.8,
supported_versions RFC 8446 §4.2.1, encrypted_client_hello draft-ietf-tls-esni-13+ (0xfe0d, ECHClientHello
type outer(0)/inner(1)), ESNI draft-ietf-tls-esni-01..03 (0xffce).  GREASE values: RFC 8701.

Modules, in import order:

* ``messages``: ``ClientHello`` / ``ServerHello`` as data, and the handshake and extension code points.
* ``handshake``: the message grammar (``parse_client_hello_message``, ``parse_server_hello_message``), used
  by TCP and by QUIC (whose CRYPTO frames carry the bare message).
* ``records``: the framing on TCP: TLS records (``parse_client_hello_records``, ``parse_server_hello_records``,
  ``looks_like_tls_record``), the SSLv2-compatible CLIENT-HELLO, and ``tls_record_stats``.
"""

from __future__ import annotations

from chokepoint.dissect.fingerprint import is_grease
from chokepoint.dissect.tls.handshake import parse_client_hello_message, parse_server_hello_message
from chokepoint.dissect.tls.messages import (
    ECH_TYPE_NAMES,
    EXT_ALPN,
    EXT_EC_POINT_FORMATS,
    EXT_ECH,
    EXT_ESNI,
    EXT_KEY_SHARE,
    EXT_SERVER_NAME,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_GROUPS,
    EXT_SUPPORTED_VERSIONS,
    HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_SERVER_HELLO,
    HELLO_RETRY_REQUEST_RANDOM,
    MAX_HELLO_MESSAGE,
    ClientHello,
    ServerHello,
)
from chokepoint.dissect.tls.records import (
    CONTENT_ALERT,
    CONTENT_APPLICATION_DATA,
    CONTENT_CHANGE_CIPHER_SPEC,
    CONTENT_HANDSHAKE,
    CONTENT_HEARTBEAT,
    MAX_PLAINTEXT_RECORD,
    MAX_RECORD,
    RecordStats,
    looks_like_tls_record,
    parse_client_hello_records,
    parse_server_hello_records,
    tls_record_stats,
)

__all__ = [
    "ClientHello",
    "ServerHello",
    "RecordStats",
    "is_grease",
    "looks_like_tls_record",
    "parse_client_hello_message",
    "parse_client_hello_records",
    "parse_server_hello_message",
    "parse_server_hello_records",
    "tls_record_stats",
    # code points and limits, imported by other dissectors
    "CONTENT_ALERT",
    "CONTENT_APPLICATION_DATA",
    "CONTENT_CHANGE_CIPHER_SPEC",
    "CONTENT_HANDSHAKE",
    "CONTENT_HEARTBEAT",
    "ECH_TYPE_NAMES",
    "EXT_ALPN",
    "EXT_EC_POINT_FORMATS",
    "EXT_ECH",
    "EXT_ESNI",
    "EXT_KEY_SHARE",
    "EXT_SERVER_NAME",
    "EXT_SIGNATURE_ALGORITHMS",
    "EXT_SUPPORTED_GROUPS",
    "EXT_SUPPORTED_VERSIONS",
    "HANDSHAKE_CLIENT_HELLO",
    "HANDSHAKE_SERVER_HELLO",
    "HELLO_RETRY_REQUEST_RANDOM",
    "MAX_HELLO_MESSAGE",
    "MAX_PLAINTEXT_RECORD",
    "MAX_RECORD",
]
