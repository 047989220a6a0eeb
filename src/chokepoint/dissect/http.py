"""HTTP/1.x requests (incl. CONNECT and proxy absolute-form) and response heads.

Grammar: RFC 9112 §3 (request line, request-target forms), §4 (status line), §5 (field lines), §2.2 (a bare LF
ends a line too); methods: RFC 9110 §9 plus PATCH (RFC 5789) and the common WebDAV ones (RFC 4918, RFC 3253
REPORT, RFC 5323 SEARCH, RFC 4791 MKCALENDAR). Methods are case-sensitive; an unknown method is NotThisProtocol.

Deliberately tolerant where censors and servers are (what a middlebox sees, not what a strict server accepts):
several spaces between request-line parts, whitespace before a field's colon, obsolete line folding (joined with
one space). Strict where random bytes would otherwise pass: known method, ``HTTP/d.d`` version, control bytes in
the target, a field line without a colon.

Text: header names/values, ``target``, ``path`` and ``query`` are the raw bytes as ISO-8859-1 (lossless).
``path_decoded`` / ``query_decoded`` are percent-decoded (``+`` is a space in the query only, as in HTML form
encoding), then read as UTF-8, else GB18030, else ISO-8859-1. Rambert et al., "Chinese Wall or Swiss Cheese?
Keyword filtering in the Great Firewall of China" (WWW 2021) report that the GFW matches keywords in the
%-decoded path in both UTF-8 and GB18030. ``host`` is read the same way, lowercased, port removed, trailing dot
kept as sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol

__all__ = ["METHODS", "HttpRequest", "HttpResponse", "parse_request", "parse_response", "looks_like_request"]

METHODS = frozenset(
    {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "CONNECT",
        "OPTIONS",
        "TRACE",  # RFC 9110 §9
        "PATCH",  # RFC 5789
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",  # RFC 4918 (WebDAV)
        "REPORT",
        "SEARCH",
        "MKCALENDAR",  # RFC 3253, 5323, 4791
    }
)
_METHOD_BYTES = frozenset(m.encode() for m in METHODS)
_METHOD_STARTS = tuple(m.encode() + b" " for m in METHODS)
_LONGEST_METHOD = max(len(m) for m in METHODS)
_VERSION = re.compile(rb"HTTP/\d\.\d\Z")
_STATUS = re.compile(rb"(HTTP/\d\.\d) +([1-5]\d{2})(?: (.*))?\Z", re.S)  # RFC 9110 §15: 100-599
_CONTROL = re.compile(rb"[\x00-\x20\x7f]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)\Z", re.S)
_TARGET_START = frozenset(b"/*[") | frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str  # request-target as sent
    path: str  # raw path ("" for CONNECT)
    query: str | None  # raw query without "?", None when absent
    path_decoded: str
    query_decoded: str | None
    version: str  # "HTTP/1.1"; "" when the request line is still incomplete (partial)
    host: str | None  # lowercase, port stripped: from the target's authority, else the Host field
    port: int | None  # port written in that authority / Host field, None when not written
    user_agent: str | None
    headers: tuple[tuple[str, str], ...]
    complete: bool  # the header section ended (empty line seen)
    is_connect: bool
    header_length: int = 0  # bytes up to and including the empty line (0 while incomplete)

    def header(self, name: str) -> str | None:
        """Value of the first field called ``name`` (case-insensitive), or None."""
        return _field(self.headers, name)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body_prefix: bytes  # whatever body bytes followed the head in ``data``

    def header(self, name: str) -> str | None:
        return _field(self.headers, name)


def _field(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def _text(raw: bytes) -> str:
    """UTF-8, else GB18030, else ISO-8859-1 (which always succeeds)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unquote(raw: bytes, plus_is_space: bool) -> str:
    if plus_is_space:
        raw = raw.replace(b"+", b" ")
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return _text(raw)


