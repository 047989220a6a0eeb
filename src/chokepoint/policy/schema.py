"""The profile format as a JSON Schema (Draft 2020-12), generated from the one declaration of each part.

Conditions come from the field table (``fields.FIELDS``), ``engine:`` from ``settings.EngineSettings``,
actions from ``verdict.Action``; per-action parameters are declared here. ``profile.schema.json`` beside
this module is the same schema written out for readers and editors:
``python -m chokepoint.policy.schema --write`` regenerates it (a test checks it is current).

``validate()`` reports the first violation in file order as ``PolicyError`` at the offending key or value.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, relevance

from chokepoint.policy.dates import ACTIVE_SCHEMA
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.fields import FIELDS, OPERATORS, FieldSpec, Kind
from chokepoint.policy.fields import LIST_KINDS as FIELD_LIST_KINDS
from chokepoint.policy.lists import LIST_KINDS
from chokepoint.policy.outcomes import outcomes_schema
from chokepoint.policy.probing import active_probing_schema
from chokepoint.policy.provenance import EXAMPLE_PROTOCOLS, SYMPTOMS
from chokepoint.policy.verdict import Action
from chokepoint.policy.yamlsrc import Marks
from chokepoint.settings import EngineSettings

SCHEMA_FILE = Path(__file__).with_name("profile.schema.json")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
OBSERVED_PATTERN = r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?(/([0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?)?)?$"
HEX_PATTERN = r"^\s*[0-9a-fA-F]{2}(\s*[0-9a-fA-F]{2})*\s*$"
#: The enforcer's scopes (``chokepoint.enforce.personality.RESIDUAL_SCOPES``; a test keeps them equal).
RESIDUAL_SCOPES = ("3-tuple", "4-tuple", "server", "client-server")
TIMEZONE_PATTERN = r"^UTC[+-](0[0-9]|1[0-4]):[0-5][0-9]$"

_STR: dict[str, Any] = {"type": "string", "minLength": 1}
_CITE: dict[str, Any] = {
    "description": "a citation, or several",
    "anyOf": [_STR, {"type": "array", "items": _STR, "minItems": 1}],
}
_UNCERTAIN: dict[str, Any] = {
    "description": "what is not verified, and why: text (the whole rule) or a mapping of knob (a param name, "
    "'when' or 'action') to why",
    "anyOf": [_STR, {"type": "object", "minProperties": 1, "additionalProperties": _STR}],
}


def _one_or_many(item: dict[str, Any], what: str) -> dict[str, Any]:
    return {
        "description": f"{what}, or a list of them",
        "anyOf": [item, {"type": "array", "items": item, "minItems": 1}],
    }


def _ops_object(spec: FieldSpec, ops: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": f"operator for {spec.name}",
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": ops,
        "additionalProperties": False,
    }


def _operand(spec: FieldSpec) -> dict[str, Any]:
    """Schema of the value under a field key in a condition."""
    kind = spec.kind
    list_name = {
        "type": "string",
        "pattern": NAME_PATTERN,
        "description": "name of a list declared under lists: (kinds: "
        + ", ".join(FIELD_LIST_KINDS.get(kind, ()))
        + ")",
    }
    if kind in (Kind.DOMAIN, Kind.TEXT):
        word = "a domain name" if kind is Kind.DOMAIN else "a string"
        ops = {
            "exact": _one_or_many(_STR, word),
            "keyword": _one_or_many(_STR, "a literal substring"),
            "regex": _one_or_many(_STR, "a regex (searched; anchor with ^ $)"),
            "in_list": list_name,
        }
        if kind is Kind.DOMAIN:
            ops["suffix"] = _one_or_many(_STR, "a domain name (matches it and its subdomains)")
        ops = {op: ops[op] for op in OPERATORS[kind]}
        return _ops_object(spec, ops)
    if kind is Kind.BYTES:
        hexs = {"type": "string", "pattern": HEX_PATTERN}
        at = {
            "type": "object",
            "required": ["offset", "hex"],
            "additionalProperties": False,
            "properties": {"offset": {"type": "integer", "minimum": 0}, "hex": hexs},
        }
        return _ops_object(
            spec,
            {
                "prefix": _one_or_many(hexs, "hex bytes"),
                "at": _one_or_many(at, "{offset, hex}"),
                "regex": _one_or_many(_STR, "a byte regex (\\xHH for bytes)"),
            },
        )
    if kind is Kind.BOOL:
        value: dict[str, Any] = {"type": "boolean"}
        return {
            "description": f"{spec.name}: true/false or {{is: true/false}}",
            "anyOf": [value, _ops_object(spec, {"is": value})],
        }
    if kind is Kind.ENUM:
        value = {"enum": list(spec.values)}
        what = "one of " + ", ".join(spec.values)
    elif kind is Kind.STRING:
        value, what = _STR, "a string"
    elif kind is Kind.IP:
        value, what = _STR, "an IPv4/IPv6 address or CIDR"
    elif kind is Kind.PORT:
        value = {
            "description": "a port or a range 'lo-hi'",
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 65535},
                {"type": "string", "pattern": r"^[0-9]+-[0-9]+$"},
            ],
        }
        what = "a port or a range 'lo-hi'"
    else:  # Kind.INT
        value, what = {"type": "integer"}, "an integer"
    ops = {"in": _one_or_many(value, what)}
    if kind is Kind.INT:
        ops.update({op: {"type": "integer"} for op in ("lt", "le", "gt", "ge")})
    if "in_list" in OPERATORS[kind]:
        ops["in_list"] = list_name
    return {
        "description": f"{spec.name}: {what}, a list of them, or an operator ({', '.join(ops)})",
        "anyOf": [value, {"type": "array", "items": value, "minItems": 1}, _ops_object(spec, ops)],
    }


def condition_defs() -> dict[str, Any]:
    props: dict[str, Any] = {
        "all": {
            "type": "array",
            "items": {"$ref": "#/$defs/condition"},
            "description": "true when every condition is (an empty all is true)",
        },
        "any": {
            "type": "array",
            "items": {"$ref": "#/$defs/condition"},
            "description": "true when at least one condition is",
        },
        "not": {"$ref": "#/$defs/condition"},
    }
    for spec in FIELDS.values():
        operand = _operand(spec)
        operand.setdefault("description", "")
        operand["$comment"] = f"{spec.kind.value} field: {spec.doc}"
        props[spec.name] = operand
    return {
        "condition": {
            "title": "condition",
            "description": "exactly one key: a field (see the field table), all, any or not",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": props,
            "additionalProperties": False,
        }
    }


def engine_schema() -> dict[str, Any]:
    """``engine:`` generated from ``EngineSettings`` (names, JSON types and defaults)."""
    props: dict[str, Any] = {}
    defaults = EngineSettings()
    for name, typ in EngineSettings.field_types().items():
        if typ is bool:
            props[name] = {"type": "boolean"}
        elif typ is int:
            props[name] = {"type": "integer", "minimum": 0}
        elif typ is float:
            props[name] = {"type": "number", "minimum": 0}
        else:
            raise TypeError(f"EngineSettings.{name}: no JSON type for {typ.__name__}")
        props[name]["default"] = getattr(defaults, name)
    props["cite"] = _CITE
    props["uncertain"] = {
        "description": "what is not verified: text, or a mapping of knob to why",
        "anyOf": [
            _STR,
            {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": _STR,
                "propertyNames": {"enum": list(EngineSettings.field_names())},
            },
        ],
    }
    return {
        "title": "key in engine",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "description": "engine knobs (chokepoint.settings.EngineSettings), with their cite and uncertainty",
    }


def _params_defs() -> dict[str, Any]:
    common = {
        "probability": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "chance that a match is enforced (per flow)",
        },
        "residual_s": {
            "type": "number",
            "minimum": 0,
            "description": "seconds the censor keeps blocking the same endpoints afterwards",
        },
        "residual_scope": {
            "enum": list(RESIDUAL_SCOPES),
            "description": "3-tuple: (client IP, server IP, server port); 4-tuple: + client port; "
            "server: server IP and port; client-server: the two IPs",
        },
        "injector": {
            "type": "string",
            "pattern": NAME_PATTERN,
            "description": "a personality preset (chokepoint.enforce.personality.PRESETS) acting for "
            "this rule instead of the profile's personality; checked at load time",
        },
    }
    deferral = {
        "after_s": {
            "type": "number",
            "minimum": 0,
            "description": "deferred: a match only flags the flow; the action is taken at the first "
            "packet at which the flow is this many seconds old (packet clock) and has "
            "carried min_bytes",
        },
        "min_bytes": {
            "type": "integer",
            "minimum": 0,
            "description": "deferred: IP bytes of the flow (both directions) before the action is taken (with after_s)",
        },
    }
    #: actions that can wait: taken on any later packet of the flow (not a DNS answer, a handshake or a page)
    deferrable = (Action.DROP, Action.RESET, Action.THROTTLE, Action.DELAY, Action.ICMP_UNREACHABLE)
    ip = {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}
    own: dict[Action, dict[str, Any]] = {
        Action.ALLOW: {},
        Action.LOG: {},
        Action.DROP: {"direction": {"enum": ["c2s", "s2c", "both"]}},
        Action.RESET: {
            "count": {"type": "integer", "minimum": 1, "maximum": 16},
            "flags": {
                "type": "string",
                "pattern": "^RA?(\\+AE)?(\\+RE)?$",
                "description": "RST or RST+ACK, optionally +AE and/or +RE (TCP flag bits 8-11)",
            },
            "targets": {"enum": ["client", "server", "both"]},
        },
        Action.DNS_FORGE: {
            "answers": {"type": "array", "items": ip, "minItems": 1},
            "ttl": {"type": "integer", "minimum": 0, "maximum": 2147483647},
        },
        Action.BLOCKPAGE: {
            "status": {"type": "integer", "minimum": 100, "maximum": 599},
            "location": _STR,
            "body": {"type": "string"},
        },
        Action.THROTTLE: {"rate_kbps": {"type": "number", "exclusiveMinimum": 0}},
        Action.DELAY: {"delay_ms": {"type": "number", "minimum": 0}, "jitter_ms": {"type": "number", "minimum": 0}},
        Action.ICMP_UNREACHABLE: {"code": {"type": "integer", "minimum": 0, "maximum": 15}},
        Action.TLS_INTERCEPT: {
            "issuer_cn": {**_STR, "description": "the common name of the censor's root that signs the forgeries"},
            "issuer_country": {"type": "string", "pattern": "^[A-Z]{2}$", "description": "its country (C=)"},
        },
    }
    required = {Action.THROTTLE: ["rate_kbps"], Action.DELAY: ["delay_ms"]}
    defs = {}
    for action in Action:
        props = dict(own[action])
        if action is Action.TLS_INTERCEPT:  # nothing is injected and no residual block is kept
            props["probability"] = common["probability"]
        elif action not in (Action.ALLOW, Action.LOG):
            props.update(common)
        if action in deferrable:
            props.update(deferral)
        defs[f"params.{action.value}"] = {
            "title": f"parameter of {action.value}",
            "type": "object",
            "properties": props,
            "additionalProperties": False,
            "required": required.get(action, []),
        }
    return defs


def build_schema(*, require_profile: bool = True) -> dict[str, Any]:
    """The whole format. With ``require_profile=False``: a rule file, whose ``profile:`` is optional."""
    defs: dict[str, Any] = {
        "meta": {
            "title": "key in profile",
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "title", "country", "observed", "description", "cite"],
            "properties": {
                "name": {"type": "string", "pattern": NAME_PATTERN},
                "title": _STR,
                "country": {
                    "type": "string",
                    "pattern": "^[A-Z]{2}$",
                    "description": "ISO 3166-1 alpha-2 (XX for none)",
                },
                "operator": _STR,
                "observed": {
                    "type": "string",
                    "pattern": OBSERVED_PATTERN,
                    "description": "the dates the profile covers, inclusive, e.g. 2021-11/2023-03 (2021-11-01 to "
                    "2023-03-31); an open end (2021-11/) runs to today. A profile is loaded as of one of them "
                    "(default: the last)",
                },
                "description": _STR,
                "cite": {"type": "array", "items": _STR, "minItems": 1},
                "timezone": {
                    "type": "string",
                    "pattern": TIMEZONE_PATTERN,
                    "description": "fixed offset of the censor's local clock (local_hour), e.g. UTC+06:30",
                },
                "uncertain": {**_STR, "description": "what is not verified about the profile as a whole"},
                "named_dates": {
                    "type": "object",
                    "description": "names that load this profile as of a day (e.g. gfw-2023: 2022-06-01), each "
                    "also registered in chokepoint.profiles.NAMED_DATES",
                    "propertyNames": {"pattern": NAME_PATTERN},
                    "additionalProperties": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                },
                "distance": {
                    "title": "key in distance",
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["rtt_ms"],
                    "description": "round-trip time from a client behind the censor to a server abroad; `lab up` "
                    "delays the lab's far side by rtt_ms / 2 each way unless --flat (docs/lab.md)",
                    "properties": {
                        "rtt_ms": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000},
                        "range_ms": {
                            "type": "array",
                            "items": {"type": "number", "minimum": 0},
                            "minItems": 2,
                            "maxItems": 2,
                            "description": "the range reported, [low, high]",
                        },
                        "cite": _STR,
                        "uncertain": _STR,
                    },
                },
                "position": {
                    "title": "key in position",
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["hops_client", "hops_server"],
                    "description": "where the censor sits: router hops between the client and the censor and "
                    "between the censor and a server abroad (`lab up --distance`)",
                    "properties": {
                        "hops_client": {"type": "integer", "minimum": 0, "maximum": 16},
                        "hops_server": {"type": "integer", "minimum": 0, "maximum": 16},
                        "cite": _STR,
                        "uncertain": _STR,
                    },
                },
            },
        },
        "active": ACTIVE_SCHEMA,
        "example": _example_schema(),
        "examples": {
            "title": "key in examples",
            "type": "object",
            "additionalProperties": False,
            "description": "worked example targets: blocked ones name their rule; each says what a client sees",
            "properties": {
                "blocked": {"type": "array", "items": {"$ref": "#/$defs/example"}},
                "allowed": {"type": "array", "items": {"$ref": "#/$defs/example"}},
            },
        },
        "engine": engine_schema(),
        "list": {
            "title": "key in list",
            "type": "object",
            "required": ["kind"],
            "additionalProperties": False,
            "description": "a list needs a kind and exactly one of items or file",
            "properties": {
                "kind": {"enum": list(LIST_KINDS)},
                "items": {"type": "array", "items": _STR},
                "file": {**_STR, "description": "one entry per line, relative to the profile's folder"},
                "cite": _CITE,
                "description": {"type": "string"},
                "uncertain": {**_STR, "description": "what is not verified about the entries"},
                "nocase": {"type": "boolean", "description": "keyword lists: ignore ASCII case"},
                "active": {"$ref": "#/$defs/active"},
            },
            "oneOf": [{"required": ["items"]}, {"required": ["file"]}],
        },
        "rule": {
            "title": "key in rule",
            "type": "object",
            "required": ["id", "action", "when"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string", "pattern": NAME_PATTERN},
                "action": {"enum": [a.value for a in Action]},
                "params": {"type": "object"},
                "reason": {"type": "string"},
                "cite": _CITE,
                "observed": {"type": "string", "pattern": OBSERVED_PATTERN},
                "uncertain": _UNCERTAIN,
                "mechanism": {
                    "type": "string",
                    "pattern": NAME_PATTERN,
                    "description": "what the censor does that no action expresses yet (documented, not enforced)",
                },
                "active": {"$ref": "#/$defs/active"},
                "when": {"$ref": "#/$defs/condition"},
            },
            "allOf": [
                {
                    "if": {"properties": {"action": {"const": a.value}}, "required": ["action"]},
                    "then": {"properties": {"params": {"$ref": f"#/$defs/params.{a.value}"}}},
                }
                for a in Action
            ],
        },
        **_params_defs(),
        **condition_defs(),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "top-level key",
        "description": "Chokepoint censor profile"
        if require_profile
        else "Chokepoint rule file (a profile whose profile: block is optional)",
        "type": "object",
        "required": ["profile", "rules"] if require_profile else ["rules"],
        "additionalProperties": False,
        "properties": {
            "profile": {"$ref": "#/$defs/meta"},
            "engine": {"$ref": "#/$defs/engine"},
            "personality": {
                "type": "object",
                "description": "how the censor acts (chokepoint.enforce.personality.parse_personality), "
                "with cite/uncertain on its knobs (chokepoint.policy.provenance)",
            },
            "examples": {"$ref": "#/$defs/examples"},
            "outcomes": outcomes_schema(),
            "active_probing": active_probing_schema(),
            "lists": {
                "title": "list name",
                "type": "object",
                "propertyNames": {"title": "list name", "pattern": NAME_PATTERN},
                "additionalProperties": {"$ref": "#/$defs/list"},
            },
            "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}},
        },
        "$defs": defs,
    }


def _example_schema() -> dict[str, Any]:
    port = {"type": "integer", "minimum": 1, "maximum": 65535}
    return {
        "title": "key in example",
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "protocol", "symptom"],
        "properties": {
            "id": {"type": "string", "pattern": NAME_PATTERN},
            "protocol": {"enum": list(EXAMPLE_PROTOCOLS)},
            "target": {**_STR, "description": "the name asked for: DNS question, TLS/QUIC SNI or HTTP Host"},
            "port": {**port, "description": "server port (default: 53, 443, 80, 443 for dns/tls/http/quic)"},
            "client_port": {**port, "description": "client port (default: an ephemeral one)"},
            "server_ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "client_ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "path": {**_STR, "description": "http: the request target (default /)"},
            "payload": {
                "description": "tcp/udp: the client's data, hex: one packet, or a list of packets in order",
                "anyOf": [
                    {"type": "string", "pattern": HEX_PATTERN},
                    {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 16,
                        "items": {"type": "string", "pattern": HEX_PATTERN},
                    },
                ],
            },
            "payload_random": {
                "type": "integer",
                "minimum": 1,
                "maximum": 65000,
                "description": "tcp/udp: that many random bytes (seeded) as the first packet",
            },
            "packets": {
                "type": "integer",
                "minimum": 1,
                "maximum": 16,
                "description": "client data packets to send (the payload cut into this many)",
            },
            "quic_version": {"enum": [1, 0x6B3343CF], "description": "quic: version 1 or 2 (RFC 9369)"},
            "local_time": {
                "type": "string",
                "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                "description": "the client's wall clock in the profile's timezone",
            },
            "tcp_options": {"type": "boolean", "description": "data segments carry TCP options (header > 20)"},
            "tls_record_split": {"type": "boolean", "description": "the ClientHello cut into two TLS records"},
            "prelude": {"enum": ["dummy-udp"], "description": "sent first on the same flow"},
            "ech": {"type": "boolean", "description": "the ClientHello offers encrypted_client_hello"},
            "rule": {"type": "string", "pattern": NAME_PATTERN, "description": "the rule that decides"},
            "action": {"enum": [a.value for a in Action]},
            "symptom": {"enum": list(SYMPTOMS), "description": "what the client sees"},
            "expect": {"type": "object", "description": "facts the lab should confirm on the wire"},
            "duration_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 600,
                "description": "tcp/udp: the client keeps sending payload_random-byte chunks this long",
            },
            "send_kbps": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": 100000,
                "description": "tcp/udp with duration_s: the client's sending rate (kbit/s)",
            },
            "params": {
                "type": "object",
                "minProperties": 1,
                "propertyNames": {"pattern": r"^[a-z0-9][a-z0-9_.-]*\.[a-z_][a-z0-9_]*$"},
                "additionalProperties": {"type": ["number", "integer", "string", "boolean", "array"]},
                "description": "rule-param overrides (RULE_ID.PARAM: value) the profile is loaded with to "
                "reproduce this example (as chokepoint analyze --param / lab up params)",
            },
            "note": {"type": "string"},
            "cite": _CITE,
            "active": {"$ref": "#/$defs/active"},
        },
    }


def condition_schema() -> dict[str, Any]:
    """A schema whose root is one condition (for ``conditions.parse_condition``)."""
    schema = build_schema()
    return {"$schema": schema["$schema"], "$ref": "#/$defs/condition", "$defs": schema["$defs"]}


def validate(data: Any, marks: Marks, schema: dict[str, Any]) -> None:
    """Raise ``PolicyError`` at the first (in file order) place where ``data`` violates ``schema``."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    found = []
    for error in validator.iter_errors(data):
        leaf = _leaf(error)
        pos, message = _locate(leaf, marks, data)
        found.append(((pos.line, pos.column, -len(leaf.absolute_path)), pos, message))
    if found:
        _, pos, message = min(found, key=lambda item: item[0])
        raise PolicyError.at(pos, message)


