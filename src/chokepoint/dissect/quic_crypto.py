"""QUIC Initial packet protection: initial secrets, AEAD and header protection.

Initial packets are protected with keys anyone can derive from the client's first Destination
Connection ID (RFC 9001 §5.2), so an on-path observer can read the ClientHello:

    initial_secret = HKDF-Extract(initial_salt, client_dcid)
    client_secret  = HKDF-Expand-Label(initial_secret, "client in", "", 32)   (server: "server in")
    key/iv/hp      = HKDF-Expand-Label(secret, "quic key" | "quic iv" | "quic hp", "", 16 | 12 | 16)

HKDF: RFC 5869 (HMAC-SHA256 from the standard library); HKDF-Expand-Label: RFC 8446 §7.1.  Payload: AEAD_AES_128_GCM with nonce = iv XOR
packet number (RFC 9001 §5.3); header protection: AES-128-ECB over a 16-byte sample taken 4 bytes after
the packet-number offset (RFC 9001 §5.4).  QUIC v2 (RFC 9369 §3.3) changes the salt and the labels
("quicv2 key", "quicv2 iv", "quicv2 hp").

Salts per version, cross-checked in Wireshark's epan/dissectors/packet-quic.c and nDPI's
src/lib/protocols/quic.c (quic_derive_initial_secrets):

- draft-22 (and mvfst 0xfaceb001, "based on draft-22"): 7fbcdb0e...  (older drafts are refused)
- drafts 23..28 (and mvfst 0xfaceb002 / 0xfaceb00e, "based on draft-27"): c3eef712...
- drafts 29..32: afbfec28...
- drafts 33..34 and v1 (RFC 9001 §5.2; the salt changed in draft-33): 38762cf7...
- v2 (RFC 9369 §3.3.1): 0dede3de...
- Google QUIC Q050, T050, T051 (Chromium's own salts, as in Wireshark/nDPI), with the v1 labels.

Checked against real traffic in the tests: v1, v2 (RFC vectors, aioquic), draft-29, mvfst 0xfaceb002
(draft-23 salt), Q050 and T050 captures.  The draft-22 and T051 salts have no capture to check them.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from chokepoint.dissect.errors import Malformed

# Versions with their own Initial salt (RFC 9000 §15, RFC 9369 §3.1, Chromium/mvfst version tags).
VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF
Q050 = 0x51303530
T050 = 0x54303530
T051 = 0x54303531
MVFST_22 = 0xFACEB001
MVFST_27 = 0xFACEB002
MVFST_EXP = 0xFACEB00E

SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
SALT_Q050 = bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45")
SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")

#: Oldest IETF draft whose long header (separate DCID/SCID length bytes) and salt we know.
OLDEST_DRAFT = 22

AEAD_TAG_LEN = 16
SAMPLE_LEN = 16
PN_MAX_LEN = 4
SECRET_LEN = 32


class UnsupportedVersion(Malformed):
    """A recognised QUIC version whose Initial protection (or header layout) is not implemented."""


def draft_number(version: int) -> int | None:
    """The IETF draft a version follows: 0xff0000NN -> NN; mvfst and v1 map to their base draft."""
    if version >> 8 == 0xFF0000:
        return version & 0xFF
    if version == MVFST_22:
        return 22
    if version in (MVFST_27, MVFST_EXP):
        return 27
    if version == VERSION_1:
        return 34
    return None


def has_initial_salt(version: int) -> bool:
    """True when :func:`initial_salt` knows ``version`` (v1, v2, drafts >= 22, three mvfst, Q050/T050/T051)."""
    return version in (VERSION_2, Q050, T050, T051) or (draft_number(version) or 0) >= OLDEST_DRAFT


def initial_salt(version: int) -> bytes:
    """The Initial salt for ``version``; UnsupportedVersion when there is none we know."""
    if version == VERSION_2:
        return SALT_V2
    if version == Q050:
        return SALT_Q050
    if version == T050:
        return SALT_T050
    if version == T051:
        return SALT_T051
    draft = draft_number(version)
    if draft is None or draft < OLDEST_DRAFT:
        raise UnsupportedVersion(f"no Initial salt known for version 0x{version:08x}")
    if draft <= 22:
        return SALT_DRAFT_22
    if draft <= 28:
        return SALT_DRAFT_23
    if draft <= 32:
        return SALT_DRAFT_29
    return SALT_V1


def label_prefix(version: int) -> bytes:
    """ "quicv2 " for v2 (RFC 9369 §3.3.2), "quic " for v1, the drafts and Google's T05x/Q050."""
    return b"quicv2 " if version == VERSION_2 else b"quic "


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869 §2.2): HMAC(salt, ikm)."""
    return hmac.digest(salt, ikm, hashlib.sha256)


def hkdf_expand_label(secret: bytes, label: bytes, length: int, context: bytes = b"") -> bytes:
    """HKDF-Expand-Label with SHA-256 (RFC 8446 §7.1; HKDF-Expand: RFC 5869 §2.3)."""
    full_label = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label + bytes((len(context),)) + context
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.digest(secret, block + info + bytes((counter,)), hashlib.sha256)
        output += block
        counter += 1
    return output[:length]


def initial_secrets(version: int, client_dcid: bytes) -> tuple[bytes, bytes]:
    """(client_initial_secret, server_initial_secret) for a connection (RFC 9001 §5.2)."""
    initial_secret = hkdf_extract(initial_salt(version), client_dcid)
    return (
        hkdf_expand_label(initial_secret, b"client in", SECRET_LEN),
        hkdf_expand_label(initial_secret, b"server in", SECRET_LEN),
    )


class InitialProtection:
    """Packet and header protection for one direction of a connection's Initial packets."""

    __slots__ = ("version", "key", "iv", "hp", "_aead", "_hp_cipher")

    def __init__(self, version: int, secret: bytes) -> None:
        prefix = label_prefix(version)
        self.version = version
        self.key = hkdf_expand_label(secret, prefix + b"key", 16)
        self.iv = hkdf_expand_label(secret, prefix + b"iv", 12)
        self.hp = hkdf_expand_label(secret, prefix + b"hp", 16)
        self._aead = AESGCM(self.key)
        self._hp_cipher = Cipher(algorithms.AES(self.hp), modes.ECB())

    @classmethod
    def for_initial(cls, version: int, client_dcid: bytes, *, is_client: bool) -> InitialProtection:
        """Keys protecting the client's (``is_client``) or the server's Initial packets."""
        client_secret, server_secret = initial_secrets(version, client_dcid)
        return cls(version, client_secret if is_client else server_secret)

    def header_mask(self, sample: bytes) -> bytes:
        """The 5-byte header-protection mask for a 16-byte sample (RFC 9001 §5.4.3)."""
        encryptor = self._hp_cipher.encryptor()
        return encryptor.update(sample)[:5]

    def nonce(self, packet_number: int) -> bytes:
        """iv XOR the left-padded packet number (RFC 9001 §5.3)."""
        return (int.from_bytes(self.iv, "big") ^ packet_number).to_bytes(12, "big")

    def open(self, packet_number: int, header: bytes, protected_payload: bytes) -> bytes:
        """Decrypt and authenticate a payload; Malformed when the tag does not verify."""
        try:
            return self._aead.decrypt(self.nonce(packet_number), protected_payload, header)
        except InvalidTag:
            raise Malformed(f"QUIC Initial: AEAD authentication failed (pn {packet_number})") from None

    def seal(self, packet_number: int, header: bytes, payload: bytes) -> bytes:
        """Encrypt a payload (the inverse of :meth:`open`; ciphertext followed by the 16-byte tag)."""
        return self._aead.encrypt(self.nonce(packet_number), payload, header)


