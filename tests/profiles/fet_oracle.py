"""An oracle for the GFW's fully-encrypted-traffic test, written from the paper's description alone.

Wu et al., "How the Great Firewall of China Detects and Blocks Fully Encrypted Traffic", USENIX Security
2023, Algorithm 1 (as described in section 4 and the artifact's README): the GFW exempts a connection when
its first data packet ``pkt`` satisfies any of

- Ex1: popcount(pkt) / len(pkt) <= 3.4 or >= 4.6 (average set bits per byte);
- Ex2: the first 6 bytes are printable ASCII, [0x20, 0x7e];
- Ex3: more than 50% of the bytes are printable;
- Ex4: more than 20 contiguous bytes are printable;
- Ex5: the packet starts like TLS (first byte 0x16 or 0x17, second 0x03, third 0x00-0x0f) or HTTP
  ("GET ", "PUT ", "POST ", "HEAD ");

and blocks it otherwise. Deliberately plain: one pass over the bytes in a Python loop, floats for the
average as the paper writes it, nothing shared with ``chokepoint.dissect.fet``.
"""

from __future__ import annotations

SET_BITS = [bin(value).count("1") for value in range(256)]
HTTP_STARTS = (b"GET ", b"PUT ", b"POST ", b"HEAD ")


def is_printable(byte: int) -> bool:
    return 0x20 <= byte <= 0x7E


def exemptions(pkt: bytes) -> tuple[str, ...]:
    """The exemptions that apply to ``pkt``, in order Ex1..Ex5 (empty: the GFW would block it)."""
    if len(pkt) == 0:
        raise ValueError("the test needs a data packet")
    ones = 0
    printable = 0
    run = 0
    longest_run = 0
    leading_printable = 0
    still_leading = True
    for byte in pkt:
        ones += SET_BITS[byte]
        if is_printable(byte):
            printable += 1
            run += 1
            if run > longest_run:
                longest_run = run
            if still_leading:
                leading_printable += 1
        else:
            run = 0
            still_leading = False
    average = ones / len(pkt)
    found = []
    if average <= 3.4 or average >= 4.6:
        found.append("ex1")
    if leading_printable >= 6:
        found.append("ex2")
    if printable > len(pkt) / 2:
        found.append("ex3")
    if longest_run > 20:
        found.append("ex4")
    looks_tls = len(pkt) >= 3 and pkt[0] in (0x16, 0x17) and pkt[1] == 0x03 and 0x00 <= pkt[2] <= 0x0F
    looks_http = any(pkt.startswith(start) for start in HTTP_STARTS)
    if looks_tls or looks_http:
        found.append("ex5")
    return tuple(found)


def blocked(pkt: bytes) -> bool:
    """Algorithm 1's verdict: no exemption applies."""
    return not exemptions(pkt)
