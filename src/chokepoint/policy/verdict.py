"""A verdict is a value: what to do with a flow, which rule said so, and the evidence that fired."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """Actions a rule can name. Enforcement on the wire belongs to the lab backends.

    ``tls-intercept`` terminates the client's TLS with a certificate from the censor's own CA and relays the
    plaintext to the real server (Kazakhstan 2019; ``chokepoint.backends.intercept``)."""

    ALLOW = "allow"
    DROP = "drop"
    RESET = "reset"
    DNS_FORGE = "dns-forge"
    BLOCKPAGE = "blockpage"
    THROTTLE = "throttle"
    DELAY = "delay"
    ICMP_UNREACHABLE = "icmp-unreachable"
    LOG = "log"
    TLS_INTERCEPT = "tls-intercept"

    @property
    def terminal(self) -> bool:
        """Every action but ``log`` ends inspection of the flow."""
        return self is not Action.LOG


@dataclass(frozen=True, slots=True)
class Evidence:
    """One condition that matched: which fact, the value seen, and the pattern or list it matched."""

    field: str
    value: str
    matched: str

    def to_json(self) -> dict[str, str]:
        return {"field": self.field, "value": self.value, "matched": self.matched}


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    rule_id: str
    reason: str = ""
    evidence: tuple[Evidence, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()  # action parameters from the rule, e.g. (("rate_kbps", 140),)
    cite: str = ""
    packet_index: int = 0  # capture position of the packet that triggered it
    direction: str = ""  # "c2s" or "s2c": direction of that packet
    #: a deferred rule matched: the flow is flagged and ``action`` comes later (``Rule.defer``); recorded with
    #: the flow's logs and shown as verdict "flagged"
    flagged: bool = False

    def param(self, name: str, default: Any = None) -> Any:
        for key, value in self.params:
            if key == name:
                return value
        return default

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": "flagged" if self.flagged else self.action.value,
            "rule": self.rule_id,
            "reason": self.reason,
            "evidence": [e.to_json() for e in self.evidence],
        }
        if self.params:
            out["params"] = dict(self.params)
        if self.cite:
            out["cite"] = self.cite
        if self.flagged:
            out["then"] = self.action.value
            out["packet"] = self.packet_index
        return out


ALLOW_DEFAULT = Verdict(Action.ALLOW, rule_id="", reason="no rule matched")
