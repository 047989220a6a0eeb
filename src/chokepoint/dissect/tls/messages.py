"""The hello messages as data: ``ClientHello`` and ``ServerHello`` (frozen dataclasses with their JA3/JA4
properties), and the handshake and extension code points the parsers read.

Extensions: server_name RFC 6066 §3, ALPN RFC 7301, supported_groups RFC 8422 §5.1.1 / RFC 8446 §4.2.7,
ec_point_formats RFC 8422 §5.1.2, signature_algorithms RFC 8446 §4.2.3, key_share RFC 8446 §4.2.8,
supported_versions RFC 8446 §4.2.1, encrypted_client_hello draft-ietf-tls-esni-13+ (0xfe0d, ECHClientHello
type outer(0)/inner(1)), ESNI draft-ietf-tls-esni-01..03 (0xffce).  GREASE values: RFC 8701.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chokepoint.dissect.fingerprint import (
    ja3_for,
    ja3_hash_for,
    ja3s_for,
    ja3s_hash_for,
    ja4_for,
)

# Handshake message types (RFC 8446 §4).
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2

# Extension types.
EXT_SERVER_NAME = 0x0000
EXT_SUPPORTED_GROUPS = 0x000A
EXT_EC_POINT_FORMATS = 0x000B
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_SUPPORTED_VERSIONS = 0x002B
EXT_KEY_SHARE = 0x0033
EXT_ECH = 0xFE0D
EXT_ESNI = 0xFFCE

#: A hello message bigger than this is refused (real ClientHellos are < 2 KiB, < 8 KiB with post-quantum keys).
MAX_HELLO_MESSAGE = 1 << 16

ECH_TYPE_NAMES = {0: "outer", 1: "inner"}


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A parsed ClientHello.  Lists keep wire order and GREASE values (the fingerprints drop them).

    ``sni``: the first host_name entry, lowercased (None without one); ``alpn``: protocol names decoded as
    latin-1; ``key_share_groups``: the groups of the offered key shares; ``ech_type``: "outer"/"inner"
    when 0xfe0d is present; ``record_count``: TLS records the message spanned (0 when it came from QUIC
    CRYPTO frames); ``is_sslv2``: an SSLv2-compatible CLIENT-HELLO, whose ``cipher_suites`` are its
    3-byte cipher specs and which has no extensions.
    """

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes
    extensions: tuple[tuple[int, bytes], ...]
    sni: str | None
    alpn: tuple[str, ...]
    supported_versions: tuple[int, ...]
    supported_groups: tuple[int, ...]
    ec_point_formats: tuple[int, ...]
    signature_algorithms: tuple[int, ...]
    key_share_groups: tuple[int, ...]
    has_ech: bool
    ech_type: str | None
    has_esni: bool
    record_count: int = 0
    is_sslv2: bool = False
    # Memoised fingerprints (the engine reads them after every packet); not part of equality.
    _ja3: str | None = field(default=None, init=False, repr=False, compare=False)
    _ja3_hash: str | None = field(default=None, init=False, repr=False, compare=False)
    _ja4: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def extension_types(self) -> tuple[int, ...]:
        """Extension type codes in wire order."""
        return tuple(ext_type for ext_type, _ in self.extensions)

    @property
    def ja3(self) -> str:
        """The JA3 string (salesforce/ja3)."""
        value = self._ja3
        if value is None:
            value = ja3_for(self)
            object.__setattr__(self, "_ja3", value)
        return value

    @property
    def ja3_hash(self) -> str:
        """MD5 hex of :attr:`ja3`."""
        value = self._ja3_hash
        if value is None:
            value = ja3_hash_for(self)
            object.__setattr__(self, "_ja3_hash", value)
        return value

    @property
    def ja4(self) -> str:
        """JA4 for TLS over TCP; use ``fingerprint.ja4_for(ch, transport="q")`` for QUIC."""
        value = self._ja4
        if value is None:
            value = ja4_for(self, transport="t")
            object.__setattr__(self, "_ja4", value)
        return value


@dataclass(frozen=True, slots=True)
class ServerHello:
    """A parsed ServerHello (RFC 8446 §4.1.3); ``selected_version`` is its supported_versions value, if any."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[tuple[int, bytes], ...]
    selected_version: int | None
    alpn: str | None
    record_count: int = 0
    is_hello_retry_request: bool = False

    @property
    def version(self) -> int:
        """The negotiated version: ``selected_version`` if present, else ``legacy_version``."""
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def ja3s(self) -> str:
        """The JA3S string (salesforce/ja3: ``SSLVersion,Cipher,Extensions``)."""
        return ja3s_for(self)

    @property
    def ja3s_hash(self) -> str:
        """MD5 hex of :attr:`ja3s`."""
        return ja3s_hash_for(self)


# RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello with this fixed random.
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
