"""The bundled personality presets as profile-format data, and the sources each encodes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESETS: Mapping[str, Mapping[str, Any]] = {
    "linux": {},
    "gfw-type-i": {
        "reset": {"flags": "R", "count": 1, "targets": "both", "df": False, "ip_id": 0, "ttl": [55, 118]},
        "residual": {"scope": "3-tuple", "seconds": 180},
        "drop_trigger": False,
    },
    "gfw-type-ii": {
        "max_fragments": 102,
        "reset": {
            "flags": "RA",
            "count": 3,
            "targets": "both",
            "df": True,
            "ip_id": "tsg",
            "window": "tsg",
            "ttl": 255,
            "identical": True,
        },
        "dns": {"flags": 0x8180, "compression": True, "mode": "race"},
        "residual": {"scope": "3-tuple", "seconds": 180},
        "drop_trigger": False,
    },
    "gfw-type-iii": {
        "max_fragments": 0,
        "reset": {
            "flags": "RA",
            "count": 1,
            "targets": "both",
            "df": True,
            "ip_id": "tsg",
            "window": "tsg",
            "ttl": 255,
        },
        "residual": {"scope": "3-tuple", "seconds": 180},
        "drop_trigger": False,
    },
    "henan": {
        "max_fragments": 0,
        "reset": {
            "flags": "RA",
            "count": 1,
            "targets": "client",
            "df": False,
            "ip_id": 1,
            "ttl": 58,
            "payload": "01 02 03 04 05 06 07 08 09 00",
        },
        "drop_trigger": False,
    },
    "tsg": {
        "max_fragments": 101,
        "reset": {
            "flags": "RA",
            "count": 1,
            "targets": "both",
            "df": True,
            "ip_id": "tsg",
            "window": "tsg",
            "ttl": [48, 247],
        },
        "dns": {"flags": 0x8180, "compression": True, "mode": "race"},
    },
    "packetlogic": {
        "ip": {"ip_id": 13330},
        "reset": {"flags": "RA", "window": 32120},
        "blockpage": {"window": 32120, "status": 307, "close": "fin", "location": "http://blocked.invalid/"},
    },
    "belarus-2020": {
        "reset": {"flags": "RA", "window": 502, "ip_id": 0},
        "blockpage": {"window": 32678, "ip_id": 1, "status": 302, "close": "fin", "location": "http://82.209.230.23"},
    },
    "iran": {
        "dns": {
            "flags": 0x81A0,
            "compression": False,
            "answers": ["10.10.34.34", "10.10.34.35", "10.10.34.36", "d0::11"],
        },
        "residual": {"scope": "3-tuple", "seconds": 60, "rearm": True, "action": "drop"},
    },
    "turkmenistan": {
        "dns": {"answers": ["127.0.0.1"], "answer_ttl": 300, "ip_id": 30000, "ttl": 128, "df": False},
        "reset": {
            "flags": "R",
            "count": 1,
            "df": False,
            "ip_id": 30000,
            "ttl": 128,
            "window": 0,
            "seq": "ack-based",
            "targets": "both",
        },
        "residual": {"scope": "4-tuple", "seconds": 30, "action": "reset"},
    },
    "tspu": {"throttle": {"rate_kbps": 140}},
    # The other two GFW DNS injectors (Injector 2 is gfw-type-ii's dns); only their flags and compression were
    # retrieved, so they are DNS-only presets for a personality's ``parallel`` list.
    "gfw-dns-1": {"dns": {"flags": 0x8580, "compression": False, "mode": "race"}},
    "gfw-dns-3": {"dns": {"flags": 0x8400, "compression": False, "mode": "race"}},
}


PRESET_CITES: Mapping[str, str] = {
    "linux": "neutral defaults (this module)",
    "gfw-type-i": "Wu et al., A Wall Behind A Wall, IEEE S&P 2025, table fingerprint: RST x1, DF 0, IP ID 0, "
    "TTL 55-118 at the client, both ends, residual 180 s; geedge.report fingerprints: reassembles "
    ">= 500 IPv4 fragments (no limit of its own here)",
    "gfw-type-ii": "IEEE S&P 2025 (RST+ACK x3 identical, residual 180 s); geedge.report fingerprints: DF, k = 13, "
    "TTL fixed 255 since 2024; DNS Injector 2 = TSG (0x8180, compression); reassembles up to 102 "
    "IPv4 fragments",
    "gfw-type-iii": "IEEE S&P 2025 (RST+ACK x1, residual 180 s; its table says DF 0); geedge.report: DF set, "
    "k = 13, TTL 255 (the newer measurement is used here); reassembles no IPv4 fragments",
    "henan": "IEEE S&P 2025: RST+ACK x1, DF 0, IP ID 0x0001, TTL 58 at the client, 10-byte payload 01..09 00, "
    "client only, no residual; geedge.report: reassembles no IPv4 fragments",
    "tsg": "geedge.report fingerprints (USENIX Security 2026): default one RST+ACK, DF, seeded IPID/window k = 13, "
    "TTL 48-247; DNS 0x8180 with compression; up to 101 IPv4 fragments per datagram",
    "packetlogic": "Citizen Lab Bad Traffic pcaps: IP ID 13330, window 32120, 307 with FIN+ACK "
    "(measurement-anchors.md); TTL not modelled; redirect target is a placeholder",
    "belarus-2020": "Qurium and Human Constanta, Internet blocking in Belarus (2020-09; net4people/bbs#46): Business "
    "Network's HTTPS RST/ACK with window 502, IP ID 0; Beltelecom's HTTP redirect to 82.209.230.23 with window 32678, "
    "IP ID 1 (its status and close not reported: 302 and FIN+ACK assumed)",
    "iran": "geedge.report: Iran's DNS injector flags 0x81a0, no compression; OONI fingerprints_dns.csv "
    "10.10.34.34-36, d0::11; residual 60 s with timer reset (Bock et al., FOCI 2020)",
    "turkmenistan": "Nourin et al., WWW 2023: RSTs, residual 30 s on the 4-tuple; DNS A 127.0.0.1 TTL 300 "
    "(net4people/bbs#80); RST and DNS injector fields (flags R, IP ID 30000, initial TTL 128, "
    "no DF, window 0) from the paper's artifact README (breakerspace/turkmenistan-censorship)",
    "tspu": "Xue et al., Throttling Twitter, IMC 2021: 130-150 kbit/s",
    "gfw-dns-1": "Triplet Censors, FOCI 2020 (three GFW DNS injectors); geedge.report fingerprints: CN Injector 1, "
    "flags 0x8580, no name compression; IP ID/TTL/answer TTL not retrieved (neutral defaults)",
    "gfw-dns-3": "Triplet Censors, FOCI 2020; geedge.report fingerprints: CN Injector 3, flags 0x8400, no name "
    "compression (in their measurements; FOCI 2020 saw compression); IP fields not retrieved",
}
