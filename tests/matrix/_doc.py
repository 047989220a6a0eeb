"""A small matrix.json document for the report and CLI tests (the shape ``matrix.run.Matrix.document`` writes)."""

from __future__ import annotations


def cell(profile, transport, outcome, *, mode="inline", expected=None, agrees=None, how="", rules=()):
    return {
        "profile": profile,
        "transport": transport,
        "mode": mode,
        "outcome": outcome,
        "how": how or outcome,
        "expected": expected,
        "agrees": agrees,
        "evidence": {
            "rules": list(rules),
            "censor_events": [{"kind": "action", "rule": r, "action": "drop", "t": 1.0} for r in rules],
            "client_symptom": "timeout" if outcome == "blocked" else "",
            "time_to_first_failure_s": 1.5 if outcome == "blocked" else None,
            "block_lasts_s": 180 if rules else None,
            "throughput_kbps": [1000.0],
            "active_probes": {"count": 0, "by_type": {}, "reactions": {}},
            "runs": 1,
        },
        "runs": [],
        "seconds": 1.0,
    }


def document():
    fet = {"outcome": "blocked", "cite": "Wu et al., USENIX Security 2023", "how": "dropped"}
    return {
        "version": 1,
        "wall_s": 42.0,
        "interrupted": False,
        "config": {"profiles": ["gfw"], "transports": ["shadowsocks-aead", "trojan"], "modes": ["inline"]},
        "transports": {
            "shadowsocks-aead": {"title": "SS", "version": "3.3.5"},
            "trojan": {"title": "T", "version": "1.16.0"},
        },
        "cells": [
            cell("baseline", "shadowsocks-aead", "works"),
            cell("baseline", "trojan", "works"),
            cell(
                "gfw",
                "shadowsocks-aead",
                "blocked",
                expected=fet,
                agrees=True,
                rules=("gfw-fet-drop",),
                how="timeout after 0.8 s, residual",
            ),
            cell("gfw", "trojan", "works", expected={"outcome": "blocked", "cite": "net4people/bbs#129"}, agrees=False),
        ],
    }
