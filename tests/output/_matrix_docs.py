"""matrix.json documents at several days, in the shape ``chokepoint matrix`` writes (one per ``--as-of`` day)."""

from __future__ import annotations


def cell(profile, transport, outcome, *, expected=None, agrees=None, rules=(), how=""):
    return {
        "profile": profile,
        "transport": transport,
        "mode": "inline",
        "outcome": outcome,
        "how": how or outcome,
        "expected": expected,
        "agrees": agrees,
        "evidence": {"rules": list(rules), "censor_events": [], "runs": 1},
        "runs": [],
        "seconds": 1.0,
    }


def doc(day, cells):
    transports = list(dict.fromkeys(c["transport"] for c in cells))
    return {
        "version": 1,
        "config": {"profiles": ["gfw"], "transports": transports, "modes": ["inline"], "as_of": day},
        "cells": [cell("baseline", t, "works") for t in transports] + cells,
    }


FET = {"outcome": "blocked", "cite": "Wu et al., USENIX Security 2023", "how": "dropped", "uncertain": "which ranges"}


def gfw_series():
    """shadowsocks and trojan under gfw before, during and after the fully-encrypted block, and in the
    TLS-proxy era."""
    return [
        doc("2021-06-01", [cell("gfw", "shadowsocks-aead", "works"), cell("gfw", "trojan", "works")]),
        doc(
            "2022-06-01",
            [
                cell("gfw", "shadowsocks-aead", "blocked", expected=FET, agrees=True, rules=["gfw-fet-drop"]),
                cell("gfw", "trojan", "works"),
            ],
        ),
        doc(
            "2023-06-01",
            [
                cell("gfw", "shadowsocks-aead", "works"),
                cell(
                    "gfw",
                    "trojan",
                    "works",
                    expected={"outcome": "blocked", "cite": "net4people/bbs#129"},
                    agrees=False,
                ),
            ],
        ),
    ]
