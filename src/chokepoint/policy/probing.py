"""A censor's active prober as profile data: the ``active_probing:`` section.

Alice et al., "How China Detects and Blocks Shadowsocks", IMC 2020, and Ensafi et al., "Examining How the
Great Firewall Discovers Hidden Circumvention Servers", IMC 2015 (with Winter and Lindskog, FOCI 2012):
a connection the passive stage flags makes the censor probe its server from other addresses; the server's
reactions decide whether it is a proxy, and a confirmed one is blocked. The section says, with citations:

- ``triggers``: which rules of this profile flag a flow (usually ``log`` rules) and which probe set they start;
- ``probe_sets``: per set, the replay-based probes (types with the byte ranges they change, the length window of
  payloads that get replayed, weights by entropy, ``after_data``: sent only once the server has answered a replay
  with data), the non-replay probes (lengths, count per flagged connection), the ``tor`` handshake probe, the
  delay distribution (quantile points, interpolated log-linearly), the prober's timeout, the packet
  fingerprint (TTL range, source ports, TCP timestamps), the ``confirm`` rule (named reaction signatures,
  ``activeprobe.confirm``) and the ``block`` (scope, direction, seconds);
- ``time_scale``: a factor on every delay (1 = as documented; a lab run may compress them, ``censord
  --probe-time-scale``).

``parse_active_probing`` returns frozen dataclasses or raises ``PolicyError`` at ``file:line:column``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chokepoint.policy.errors import PolicyError
from chokepoint.policy.yamlsrc import Marks

#: Reaction signatures a ``confirm`` rule may name (implemented in ``chokepoint.activeprobe.confirm``).
SIGNATURES = ("content-dependent-close", "length-threshold-close", "replay-data-only", "tor-handshake")
BLOCK_SCOPES = ("server-port", "server-ip")
BLOCK_DIRECTIONS = ("s2c", "both")
PROBE_KINDS = ("replay", "random", "tor")

_STR: dict[str, Any] = {"type": "string", "minLength": 1}
_CITE: dict[str, Any] = {"anyOf": [_STR, {"type": "array", "minItems": 1, "items": _STR}]}
_NAME: dict[str, Any] = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
_POS_INT: dict[str, Any] = {"type": "integer", "minimum": 0}
_RANGE: dict[str, Any] = {
    "type": "array",
    "minItems": 2,
    "maxItems": 2,
    "items": {"type": "integer", "minimum": 0},
    "description": "[first, last], inclusive",
}


def active_probing_schema() -> dict[str, Any]:
    """JSON Schema of the ``active_probing:`` section (included by ``policy.schema``)."""
    probe_set = {
        "title": "key in probe set",
        "type": "object",
        "additionalProperties": False,
        "required": ["cite", "delay", "confirm", "block"],
        "properties": {
            "cite": _CITE,
            "uncertain": {"anyOf": [_STR, {"type": "object", "additionalProperties": _STR}]},
            "replay": {
                "title": "key in replay",
                "type": "object",
                "additionalProperties": False,
                "required": ["types"],
                "properties": {
                    "lengths": {**_RANGE, "description": "first-payload lengths that get replayed"},
                    "entropy_weight": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "minItems": 2,
                            "maxItems": 2,
                            "items": {"type": "number", "minimum": 0},
                        },
                        "description": "[[bits per byte, probability of being replayed], ...], interpolated",
                    },
                    "types": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "title": "key in replay type",
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["name"],
                            "properties": {
                                "name": _NAME,
                                "changes": {"type": "array", "items": _RANGE},
                                "count": _POS_INT,
                                "after_data": {"type": "boolean"},
                            },
                        },
                    },
                },
            },
            "random": {
                "type": "array",
                "items": {
                    "title": "key in random probe",
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name", "lengths"],
                    "properties": {
                        "name": _NAME,
                        "lengths": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}},
                        "count": _POS_INT,
                    },
                },
            },
            "tor": {
                "title": "key in tor",
                "type": "object",
                "additionalProperties": False,
                "properties": {"count": _POS_INT},
                "description": "a TLS connection then a Tor VERSIONS cell (Winter and Lindskog 2012)",
            },
            "delay": {
                "title": "key in delay",
                "type": "object",
                "additionalProperties": False,
                "required": ["quantiles"],
                "properties": {
                    "quantiles": {
                        "type": "array",
                        "minItems": 2,
                        "items": {
                            "type": "array",
                            "minItems": 2,
                            "maxItems": 2,
                            "items": {"type": "number", "minimum": 0},
                        },
                        "description": "[[seconds, cumulative fraction], ...] from 0 to 1",
                    }
                },
            },
            "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
            "fingerprint": {
                "title": "key in fingerprint",
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "ttl": {**_RANGE, "description": "TTL range as the server sees it"},
                    "source_ports": _RANGE,
                    "tcp_timestamps": {"enum": ["shared-clock", "per-connection"]},
                },
            },
            "confirm": {
                "title": "key in confirm",
                "type": "object",
                "additionalProperties": False,
                "required": ["any"],
                "properties": {
                    "any": {"type": "array", "minItems": 1, "items": {"enum": list(SIGNATURES)}},
                    "min_reactions": {"type": "integer", "minimum": 1},
                },
            },
            "block": {
                "title": "key in block",
                "type": "object",
                "additionalProperties": False,
                "required": ["scope", "seconds"],
                "properties": {
                    "scope": {"enum": list(BLOCK_SCOPES)},
                    "direction": {"enum": list(BLOCK_DIRECTIONS)},
                    "seconds": {"type": "number", "exclusiveMinimum": 0},
                    "rule": _NAME,
                },
            },
        },
    }
    return {
        "title": "key in active_probing",
        "type": "object",
        "additionalProperties": False,
        "required": ["cite", "triggers", "probe_sets"],
        "properties": {
            "cite": _CITE,
            "time_scale": {"type": "number", "exclusiveMinimum": 0},
            "triggers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "title": "key in trigger",
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["rule", "probes"],
                    "properties": {"rule": _NAME, "probes": _NAME},
                },
            },
            "probe_sets": {"type": "object", "minProperties": 1, "additionalProperties": probe_set},
        },
    }


@dataclass(frozen=True, slots=True)
class ReplayType:
    name: str
    changes: tuple[tuple[int, int], ...] = ()
    count: int = 1
    after_data: bool = False


@dataclass(frozen=True, slots=True)
class RandomProbe:
    name: str
    lengths: tuple[int, ...]
    count: int = 1


@dataclass(frozen=True, slots=True)
class ProbeSet:
    name: str
    cite: str
    delay_quantiles: tuple[tuple[float, float], ...]
    confirm_any: tuple[str, ...]
    block_scope: str
    block_seconds: float
    block_direction: str = "s2c"
    block_rule: str = ""
    min_reactions: int = 1
    replay_types: tuple[ReplayType, ...] = ()
    replay_lengths: tuple[int, int] = (0, 1 << 20)
    entropy_weight: tuple[tuple[float, float], ...] = ()
    random: tuple[RandomProbe, ...] = ()
    tor_count: int = 0
    timeout_s: float = 8.0
    ttl: tuple[int, int] = (64, 64)
    source_ports: tuple[int, int] = (32768, 60999)
    tcp_timestamps: str = "per-connection"
    uncertain: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ActiveProbing:
    cite: str
    triggers: tuple[tuple[str, str], ...]  # (rule id, probe set name)
    probe_sets: dict[str, ProbeSet]
    time_scale: float = 1.0

    def probe_set_for(self, rule_id: str) -> ProbeSet | None:
        for rule, name in self.triggers:
            if rule == rule_id:
                return self.probe_sets[name]
        return None


def _cite(raw: Any) -> str:
    return raw if isinstance(raw, str) else "; ".join(raw)


def _uncertain(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    return (("", raw),) if isinstance(raw, str) else tuple(raw.items())


def _probe_set(name: str, raw: dict[str, Any], marks: Marks) -> ProbeSet:
    path = ("active_probing", "probe_sets", name)
    quantiles = tuple((float(s), float(f)) for s, f in raw["delay"]["quantiles"])
    fractions = [f for _, f in quantiles]
    if (
        fractions[0] != 0.0
        or fractions[-1] != 1.0
        or fractions != sorted(fractions)
        or any(b[0] < a[0] for a, b in zip(quantiles, quantiles[1:]))
    ):
        raise PolicyError.at(
            marks.value(path + ("delay", "quantiles")),
            "delay quantiles must rise from fraction 0 to 1 with non-decreasing seconds",
        )
    if quantiles[0][0] <= 0:
        raise PolicyError.at(marks.value(path + ("delay", "quantiles")), "the first delay must be above 0 s")
    replay = raw.get("replay") or {}
    fp = raw.get("fingerprint") or {}
    block = raw["block"]
    for key in ("ttl", "source_ports"):
        if key in fp and fp[key][0] > fp[key][1]:
            raise PolicyError.at(marks.value(path + ("fingerprint", key)), f"{key}: first is above last")
    if "source_ports" in fp and not (1 <= fp["source_ports"][0] and fp["source_ports"][1] <= 65535):
        raise PolicyError.at(marks.value(path + ("fingerprint", "source_ports")), "ports are 1-65535")
    if "ttl" in fp and not (1 <= fp["ttl"][0] and fp["ttl"][1] <= 255):
        raise PolicyError.at(marks.value(path + ("fingerprint", "ttl")), "TTLs are 1-255")
    return ProbeSet(
        name=name,
        cite=_cite(raw["cite"]),
        delay_quantiles=quantiles,
        confirm_any=tuple(raw["confirm"]["any"]),
        min_reactions=int(raw["confirm"].get("min_reactions", 1)),
        block_scope=block["scope"],
        block_seconds=float(block["seconds"]),
        block_direction=block.get("direction", "s2c"),
        block_rule=block.get("rule", f"active-probe-{name}"),
        replay_types=tuple(
            ReplayType(
                t["name"],
                tuple(tuple(c) for c in t.get("changes") or ()),
                int(t.get("count", 1)),
                bool(t.get("after_data", False)),
            )
            for t in replay.get("types") or ()
        ),
        replay_lengths=tuple(replay.get("lengths") or (0, 1 << 20)),
        entropy_weight=tuple((float(e), float(p)) for e, p in replay.get("entropy_weight") or ()),
        random=tuple(
            RandomProbe(r["name"], tuple(r["lengths"]), int(r.get("count", 1))) for r in raw.get("random") or ()
        ),
        tor_count=int((raw.get("tor") or {}).get("count", 1)) if "tor" in raw else 0,
        timeout_s=float(raw.get("timeout_s", 8.0)),
        ttl=tuple(fp.get("ttl") or (64, 64)),
        source_ports=tuple(fp.get("source_ports") or (32768, 60999)),
        tcp_timestamps=fp.get("tcp_timestamps", "per-connection"),
        uncertain=_uncertain(raw.get("uncertain")),
    )


def parse_active_probing(raw: dict[str, Any] | None, marks: Marks, rule_ids: Iterable[str]) -> ActiveProbing | None:
    """The (schema-checked) section, or None; triggers must name rules of the profile and known sets."""
    if raw is None:
        return None
    rules = set(rule_ids)
    sets = {name: _probe_set(name, spec, marks) for name, spec in raw["probe_sets"].items()}
    triggers = []
    for i, trigger in enumerate(raw["triggers"]):
        if trigger["rule"] not in rules:
            raise PolicyError.at(marks.value(("active_probing", "triggers", i, "rule")), f"no rule {trigger['rule']!r}")
        if trigger["probes"] not in sets:
            raise PolicyError.at(
                marks.value(("active_probing", "triggers", i, "probes")),
                f"no probe set {trigger['probes']!r} (sets: {', '.join(sets)})",
            )
        triggers.append((trigger["rule"], trigger["probes"]))
    return ActiveProbing(_cite(raw["cite"]), tuple(triggers), sets, float(raw.get("time_scale", 1.0)))


__all__ = [
    "ActiveProbing",
    "ProbeSet",
    "RandomProbe",
    "ReplayType",
    "SIGNATURES",
    "active_probing_schema",
    "parse_active_probing",
]
