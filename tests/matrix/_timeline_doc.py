"""A matrix.json at several days (version 2), the shape ``chokepoint matrix --as-of D1,D2,D3`` writes."""

from __future__ import annotations

from tests.matrix._doc import cell

FET = {"outcome": "blocked", "cite": "Wu et al., USENIX Security 2023", "how": "dropped"}
TLS = {"outcome": "blocked", "cite": "net4people/bbs#129", "how": "port blocked"}
DAYS = ("2021-06-01", "2021-09-01", "2022-06-01", "2022-11-01", "2023-06-01")
#: transport -> outcome on each of DAYS (2021-09-01 is not run: the same loaded profile as 2021-06-01)
OUTCOMES = {
    "shadowsocks-stream": ("works", "works", "blocked", "blocked", "works"),
    "http-connect": ("works", "works", "works", "works", "works"),
    "trojan": ("works", "works", "works", "blocked", "blocked"),
}


def dated(day, transport, outcome, *, reused_from=None):
    expected = FET if transport == "shadowsocks-stream" and "2021-11-01" <= day <= "2023-03-07" else None
    if transport == "trojan" and day >= "2022-10-03":
        expected = TLS
    rules = {"shadowsocks-stream": ["gfw-fet-drop"], "trojan": ["gfw-tls-proxy-port-block"]}.get(transport, [])
    out = cell(
        "gfw",
        transport,
        outcome,
        expected=expected,
        agrees=None if expected is None else expected["outcome"] == outcome,
        rules=rules if outcome == "blocked" else (),
    )
    out["as_of"] = day
    if reused_from:
        out["reused_from"] = reused_from
        out["seconds"] = 0.0
    return out


def document():
    transports = list(OUTCOMES)
    cells = [cell("baseline", t, "works") for t in transports]
    for i, day in enumerate(DAYS):
        for t in transports:
            cells.append(dated(day, t, OUTCOMES[t][i], reused_from="2021-06-01" if day == "2021-09-01" else None))
    return {
        "version": 2,
        "wall_s": 321.0,
        "interrupted": False,
        "config": {
            "profiles": ["gfw"],
            "transports": transports,
            "modes": ["inline"],
            "as_of": None,
            "days": {"gfw": list(DAYS)},
            "reuse": True,
        },
        "transports": {t: {"title": t, "version": "1"} for t in transports},
        "baseline_kbps": {t: 1000.0 for t in transports},
        "cells": cells,
    }
