"""The GFW's fully-encrypted-traffic (FET) test on the first data packet of a TCP connection.

Wu, Sippe, Sivakumar, Burg, Anderson, Wang, Bock, Houmansadr, Levin, Wustrow, "How the Great Firewall of
China Detects and Blocks Fully Encrypted Traffic", USENIX Security 2023, Algorithm 1, as implemented by
the artifact's ``artifacts/utils/detect.py``. A first client payload ``pkt`` is *exempt* (not treated as
fully encrypted) when any of these holds, "printable" meaning a byte in [0x20, 0x7e]:

- Ex1: popcount(pkt)/len(pkt) <= 3.4 or >= 4.6 (average set bits per byte; both bounds inclusive);
- Ex2: the first 6 bytes are printable;
- Ex3: more than 50% of the bytes are printable;
- Ex4: more than 20 contiguous bytes are printable;
- Ex5: the start matches a TLS or HTTP fingerprint (:class:`Ex5Fingerprint`, below).

Anything not exempt is fully encrypted (``exempted = n>=6 or l>20 or p<=3.4 or p>=4.6 or f>0.5 or pf``).
Thresholds are compared exactly (integer cross-multiplication, no float rounding).

Ex5 is ambiguous across implementations, so it is a named knob (:data:`VARIANTS`):

- ``PAPER`` (default, the artifact's ``detect.py``): TLS = byte0 in {0x16, 0x17}, byte1 = 0x03,
  byte2 in 0x00..0x0f; HTTP = ``"GET "``, ``"PUT "``, ``"POST "``, ``"HEAD "``.
- ``OPENGFW`` (apernet/OpenGFW ``analyzer/tcp/fet.go``): TLS = 0x16 0x03 0x00..0x03; HTTP = the 3-byte
  prefixes GET HEA POS PUT DEL CON OPT TRA PAT.
- ``CENSORLAB`` (SPIN-UMass/censorlab, per the project's research notes): TLS byte0 in 0x15..0x17; the
  remaining bytes and the HTTP prefixes are taken as in ``PAPER`` (not verified against its source).
  CensorLab also skips ports 80/443; port exemptions belong to the policy, not to this test.

An empty payload is not fully encrypted and has no exemption (the paper's test needs a data packet;
``detect.py`` would divide by zero). Which packet to test (the first client data packet), probabilistic
blocking and residual blocking are the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Ex5Fingerprint",
    "FetVariant",
    "FetResult",
    "PAPER",
    "OPENGFW",
    "CENSORLAB",
    "VARIANTS",
    "classify_first_packet",
]

_PRINTABLE_MARK = ord("P")
#: Maps each byte to b"P" (printable) or b" " so one translate() feeds count/find/substring search in C.
_CLASSIFY = bytes(_PRINTABLE_MARK if 0x20 <= b <= 0x7E else 0x20 for b in range(256))
_OTHER = b" "
_RUN = b"P"


@dataclass(frozen=True, slots=True)
class Ex5Fingerprint:
    """The protocol-fingerprint exemption (Ex5): TLS record header ranges and HTTP method prefixes."""

    name: str
    tls_first_bytes: frozenset[int]
    tls_second_byte: int
    tls_third_bytes: frozenset[int]
    http_prefixes: tuple[bytes, ...]

    def match(self, payload: bytes) -> bytes | None:
        """The fingerprint the payload starts with, or None."""
        if (
            len(payload) >= 3
            and payload[0] in self.tls_first_bytes
            and payload[1] == self.tls_second_byte
            and payload[2] in self.tls_third_bytes
        ):
            return bytes(payload[:3])
        for prefix in self.http_prefixes:
            if payload.startswith(prefix):
                return prefix
        return None


@dataclass(frozen=True, slots=True)
class FetVariant:
    """One parameterisation of the FET test. Fractions keep the thresholds exact."""

    name: str
    ex5: Ex5Fingerprint
    popcount_low: Fraction = Fraction(17, 5)  # Ex1: exempt when <= 3.4
    popcount_high: Fraction = Fraction(23, 5)  # Ex1: exempt when >= 4.6
    printable_prefix: int = 6  # Ex2: exempt when the first N bytes are printable
    printable_fraction: Fraction = Fraction(1, 2)  # Ex3: exempt when strictly more
    printable_run: int = 20  # Ex4: exempt when a run is strictly longer


_PAPER_HTTP = (b"GET ", b"PUT ", b"POST ", b"HEAD ")

PAPER = FetVariant(
    "paper",
    Ex5Fingerprint("paper", frozenset({0x16, 0x17}), 0x03, frozenset(range(0x00, 0x10)), _PAPER_HTTP),
)
OPENGFW = FetVariant(
    "opengfw",
    Ex5Fingerprint(
        "opengfw",
        frozenset({0x16}),
        0x03,
        frozenset(range(0x00, 0x04)),
        (b"GET", b"HEA", b"POS", b"PUT", b"DEL", b"CON", b"OPT", b"TRA", b"PAT"),
    ),
)
CENSORLAB = FetVariant(
    "censorlab",
    Ex5Fingerprint("censorlab", frozenset({0x15, 0x16, 0x17}), 0x03, frozenset(range(0x00, 0x10)), _PAPER_HTTP),
)
VARIANTS: dict[str, FetVariant] = {v.name: v for v in (PAPER, OPENGFW, CENSORLAB)}


@dataclass(frozen=True, slots=True)
class FetResult:
    """Outcome of the FET test. ``exemption`` is the first exemption that applies ("ex1".."ex5"),
    ``exemptions`` all of them; ``fully_encrypted`` is True exactly when none applies (and the payload
    is not empty). ``ex5_match`` is the matched fingerprint bytes."""

    fully_encrypted: bool
    exemption: str | None
    popcount_per_byte: float
    printable_fraction: float
    printable_prefix: int
    longest_printable_run: int
    exemptions: tuple[str, ...] = ()
    ex5_match: bytes | None = None


def _longest_run(marks: bytes, known: int) -> int:
    """Length of the longest run of b"P" in ``marks``, given one of length ``known`` exists.

    Exponential then binary search on substring tests: O(n log L) in C, no per-byte Python loop.
    """
    n = len(marks)
    if known == n:
        return n
    low, probe = known, max(2 * known, 1)
    while probe <= n and _RUN * probe in marks:
        low, probe = probe, 2 * probe
    high = min(probe - 1, n)
    while low < high:
        middle = (low + high + 1) // 2
        if _RUN * middle in marks:
            low = middle
        else:
            high = middle - 1
    return low


def classify_first_packet(payload: bytes, *, variant: FetVariant = PAPER) -> FetResult:
    """Apply Ex1-Ex5 to the first data packet of a connection (one C-level pass per statistic)."""
    data = bytes(payload)
    n = len(data)
    if not n:
        return FetResult(False, None, 0.0, 0.0, 0, 0)
    ones = int.from_bytes(data, "big").bit_count()
    marks = data.translate(_CLASSIFY)
    printable = marks.count(_PRINTABLE_MARK)
    prefix = marks.find(_OTHER)
    if prefix < 0:
        prefix = n
    longest = _longest_run(marks, prefix)

    low, high, frac = variant.popcount_low, variant.popcount_high, variant.printable_fraction
    exemptions = []
    if ones * low.denominator <= low.numerator * n or ones * high.denominator >= high.numerator * n:
        exemptions.append("ex1")
    if prefix >= variant.printable_prefix:
        exemptions.append("ex2")
    if printable * frac.denominator > frac.numerator * n:
        exemptions.append("ex3")
    if longest > variant.printable_run:
        exemptions.append("ex4")
    matched = variant.ex5.match(data)
    if matched is not None:
        exemptions.append("ex5")
    return FetResult(
        fully_encrypted=not exemptions,
        exemption=exemptions[0] if exemptions else None,
        popcount_per_byte=ones / n,
        printable_fraction=printable / n,
        printable_prefix=prefix,
        longest_printable_run=longest,
        exemptions=tuple(exemptions),
        ex5_match=matched,
    )
