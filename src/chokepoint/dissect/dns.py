"""DNS messages: parse (UDP datagram or RFC 7766 TCP stream) and build (queries, forged answers).

Wire format: RFC 1035 §4 (header, question, resource records) and §4.1.4 (name compression); EDNS(0) OPT
pseudo-record: RFC 6891 §6; TCP framing (2-byte length prefix, several messages per stream): RFC 7766 §8.

Names are rendered in master-file text form (RFC 1035 §5.1): labels joined by ``.``, no trailing dot (the root is
``"."``), case kept as seen on the wire (DNS 0x20 mixed case, draft-vixie-dnsext-dns0x20), and the bytes
``"().;\\@$`` plus anything outside 0x21-0x7e escaped as ``\\X`` / ``\\DDD`` (the escaping dnspython uses).

Parsing rules:

* ``NotThisProtocol``: shorter than a header, or a header no DNS speaker sends (unassigned opcode, a query with a
  non-zero RCODE or without a question, record counts that cannot fit in the message).
* ``Malformed``: a plausible header whose body breaks the grammar (name or record past the end, bad label type,
  compression pointer not pointing strictly backwards, name longer than 255 octets, bad A/AAAA/MX/... RDATA).
* Bytes after the last record are tolerated and counted in ``DnsMessage.trailing``: injectors have sent such
  answers (Turkmenistan's copied trailing query bytes until 2022-11, net4people/bbs#80); an analyst wants to see
  it and a censor still matches the question.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol

__all__ = [
    "RType",
    "DnsQuestion",
    "DnsRecord",
    "DnsEdns",
    "DnsMessage",
    "parse_message",
    "parse_tcp_stream",
    "build_query",
    "build_response",
    "encode_message",
]


class RType(IntEnum):
    """Record types the dissector renders as text (any other type is kept as hex)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    SVCB = 64
    HTTPS = 65
    ANY = 255


HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_QR = 0x8000
_RD = 0x0100
_RA = 0x0080
_ASSIGNED_OPCODES = frozenset({0, 1, 2, 4, 5, 6})  # QUERY IQUERY STATUS NOTIFY UPDATE DSO (IANA registry)
_OPCODE_DSO = 6  # RFC 8490: DSO messages carry no question
# Types whose RDATA is a single (compressible, RFC 3597 §4) domain name: NS MD MF CNAME MB MG MR PTR.
_NAME_TYPES = frozenset({2, 3, 4, 5, 7, 8, 9, 12})

# Label bytes that need no escaping (letters, digits, '-', '_' and the other printable non-special characters).
_SPECIAL = b'"().;\\@$'
_SAFE = bytes(c for c in range(0x21, 0x7F) if c not in _SPECIAL)
_ESCAPED = tuple(
    chr(c) if 0x20 < c < 0x7F and c not in _SPECIAL else ("\\" + chr(c) if c in _SPECIAL else f"\\{c:03d}")
    for c in range(256)
)
# TXT character-strings (RFC 1035 §5.1 quoting): only '"' and '\\' are backslash-escaped, space is literal.
_TXT_ESCAPED = tuple(
    ("\\" + chr(c)) if c in b'"\\' else (chr(c) if 0x20 <= c < 0x7F else f"\\{c:03d}") for c in range(256)
)


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    name: str  # as seen (0x20 case kept), no trailing dot
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """A resource record. ``value`` is text for A/AAAA/NS/CNAME/PTR/MX/TXT/SOA, lowercase hex RDATA otherwise.

    Text forms: A ``1.2.3.4``; AAAA RFC 5952 (``socket.inet_ntop``); NS/CNAME/PTR a name; MX ``"10 mx.example"``;
    TXT one or more ``"quoted"`` strings joined by spaces; SOA ``"mname rname serial refresh retry expire
    minimum"``. For an OPT record (RFC 6891) ``rclass`` is the UDP payload size and ``ttl`` the extended
    RCODE/version/flags word, as on the wire.
    """

    name: str
    rtype: int
    rclass: int
    ttl: int
    value: str


@dataclass(frozen=True, slots=True)
class DnsEdns:
    """The EDNS(0) OPT pseudo-record (RFC 6891 §6.1.3), decoded."""

    udp_size: int
    ext_rcode: int  # upper 8 bits of the 12-bit RCODE
    version: int
    dnssec_ok: bool
    options: tuple[tuple[int, bytes], ...]  # (option code, option data), e.g. 3 = NSID (RFC 5001)

    def option(self, code: int) -> bytes | None:
        """Data of the first option with this code, or None."""
        for opt_code, data in self.options:
            if opt_code == code:
                return data
        return None