def looks_like_request(prefix: bytes) -> bool:
    """Fast check: ``prefix`` starts with a known method, one or more spaces and (if present) a plausible target.

    False for a prefix too short to show ``METHOD<SP>`` (use parse_request for "need more data" answers).
    """
    if not prefix.startswith(_METHOD_STARTS):
        return False
    pos = prefix.index(b" ")
    while pos < len(prefix) and prefix[pos] == 0x20:
        pos += 1
    return pos == len(prefix) or prefix[pos] in _TARGET_START


def _split_authority(raw: bytes) -> tuple[str | None, int | None]:
    """(host, port) of ``[userinfo@]host[:port]``; a non-numeric port is dropped, the host kept."""
    raw = raw.rpartition(b"@")[2]
    port: int | None = None
    if raw.startswith(b"["):
        end = raw.find(b"]")
        host, rest = (raw[1:end], raw[end + 1 :]) if end > 0 else (raw[1:], b"")
        digits = rest[1:] if rest.startswith(b":") else b""
    else:
        host, sep, digits = raw.rpartition(b":")
        if not sep:
            host, digits = raw, b""
    if digits.isdigit() and int(digits) <= 0xFFFF:
        port = int(digits)
    text = _text(host).strip().lower()
    return (text or None), port


def _head_end(data: bytes) -> int:
    """Offset just after the empty line ending the head (LF or CRLF line ends), -1 if not there yet."""
    best = -1
    for sep in (b"\n\r\n", b"\n\n"):
        at = data.find(sep)
        if at >= 0 and (best < 0 or at + len(sep) < best):
            best = at + len(sep)
    return best


