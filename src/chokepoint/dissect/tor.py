"""Tor identified by its TLS ClientHello (the link handshake to a relay or bridge without a transport).

What Tor sends (tor source, ``tor_tls_new`` in src/lib/tls/tortls_openssl.c and tortls_nss.c): the SNI is
``crypto_random_hostname(4, 25, "www.", ".com")`` - "www." + 4..25 random base32 characters
(alphabet ``a-z2-7``) + ".com" - and no ALPN extension is ever offered.  Older clients (the "v2 link
handshake", ~2011-2016) also sent a fixed cipher list copied from Firefox that contains the NSS-only suite
0xFEFF (SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA); that list is how the GFW singled out Tor in 2011-2012
(Winter & Lindskog, "How the Great Firewall of China is Blocking Tor", FOCI 2012).

nDPI (protocols/tls.c, 2024) marks a TLS flow as Tor when its SNI starts with "www.", ends in ".com"/".net"
and its DGA/bigram scorer finds the name random; older nDPI (protocols/tor.c ``ndpi_is_tls_tor``) applied
the same bigram test to the certificate name.  That scorer misses many Tor names (see tests).

Our rule, all three needed:
 1. SNI matches ``www.<label>.com`` with ``label`` of 4..25 characters from the base32 alphabet only
    (no 0, 1, 8, 9, '-', or a second label);
 2. no ALPN extension (every mainstream browser and HTTP library offers one; Tor never does);
 3. the label looks random rather than like a word: it contains one of the base32 digits 2-7, or it has
    at least 8 letters of which at most a quarter are vowels (about 16% in random base32, ~38% in English),
    or the hello offers Tor's legacy suite 0xFEFF.
A random Tor label fails (3) mostly when it is short (4-7 characters) and digit-free: 7% of names in a
4000-name simulation of tor's generator.  That is the price of not flagging ``www.<word>.com`` hellos of
ALPN-less clients (a digit-free English word of 8+ letters with <= 25% vowels, e.g. "strengths", would
still be flagged).
Pluggable transports (obfs4, meek, Snowflake) do not send this hello and are not covered here.
"""

from __future__ import annotations

import re

from chokepoint.dissect.tls import EXT_ALPN, ClientHello

_TOR_SNI = re.compile(r"www\.([a-z2-7]{4,25})\.com")
_VOWELS = frozenset("aeiou")
#: SSL_RSA_FIPS_WITH_3DES_EDE_CBC_SHA: NSS-only, part of Tor's pre-2016 Firefox-mimicking cipher list.
LEGACY_TOR_SUITE = 0xFEFF


def _random_label_reason(label: str, ch: ClientHello) -> str | None:
    digits = sum(c.isdigit() for c in label)
    if digits:
        return f"{digits} base32 digit(s)"
    if len(label) >= 8:
        vowels = sum(c in _VOWELS for c in label)
        if vowels * 4 <= len(label):
            return f"{vowels} vowel(s) in {len(label)} letters"
    if LEGACY_TOR_SUITE in ch.cipher_suites:
        return "legacy Tor cipher list (0xfeff)"
    return None


def tor_evidence(ch: ClientHello) -> str | None:
    """A reason string when ``ch`` looks like Tor's link-handshake ClientHello, else None."""
    if ch.sni is None or ch.alpn or EXT_ALPN in ch.extension_types:
        return None
    match = _TOR_SNI.fullmatch(ch.sni)
    if match is None:
        return None
    why = _random_label_reason(match.group(1), ch)
    if why is None:
        return None
    return f"Tor-style random SNI {ch.sni!r} ({why}) without ALPN"
