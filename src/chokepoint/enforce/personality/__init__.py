"""Personalities: how a censor acts on the wire once a rule has decided (the injector's fingerprint).

A rule says *what* (``reset``, ``dns-forge``, ...); the profile's ``personality:`` section says *how*: RST flags,
count and targets, the TTL / IP ID / DF / window of injected packets, the forged DNS answer's flags and TTL,
the blockpage, throttling rate, ICMP code and residual blocking. Rule params override it per verdict
(:func:`effective`). Everything here is a frozen value; the generators' state lives in
:class:`chokepoint.enforce.craft.Stamper`.

Documented injector fingerprints the presets encode (sources in ``PRESET_CITES``):

* GFW types I/II/III and the Henan firewall: Wu, Zohaib, Durumeric, Houmansadr, Wustrow, "A Wall Behind A Wall:
  Emerging Regional Censorship in China", IEEE S&P 2025, table ``fingerprint``.
* The TSG (Geedge) injector: geedge.report "Remote Fingerprints & Deployments" (USENIX Security 2026 companion):
  1-3 RST or RST+ACK (default one RST+ACK), DF hard-coded, IP ID/window from a seeded generator with
  ``seed_key`` k = 13, ``seed_max_val`` M = 65535, reduced to ``win = val + (dip mod k)``,
  ``ipid = M - val*k + (sip mod win)``; TTL 48-247; DNS answers with flags 0x8180 and a compressed answer name.
* Sandvine PacketLogic: IP ID 13330 and window 32120 on every injected packet, the 307 redirect sent with FIN+ACK
  (Citizen Lab "Bad Traffic" pcaps, see measurement-anchors.md).

UNVERIFIED in the TSG generator: how ``val`` is drawn (the leak analysis gives only the reduced formula). It is a
labelled knob, ``tsg: {val: [lo, hi]}``, uniform over [1, M // k] by default: the widest range that keeps
``ipid`` within 16 bits, consistent with GFW type II's observed IP IDs 0x00A3-0xFE5F. Also unverified: which
addresses ``sip``/``dip`` are (taken here as the flow's client and server) and how TTL derives from ``val``
(drawn independently from its range here).
"""

from __future__ import annotations

from chokepoint.enforce.personality.model import (
    DEFAULT,
    RE_BIT,
    RESIDUAL_SCOPES,
    BlockpageStyle,
    DelayStyle,
    DnsStyle,
    Field16,
    IcmpStyle,
    IpStyle,
    ParallelInjector,
    Personality,
    ResetStyle,
    ResidualStyle,
    ThrottleStyle,
    TsgSeed,
    Ttl,
    fits_fragments,
)
from chokepoint.enforce.personality.override import effective
from chokepoint.enforce.personality.parse import parse_personality, preset
from chokepoint.enforce.personality.presets import PRESET_CITES, PRESETS

__all__ = [
    "Field16",
    "Ttl",
    "TsgSeed",
    "IpStyle",
    "ResetStyle",
    "DnsStyle",
    "BlockpageStyle",
    "ThrottleStyle",
    "DelayStyle",
    "IcmpStyle",
    "ResidualStyle",
    "ParallelInjector",
    "Personality",
    "DEFAULT",
    "PRESETS",
    "PRESET_CITES",
    "RESIDUAL_SCOPES",
    "RE_BIT",
    "fits_fragments",
    "parse_personality",
    "preset",
    "effective",
]