def _fields(lines: list[bytes], last_incomplete: bytes | None) -> tuple[tuple[str, str], ...]:
    fields: list[list[str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise Malformed("header section starts with a folded line")
            fields[-1][1] = (fields[-1][1] + " " + line.strip(b" \t").decode("latin-1")).strip()
            continue
        name, colon, value = line.partition(b":")
        name = name.rstrip(b" \t")
        if not colon or not _TOKEN.match(name):
            raise Malformed(f"bad header line {line[:40]!r}")
        fields.append([name.decode("latin-1"), value.strip(b" \t").decode("latin-1")])
    if last_incomplete is not None:
        name, colon, value = last_incomplete.partition(b":")
        name = name.rstrip(b" \t")
        if colon and _TOKEN.match(name):
            fields.append([name.decode("latin-1"), value.lstrip(b" \t").decode("latin-1")])
    return tuple((name, value) for name, value in fields)


def _lines(head: bytes) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]


def _method(data: bytes) -> str:
    space = data.find(b" ", 0, _LONGEST_METHOD + 1)
    if space < 0:
        if len(data) <= _LONGEST_METHOD and any(start.startswith(data) for start in _METHOD_STARTS):
            raise NeedMoreData("request method incomplete")
        raise NotThisProtocol("no HTTP method at the start")
    if data[:space] not in _METHOD_BYTES:
        raise NotThisProtocol(f"unknown method {data[:space][:12]!r}")
    return data[:space].decode("ascii")


def parse_request(data: bytes, partial: bool = False) -> HttpRequest:
    """Parse the HTTP/1.x request at the start of a client-to-server stream.

    While the head is incomplete: NeedMoreData (after rejecting what is already wrong), or with ``partial=True``
    whatever is there so far, ``complete=False``: a cut-off target or last field line is reported as far as it
    goes (e.g. ``User-Agent: Mozil``, or ``Host: www.goo``), as a censor matching on one packet would see it.
    """
    data = bytes(data)
    method = _method(data)
    end = _head_end(data)
    if end >= 0:
        lines = _lines(data[:end])[:-2]
        target, version = _request_line(lines[0], whole=True)
        return _request(method, target, version, _fields(lines[1:], None), True, end, True)
    lines = _lines(data)
    tail = lines.pop()  # the last, not yet LF-terminated line
    if not lines:  # the request line itself is incomplete
        target, _ = _request_line(tail, whole=False)
        if not partial:
            raise NeedMoreData("HTTP request line incomplete")
        return _request(method, target, b"", (), False, 0, False)
    target, version = _request_line(lines[0], whole=True)
    headers = _fields(lines[1:], tail if partial else None)
    if not partial:
        raise NeedMoreData("HTTP request head incomplete")
    return _request(method, target, version, headers, False, 0, True)


def _version_prefix(version: bytes) -> bool:
    return len(version) <= 8 and all(c == t or (t == 0x23 and 0x30 <= c <= 0x39) for c, t in zip(version, b"HTTP/#.#"))


def _request_line(line: bytes, whole: bool) -> tuple[bytes, bytes]:
    """(target, version) of a request line; ``whole=False`` while the line may still be cut short."""
    rest = line[line.index(b" ") :].lstrip(b" ")
    target, _, version = rest.partition(b" ")
    version = version.strip(b" ")
    if whole:
        if not target:
            raise Malformed("request line without a target")
        if not _VERSION.match(version):
            raise Malformed(f"bad HTTP version {version[:16]!r}")
    elif not _version_prefix(version):
        raise Malformed(f"bad HTTP version {version[:16]!r}")
    if _CONTROL.search(target):
        raise Malformed("control byte in the request target")
    if target and target[0] not in _TARGET_START:
        raise Malformed(f"implausible request target {target[:16]!r}")
    return target, version


def _request(
    method: str,
    target: bytes,
    version: bytes,
    headers: tuple[tuple[str, str], ...],
    complete: bool,
    header_length: int,
    whole_line: bool,
) -> HttpRequest:
    is_connect = method == "CONNECT"
    host: str | None = None
    port: int | None = None
    raw_path, raw_query = b"", None
    from_target = False
    if is_connect:
        host, port = _split_authority(target)
        if whole_line and (host is None or port is None):
            raise Malformed(f"CONNECT target {target[:40]!r} is not host:port")
        from_target = True
    elif target.startswith(b"/") or target == b"*":
        raw_path, _, raw_query = target.partition(b"?")
        raw_query = raw_query if b"?" in target else None
    else:
        absolute = _ABSOLUTE.match(target)
        if absolute is None:
            if whole_line:
                raise Malformed(f"request target {target[:40]!r} is in no known form")
        else:
            host, port = _split_authority(absolute.group(2))
            from_target = True
            rest = absolute.group(3)
            raw_path, _, raw_query = rest.partition(b"?")
            raw_query = raw_query if b"?" in rest else None
            raw_path = raw_path or b"/"
    if not from_target:
        host_field = _field(headers, "host")
        if host_field is not None:
            host, port = _split_authority(host_field.encode("latin-1"))
    return HttpRequest(
        method=method,
        target=target.decode("latin-1"),
        path=raw_path.decode("latin-1"),
        query=raw_query.decode("latin-1") if raw_query is not None else None,
        path_decoded=_unquote(raw_path, plus_is_space=False),
        query_decoded=_unquote(raw_query, plus_is_space=True) if raw_query is not None else None,
        version=version.decode("ascii"),
        host=host,
        port=port,
        user_agent=_field(headers, "user-agent"),
        headers=headers,
        complete=complete,
        is_connect=is_connect,
        header_length=header_length,
    )


def parse_response(data: bytes) -> HttpResponse:
    """Parse an HTTP/1.x response head (status line and fields); NeedMoreData until the empty line arrives."""
    data = bytes(data)
    if not data.startswith(b"HTTP/"):
        if b"HTTP/".startswith(data):
            raise NeedMoreData("response start incomplete")
        raise NotThisProtocol("does not start with HTTP/")
    first_lf = data.find(b"\n")
    if first_lf < 0:
        raise NeedMoreData("HTTP status line incomplete")
    status_line = data[:first_lf]
    status = _STATUS.match(status_line[:-1] if status_line.endswith(b"\r") else status_line)
    if status is None:
        raise Malformed(f"bad status line {status_line[:40]!r}")
    end = _head_end(data)
    if end < 0:
        raise NeedMoreData("HTTP response head incomplete")
    lines = _lines(data[:end])[:-2]
    return HttpResponse(
        version=status.group(1).decode("ascii"),
        status=int(status.group(2)),
        reason=(status.group(3) or b"").decode("latin-1"),
        headers=_fields(lines[1:], None),
        body_prefix=data[end:],
    )