@dataclass(frozen=True, slots=True)
class DnsMessage:
    id: int
    flags: int
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsRecord, ...] = ()
    authority: tuple[DnsRecord, ...] = ()
    additional: tuple[DnsRecord, ...] = ()
    edns: DnsEdns | None = None  # decoded from the first OPT record in ``additional``
    trailing: int = 0  # bytes after the last record

    @property
    def is_response(self) -> bool:
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        """The RCODE, extended to 12 bits by the OPT record when present (RFC 6891 §6.1.3)."""
        low = self.flags & 0xF
        return low | (self.edns.ext_rcode << 4) if self.edns is not None else low

    @property
    def qname(self) -> str | None:
        """First question's name, lowercase, without trailing dot (``""`` for the root); None if no question."""
        if not self.questions:
            return None
        name = self.questions[0].name
        return "" if name == "." else name.lower()

    @property
    def qtype(self) -> int | None:
        return self.questions[0].qtype if self.questions else None


# ---------------------------------------------------------------------------------------------------- parsing


def _label_text(label: bytes) -> str:
    if not label.translate(None, _SAFE):
        return label.decode("ascii")
    return "".join(_ESCAPED[c] for c in label)


def _read_name(buf: bytes, offset: int) -> tuple[str, int]:
    """Decode the (possibly compressed) name at ``offset``; return its text and the offset just after it.

    Loop protection: every compression pointer must point strictly before the previous jump target (initially the
    name's own start) and past the header, so decoding always terminates (the rule dnspython also applies).
    """
    size = len(buf)
    labels: list[str] = []
    pos, limit, end, wire_len = offset, offset, -1, 1
    while True:
        if pos >= size:
            raise Malformed(f"name at offset {offset} runs past the end of the message")
        length = buf[pos]
        if length == 0:
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= size:
                raise Malformed(f"truncated compression pointer at offset {pos}")
            target = ((length & 0x3F) << 8) | buf[pos + 1]
            if end < 0:
                end = pos + 2
            if target >= limit or target < HEADER.size:
                raise Malformed(f"compression pointer at offset {pos} to {target} does not point backwards")
            pos = limit = target
            continue
        if kind:
            raise Malformed(f"unsupported label type 0x{kind:02x} at offset {pos}")
        wire_len += length + 1
        if wire_len > 255:
            raise Malformed(f"name at offset {offset} is longer than 255 octets")
        label = buf[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise Malformed(f"label at offset {pos} runs past the end of the message")
        labels.append(_label_text(label))
        pos += 1 + length
    if end < 0:
        end = pos + 1
    return (".".join(labels) if labels else "."), end


def _txt_text(rdata: bytes) -> str:
    parts, pos = [], 0
    while pos < len(rdata):
        length = rdata[pos]
        chunk = rdata[pos + 1 : pos + 1 + length]
        if len(chunk) != length:
            raise Malformed("TXT character-string runs past its RDATA")
        parts.append('"' + "".join(_TXT_ESCAPED[c] for c in chunk) + '"')
        pos += 1 + length
    return " ".join(parts)


def _rdata_text(buf: bytes, rtype: int, start: int, end: int) -> str:
    rdata = buf[start:end]
    if rtype == 1:
        if len(rdata) != 4:
            raise Malformed(f"A record with {len(rdata)}-byte RDATA")
        return socket.inet_ntop(socket.AF_INET, rdata)
    if rtype == 28:
        if len(rdata) != 16:
            raise Malformed(f"AAAA record with {len(rdata)}-byte RDATA")
        return socket.inet_ntop(socket.AF_INET6, rdata)
    if rtype in _NAME_TYPES:
        name, after = _read_name(buf, start)
        if after != end:
            raise Malformed(f"type {rtype} RDATA is not exactly one name")
        return name
    if rtype == 15:
        if len(rdata) < 3:
            raise Malformed("MX RDATA too short")
        name, after = _read_name(buf, start + 2)
        if after != end:
            raise Malformed("MX RDATA is not a preference and one name")
        return f"{(rdata[0] << 8) | rdata[1]} {name}"
    if rtype == 16:
        return _txt_text(rdata)
    if rtype == 6:
        mname, pos = _read_name(buf, start)
        rname, pos = _read_name(buf, pos)
        if pos + 20 != end:
            raise Malformed("SOA RDATA has the wrong length")
        return f"{mname} {rname} " + " ".join(str(v) for v in struct.unpack_from("!5I", buf, pos))
    return rdata.hex()


def _read_records(buf: bytes, pos: int, count: int) -> tuple[tuple[DnsRecord, ...], int]:
    records = []
    size = len(buf)
    for _ in range(count):
        name, pos = _read_name(buf, pos)
        if pos + 10 > size:
            raise Malformed(f"resource record at offset {pos} is truncated")
        rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(buf, pos)
        pos += 10
        end = pos + rdlength
        if end > size:
            raise Malformed(f"RDATA at offset {pos} runs past the end of the message")
        records.append(DnsRecord(name, rtype, rclass, ttl, _rdata_text(buf, rtype, pos, end)))
        pos = end
    return tuple(records), pos


def _edns(record: DnsRecord) -> DnsEdns:
    rdata = bytes.fromhex(record.value)
    options, pos = [], 0
    while pos < len(rdata):
        if pos + 4 > len(rdata):
            raise Malformed("truncated EDNS option header")
        code, length = struct.unpack_from("!HH", rdata, pos)
        data = rdata[pos + 4 : pos + 4 + length]
        if len(data) != length:
            raise Malformed(f"EDNS option {code} runs past the OPT RDATA")
        options.append((code, data))
        pos += 4 + length
    ttl = record.ttl
    return DnsEdns(record.rclass, ttl >> 24, (ttl >> 16) & 0xFF, bool(ttl & 0x8000), tuple(options))


def _check_header(flags: int, qdcount: int, other: int, size: int) -> None:
    """Reject headers no DNS speaker sends (cheap tests that keep random bytes from passing as DNS)."""
    opcode = (flags >> 11) & 0xF
    if opcode not in _ASSIGNED_OPCODES:
        raise NotThisProtocol(f"unassigned DNS opcode {opcode}")
    if not flags & _QR:
        if flags & 0xF:
            raise NotThisProtocol("a DNS query with a non-zero RCODE")
        if qdcount == 0 and opcode != _OPCODE_DSO:
            raise NotThisProtocol("a DNS query without a question")
    if HEADER.size + 5 * qdcount + 11 * other > size:
        raise NotThisProtocol(f"record counts ({qdcount} questions, {other} records) cannot fit in {size} bytes")


def parse_message(data: bytes) -> DnsMessage:
    """Parse one complete DNS message (a UDP payload, or one TCP message without its length prefix)."""
    buf = bytes(data)
    if len(buf) < HEADER.size:
        raise NotThisProtocol(f"{len(buf)} bytes is shorter than a DNS header")
    msg_id, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(buf, 0)
    _check_header(flags, qdcount, ancount + nscount + arcount, len(buf))
    questions, pos = [], HEADER.size
    for _ in range(qdcount):
        name, pos = _read_name(buf, pos)
        if pos + 4 > len(buf):
            raise Malformed(f"question at offset {pos} is truncated")
        qtype, qclass = struct.unpack_from("!HH", buf, pos)
        pos += 4
        questions.append(DnsQuestion(name, qtype, qclass))
    answers, pos = _read_records(buf, pos, ancount)
    authority, pos = _read_records(buf, pos, nscount)
    additional, pos = _read_records(buf, pos, arcount)
    opt = next((r for r in additional if r.rtype == RType.OPT), None)
    return DnsMessage(
        msg_id,
        flags,
        tuple(questions),
        answers,
        authority,
        additional,
        _edns(opt) if opt is not None else None,
        len(buf) - pos,
    )


def parse_tcp_stream(data: bytes) -> tuple[DnsMessage, ...]:
    """Parse the complete length-prefixed messages at the start of a DNS-over-TCP stream (RFC 7766 §8).

    Raises NeedMoreData while the first message is incomplete (after checking what of its header is there), and
    stops quietly before a later incomplete message.
    """
    buf = bytes(data)
    messages: list[DnsMessage] = []
    pos = 0
    while len(buf) - pos >= 2:
        length = (buf[pos] << 8) | buf[pos + 1]
        if length < HEADER.size:
            if messages:
                raise Malformed(f"DNS-over-TCP message of {length} bytes at stream offset {pos}")
            raise NotThisProtocol(f"DNS-over-TCP length prefix {length} is shorter than a header")
        if len(buf) - pos - 2 < length:
            break
        messages.append(parse_message(buf[pos + 2 : pos + 2 + length]))
        pos += 2 + length
    if messages:
        return tuple(messages)
    if len(buf) >= 2 + HEADER.size:
        _, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(buf, 2)
        _check_header(flags, qdcount, ancount + nscount + arcount, (buf[0] << 8) | buf[1])
    raise NeedMoreData(f"first DNS-over-TCP message incomplete ({len(buf)} bytes so far)")


# --------------------------------------------------------------------------------------------------- building


def _name_labels(text: str) -> list[bytes]:
    """Labels of a master-file name (``\\X`` and ``\\DDD`` escapes; trailing dot optional)."""
    if text in ("", "."):
        return []
    labels: list[bytes] = []
    cur = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            digits = text[i + 1 : i + 4]
            if len(digits) == 3 and digits.isdigit():
                if int(digits) > 255:
                    raise ValueError(f"bad escape \\{digits} in {text!r}")
                cur.append(int(digits))
                i += 4
                continue
            if i + 1 >= n:
                raise ValueError(f"dangling backslash in {text!r}")
            c = text[i + 1]
            i += 1
        elif c == ".":
            if not cur:
                raise ValueError(f"empty label in {text!r}")
            labels.append(bytes(cur))
            cur = bytearray()
            i += 1
            if i == n:
                return _checked(labels, text)
            continue
        if ord(c) > 0x7F:
            raise ValueError(f"non-ASCII name {text!r}: pass the IDNA (xn--) form")
        cur.append(ord(c))
        i += 1
    labels.append(bytes(cur))
    return _checked(labels, text)


def _checked(labels: list[bytes], text: str) -> list[bytes]:
    if any(len(label) > 63 for label in labels):
        raise ValueError(f"label longer than 63 octets in {text!r}")
    if sum(len(label) + 1 for label in labels) + 1 > 255:
        raise ValueError(f"name longer than 255 octets: {text!r}")
    return labels


class _Writer:
    """Message buffer with optional name compression (pointers to earlier exact-case suffixes)."""

    def __init__(self, compress: bool) -> None:
        self.buf = bytearray()
        self.compress = compress
        self.suffixes: dict[tuple[bytes, ...], int] = {}

    def name(self, text: str, compressible: bool = True) -> None:
        labels = _name_labels(text)
        for i in range(len(labels)):
            suffix = tuple(labels[i:])
            if self.compress and compressible and suffix in self.suffixes:
                self.buf += struct.pack("!H", 0xC000 | self.suffixes[suffix])
                return
            if len(self.buf) < 0x4000:
                self.suffixes.setdefault(suffix, len(self.buf))
            self.buf.append(len(labels[i]))
            self.buf += labels[i]
        self.buf.append(0)

    def rdata(self, rtype: int, value: str) -> None:
        if rtype in (1, 28):
            try:
                self.buf += socket.inet_pton(socket.AF_INET if rtype == 1 else socket.AF_INET6, value)
            except OSError:
                raise ValueError(f"{value!r} is not an {'A' if rtype == 1 else 'AAAA'} address") from None
        elif rtype in _NAME_TYPES:
            self.name(value)
        elif rtype == 15:
            preference, exchange = value.split(" ", 1)
            self.buf += struct.pack("!H", int(preference))
            self.name(exchange)
        elif rtype == 16:
            for chunk in _txt_strings(value):
                self.buf.append(len(chunk))
                self.buf += chunk
        elif rtype == 6:
            mname, rname, *numbers = value.split(" ")
            self.name(mname)
            self.name(rname)
            try:
                self.buf += struct.pack("!5I", *(int(v) for v in numbers))
            except struct.error:
                raise ValueError(f"bad SOA numbers in {value!r}") from None
        else:
            self.buf += bytes.fromhex(value)

    def record(self, record: DnsRecord) -> None:
        self.name(record.name)
        try:
            self.buf += struct.pack("!HHI", record.rtype, record.rclass, record.ttl)
        except struct.error:
            raise ValueError(f"type/class/TTL out of range in {record}") from None
        length_at = len(self.buf)
        self.buf += b"\0\0"
        self.rdata(record.rtype, record.value)
        rdlength = len(self.buf) - length_at - 2
        if rdlength > 0xFFFF:
            raise ValueError(f"RDATA of {record.name} longer than 65535 bytes")
        struct.pack_into("!H", self.buf, length_at, rdlength)


def _txt_strings(text: str) -> list[bytes]:
    """Character-strings of a TXT text form: ``"quoted" "strings"`` (escapes as rendered) or bare words."""
    out: list[bytes] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == " ":
            i += 1
            continue
        quoted = text[i] == '"'
        i += quoted
        cur = bytearray()
        while i < n and (text[i] != '"' if quoted else text[i] != " "):
            c = text[i]
            if c == "\\":
                digits = text[i + 1 : i + 4]
                if len(digits) == 3 and digits.isdigit():
                    cur.append(int(digits))
                    i += 4
                    continue
                if i + 1 >= n:
                    raise ValueError(f"dangling backslash in TXT {text!r}")
                c = text[i + 1]
                i += 1
            cur += c.encode("utf-8")
            i += 1
        if quoted:
            if i >= n:
                raise ValueError(f"unterminated quote in TXT {text!r}")
            i += 1
        if len(cur) > 255:
            raise ValueError("TXT character-string longer than 255 bytes")
        out.append(bytes(cur))
    return out


def encode_message(message: DnsMessage, compress: bool = True) -> bytes:
    """Wire form of ``message`` (its ``edns`` and ``trailing`` fields are ignored; OPT lives in ``additional``)."""
    writer = _Writer(compress)
    writer.buf += HEADER.pack(
        message.id,
        message.flags,
        len(message.questions),
        len(message.answers),
        len(message.authority),
        len(message.additional),
    )
    for question in message.questions:
        writer.name(question.name)
        writer.buf += struct.pack("!HH", question.qtype, question.qclass)
    for section in (message.answers, message.authority, message.additional):
        for record in section:
            writer.record(record)
    if len(writer.buf) > 0xFFFF:
        raise ValueError("DNS message longer than 65535 bytes")
    return bytes(writer.buf)


def build_query(
    name: str,
    qtype: int = RType.A,
    id: int = 0,
    *,
    qclass: int = 1,
    flags: int = _RD,
    edns_udp_size: int | None = None,
    compress: bool = True,
) -> bytes:
    """A query for ``name`` (case kept as given), with an EDNS(0) OPT record when ``edns_udp_size`` is set."""
    additional: tuple[DnsRecord, ...] = ()
    if edns_udp_size is not None:
        additional = (DnsRecord(".", RType.OPT, edns_udp_size, 0, ""),)
    return encode_message(DnsMessage(id, flags, (DnsQuestion(name, qtype, qclass),), additional=additional), compress)


def build_response(
    query: DnsMessage | bytes,
    answers: Iterable[str | DnsRecord] = (),
    ttl: int = 60,
    flags: int | None = None,
    *,
    rcode: int = 0,
    compress: bool = True,
    authority: Sequence[DnsRecord] = (),
    additional: Sequence[DnsRecord] = (),
) -> bytes:
    """A response to ``query`` that echoes its id and questions (0x20 case kept), e.g. a censor's forged answer.

    ``answers``: a text value (record of the first question's name, type and class with ``ttl``) or a full
    DnsRecord. ``flags`` default: QR, the query's opcode and RD, RA, and ``rcode``; pass ``flags`` to set every bit
    yourself (injectors differ in AA/RA, see Anonymous et al., "Triplet Censors", FOCI 2020). ``compress``
    chooses pointer compression of repeated names (RFC 1035 §4.1.4), another injector fingerprint.
    """
    if not isinstance(query, DnsMessage):
        query = parse_message(query)
    if not query.questions:
        raise ValueError("cannot answer a query without a question")
    first = query.questions[0]
    records = tuple(
        a if isinstance(a, DnsRecord) else DnsRecord(first.name, first.qtype, first.qclass, ttl, a) for a in answers
    )
    if flags is None:
        flags = _QR | (query.flags & (0x7800 | _RD)) | _RA | (rcode & 0xF)
    return encode_message(
        DnsMessage(query.id, flags, query.questions, records, tuple(authority), tuple(additional)), compress
    )