def _leaf(error: ValidationError) -> ValidationError:
    """Descend an anyOf failure into the branch written for this kind of value (an object or a list), so
    that an unknown operator or a bad list item is reported where it is; otherwise keep the anyOf, whose
    description says what was expected."""
    while error.validator == "anyOf" and error.context:
        kind = "object" if isinstance(error.instance, dict) else "array" if isinstance(error.instance, list) else ""
        branches = [
            e for e in error.context if kind and error.validator_value[e.relative_schema_path[0]].get("type") == kind
        ]
        if not branches:
            break
        error = max(branches, key=relevance)
    return error


def _is_choice_of_keys(error: ValidationError) -> bool:
    return error.validator == "oneOf" and all(set(s) == {"required"} for s in error.validator_value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _locate(error: ValidationError, marks: Marks, data: Any) -> tuple[Any, str]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    what = schema.get("title", "key")
    inst = error.instance
    if error.validator == "additionalProperties" and isinstance(inst, dict):
        known = list(schema.get("properties", {}))
        extra = [k for k in inst if k not in known]
        key = extra[0] if extra else next(iter(inst), "")
        if what == "condition":
            msg = f"unknown field {key!r} (a condition is one field, or all/any/not)"
        elif what.startswith("operator for "):
            msg = f"unknown operator {key!r} for {what.removeprefix('operator for ')}"
        else:
            msg = f"unknown {what} {key!r}"
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            msg += f"; did you mean {close[0]!r}?"
        elif what.startswith("operator for") and known:
            msg += f"; expected one of: {', '.join(known)}"
        return marks.key(path + (key,)), msg
    if error.validator == "required" and isinstance(inst, dict):
        missing = [k for k in error.validator_value if k not in inst]
        return marks.value(path), f"missing required key {missing[0]!r}" if missing else error.message
    if error.validator in ("minProperties", "maxProperties") and what == "condition":
        return marks.value(path), (
            "a condition has exactly one key: a field, or all/any/not (combine several with all: [...])"
        )
    if error.validator in ("minProperties", "maxProperties") and what.startswith("operator for"):
        return marks.value(path), f"give exactly one {what}"
    if error.validator == "pattern" and isinstance(inst, str) and _is_key_at(data, path, inst):
        return marks.key(path + (inst,)), f"bad {what} {inst!r}: expected {error.validator_value}"
    if _is_choice_of_keys(error):
        return marks.value(path), f"{schema.get('description', 'exactly one of the keys')}"
    if error.validator in ("anyOf", "oneOf"):
        desc = schema.get("description")
        return marks.value(path), (f"bad value {inst!r}: expected {desc}" if desc else error.message)
    if error.validator == "enum":
        return marks.value(path), f"{inst!r} is not one of: {', '.join(map(str, error.validator_value))}"
    if error.validator == "type" and what.startswith("operator for "):
        ops = ", ".join(schema.get("properties", {}))
        return (
            marks.value(path),
            f"{what.removeprefix('operator for ')} needs an operator ({ops}), "
            f"e.g. {{{next(iter(schema.get('properties', {'in': 0})))}: ...}}",
        )
    if error.validator == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return marks.value(path), f"expected {want}, got {_json_type(inst)} {inst!r}"
    return marks.value(path), error.message


def _is_key_at(data: Any, path: tuple[Any, ...], key: str) -> bool:
    node = data
    try:
        for part in path:
            node = node[part]
    except (KeyError, IndexError, TypeError):
        return False
    return isinstance(node, dict) and key in node


def main(argv: list[str] | None = None) -> int:
    """``--write``: regenerate profile.schema.json; ``--check``: exit 1 if it is stale; else print it."""
    args = sys.argv[1:] if argv is None else argv
    text = json.dumps(build_schema(), indent=2, ensure_ascii=False) + "\n"
    if "--write" in args:
        SCHEMA_FILE.write_text(text, encoding="utf-8")
        return 0
    if "--check" in args:
        return 0 if SCHEMA_FILE.read_text(encoding="utf-8") == text else 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