def unprotect_header(
    packet: bytes | memoryview, pn_offset: int, protection: InitialProtection, *, long_header: bool = True
) -> tuple[int, int, int]:
    """Remove header protection; return (first_byte, packet_number_length, truncated_packet_number).

    ``packet`` spans exactly one QUIC packet.  The sample starts 4 bytes after ``pn_offset``
    whatever the packet-number length (RFC 9001 §5.4.2).
    """
    sample_start = pn_offset + PN_MAX_LEN
    if sample_start + SAMPLE_LEN > len(packet):
        raise Malformed(f"QUIC: packet of {len(packet)} bytes too short for a header-protection sample")
    mask = protection.header_mask(bytes(packet[sample_start : sample_start + SAMPLE_LEN]))
    first_byte = packet[0] ^ (mask[0] & (0x0F if long_header else 0x1F))
    pn_len = (first_byte & 0x03) + 1
    truncated = 0
    for i in range(pn_len):
        truncated = (truncated << 8) | (packet[pn_offset + i] ^ mask[1 + i])
    return first_byte, pn_len, truncated


def decode_packet_number(truncated: int, pn_len: int, largest_pn: int) -> int:
    """Recover a full packet number from its truncated encoding (RFC 9000 §A.3)."""
    bits = pn_len * 8
    expected = largest_pn + 1
    window = 1 << bits
    half = window // 2
    mask = window - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate
