"""SSH identification string ("banner"), RFC 4253 §4.2: ``SSH-protoversion-softwareversion[ SP comments]CR LF``.

* At most 255 characters including CR LF, no NUL (RFC 4253 §4.2); a bare LF is accepted as the end of line, as
  OpenSSH does for old peers.
* Only a server may send other lines before its identification string (RFC 4253 §4.2); a client's stream must
  start with ``SSH-``. Pre-banner lines are bounded like OpenSSH's client does (1024 lines, 8 KiB each) and must
  be text, so random bytes on a server stream are rejected instead of waited on forever.
* ``softwareversion`` should contain no ``-`` but real servers send ``SSH-2.0-APACHE-SSHD-2.5.0``: everything
  after ``SSH-protoversion-`` up to the first space is the software version.
* ``proto_version`` is ``2.0`` or ``1.99`` (RFC 4253 §5.1, a server also speaking SSH 1) or an SSH-1 ``1.x``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol

__all__ = ["SshBanner", "parse_banner"]

MAX_BANNER = 255  # RFC 4253 §4.2, including CR LF
MAX_PRE_BANNER_LINES = 1024  # OpenSSH kex_exchange_identification()
MAX_PRE_BANNER_LINE = 8192
_PROTO = re.compile(rb"\d+\.\d+\Z")
_PARTIAL_PROTO = re.compile(rb"\d+(\.\d*)?\Z")
_BAD_BANNER_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_BAD_TEXT_BYTE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class SshBanner:
    proto_version: str  # "2.0", "1.99", "1.5"
    software_version: str  # "OpenSSH_9.6p1"
    comments: str | None  # text after the first space, e.g. "Ubuntu-3ubuntu13"
    raw: str  # the whole identification line without CR LF
    end: int = 0  # offset in ``data`` just after the line's LF (where binary packets start)

    @property
    def supports_v2(self) -> bool:
        return self.proto_version in ("2.0", "1.99")


def parse_banner(data: bytes, *, server: bool = False) -> SshBanner:
    """Parse the SSH identification string at the start of a stream (``server=True`` for server-to-client)."""
    data = bytes(data)
    pos, lines = 0, 0
    while True:
        head = data[pos : pos + 4]
        if head == b"SSH-":
            return _banner(data, pos)
        if len(head) < 4 and b"SSH-".startswith(head):
            raise NeedMoreData("SSH identification string incomplete")
        if not server:
            raise NotThisProtocol("client stream does not start with SSH-")
        lf = data.find(b"\n", pos)
        line = data[pos : lf if lf >= 0 else len(data)]
        if _BAD_TEXT_BYTE.search(line) or len(line) > MAX_PRE_BANNER_LINE:
            raise NotThisProtocol("pre-banner line is not a text line")
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            if lf >= 0 or len(data) - pos > 3:  # a cut-off multi-byte character is allowed at the very end
                raise NotThisProtocol("pre-banner line is not UTF-8") from None
        if lf < 0:
            raise NeedMoreData("pre-banner line incomplete")
        lines += 1
        if lines > MAX_PRE_BANNER_LINES:
            raise NotThisProtocol(f"more than {MAX_PRE_BANNER_LINES} lines before an SSH banner")
        pos = lf + 1


def _banner(data: bytes, pos: int) -> SshBanner:
    lf = data.find(b"\n", pos, pos + MAX_BANNER)
    line = data[pos : lf if lf >= 0 else pos + MAX_BANNER]
    if lf >= 0 and line.endswith(b"\r"):
        line = line[:-1]
    bad = _BAD_BANNER_BYTE.search(line)
    if bad and not (lf < 0 and bad.start() == len(line) - 1 and line.endswith(b"\r")):
        raise Malformed(f"control byte 0x{line[bad.start()]:02x} in SSH identification string")
    proto, dash, rest = line[4:].partition(b"-")
    if lf < 0:
        if len(data) - pos >= MAX_BANNER:
            raise Malformed(f"SSH identification string longer than {MAX_BANNER} bytes")
        if not (_PROTO.match(proto) if dash else (not proto or _PARTIAL_PROTO.match(proto))):
            raise Malformed(f"bad SSH protocol version {proto[:12]!r}")
        raise NeedMoreData("SSH identification string incomplete")
    software, space, comments = rest.partition(b" ")
    if not dash or not _PROTO.match(proto):
        raise Malformed(f"bad SSH protocol version {proto[:12]!r}")
    if not software:
        raise Malformed("SSH identification string without a software version")
    return SshBanner(
        proto_version=proto.decode("ascii"),
        software_version=software.decode("latin-1"),
        comments=comments.decode("latin-1") if space else None,
        raw=line.decode("latin-1"),
        end=lf + 1,
    )
