"""A transport as data: one YAML file per transport (``specs/<name>.yaml``), checked against a JSON Schema.

A description says which real programs make up the transport and how to run them in the lab, never how the
transport works inside:

- ``packages`` / ``programs``: the Debian packages and the executables they provide (a missing program is an
  ``error`` cell naming the package, never a crash);
- ``proto`` and ``port``: where the server listens (TCP or UDP; 443 unless the transport cannot move, and the
  matrix's ``--port`` overrides it); ``materials``: secrets and certificates generated per run
  (``materials.py``);
- ``server`` and ``client``: ``files`` (config templates written to the side's directory), ``steps`` (commands
  run to completion, in order, before the daemons), ``run`` (daemons, started detached), ``after`` (commands
  once every daemon of that side is up) and, for the client, ``ready`` (when the tunnel carries traffic);
- ``fetch``: how the client side carries the download (``socks5h`` to a local SOCKS port, ``http-proxy``
  with CONNECT, or ``direct`` through a tunnel that routes the origin);
- ``unavailable``: the reason a transport cannot run here, when it cannot (listed, never faked).

Templates are ``string.Template`` text: ``$name`` / ``${name}`` from the run's context (``runner.Context``),
``$$`` for a dollar sign, so JSON braces need no escaping. ``load_spec()`` reports every mistake as
``file:line:column`` (the profile loader's YAML reader and schema reporting).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.schema import validate
from chokepoint.policy.yamlsrc import Marks, load_yaml

SPEC_DIR = Path(__file__).with_name("specs")
NAME_PATTERN = r"^[a-z][a-z0-9-]{1,31}$"
#: Materials the runner knows how to make (``materials.py``).
MATERIALS = ("password", "uuid", "tls", "client-tls", "wireguard", "ssh", "tls-crypt", "tor")
FETCH_VIA = ("socks5h", "http-proxy", "direct")
READY_KINDS = ("listen", "log", "command")

_STR: dict[str, Any] = {"type": "string", "minLength": 1}
_ARGV: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"type": "string"}}


def _side_schema(client: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "files": {
            "type": "object",
            "description": "file name -> template text, written to the side's directory ($dir)",
            "propertyNames": {"pattern": r"^[A-Za-z0-9_.-]+$"},
            "additionalProperties": {"type": "string"},
        },
        "steps": {"type": "array", "items": _ARGV, "description": "commands run to completion before the daemons"},
        "run": {
            "type": "array",
            "items": {
                "title": "key in run",
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "argv"],
                "properties": {
                    "name": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*$"},
                    "argv": _ARGV,
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "grace": {"type": "number", "minimum": 0, "maximum": 10},
                },
            },
        },
        "after": {"type": "array", "items": _ARGV, "description": "commands run once the daemons are up"},
        "teardown": {"type": "array", "items": _ARGV, "description": "commands run at stop (failures ignored)"},
    }
    if client:
        props["ready"] = {
            "title": "key in ready",
            "type": "object",
            "additionalProperties": False,
            "description": "one of: listen (host:port accepting TCP), log (a line in a daemon's log), command",
            "properties": {
                "listen": _STR,
                "log": _STR,
                "process": _STR,
                "command": _ARGV,
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
            },
            "oneOf": [{"required": ["listen"]}, {"required": ["log"]}, {"required": ["command"]}],
        }
    return {
        "title": f"key in {'client' if client else 'server'}",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
    }


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a transport description."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "key in transport",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "title", "proto", "fetch"],
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "title": _STR,
            "packages": {"type": "array", "items": _STR},
            "programs": {"type": "array", "items": _STR},
            "version": {
                "title": "key in version",
                "type": "object",
                "additionalProperties": False,
                "required": ["argv", "pattern"],
                "properties": {"argv": _ARGV, "pattern": _STR},
            },
            "proto": {"enum": ["tcp", "udp"]},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "port_note": _STR,
            "materials": {"type": "array", "items": {"enum": list(MATERIALS)}, "uniqueItems": True},
            "vars": {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
            "requires": {"type": "array", "items": {"enum": ["tor-network"]}},
            "server": _side_schema(False),
            "client": _side_schema(True),
            "fetch": {
                "title": "key in fetch",
                "type": "object",
                "additionalProperties": False,
                "required": ["via"],
                "properties": {
                    "via": {"enum": list(FETCH_VIA)},
                    "proxy": {**_STR, "description": "host:port of the local proxy (socks5h, http-proxy)"},
                    "route": {"type": "boolean", "description": "direct: route the origin through the tunnel"},
                    "interface": _STR,
                },
            },
            "unavailable": {**_STR, "description": "why this transport cannot run here (listed, not run)"},
            "cite": {"anyOf": [_STR, {"type": "array", "items": _STR}]},
            "notes": _STR,
        },
    }


@dataclass(frozen=True, slots=True)
class Daemon:
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    grace: float = 0.3


@dataclass(frozen=True, slots=True)
class Side:
    files: tuple[tuple[str, str], ...] = ()
    steps: tuple[tuple[str, ...], ...] = ()
    run: tuple[Daemon, ...] = ()
    after: tuple[tuple[str, ...], ...] = ()
    teardown: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class Ready:
    kind: str  # listen | log | command
    value: str | tuple[str, ...]
    process: str = ""
    timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class Fetch:
    via: str
    proxy: str = ""
    route: bool = False
    interface: str = ""


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """One transport description (see the module docstring)."""

    name: str
    title: str
    proto: str
    fetch: Fetch
    port: int = 443
    port_note: str = ""
    packages: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()
    version_argv: tuple[str, ...] = ()
    version_pattern: str = ""
    materials: tuple[str, ...] = ()
    vars: tuple[tuple[str, str], ...] = ()
    requires: tuple[str, ...] = ()
    server: Side = field(default_factory=Side)
    client: Side = field(default_factory=Side)
    ready: Ready | None = None
    unavailable: str = ""
    cite: tuple[str, ...] = ()
    notes: str = ""
    source: str = ""

    def render(self, text: str, context: dict[str, str]) -> str:
        """``text`` with ``$name`` replaced from ``context``; an unknown name is a ``KeyError`` naming it."""
        try:
            return Template(text).substitute(context)
        except KeyError as exc:
            raise KeyError(f"{self.name}: template names ${exc.args[0]}, which the run does not provide") from None
        except ValueError as exc:
            raise ValueError(f"{self.name}: bad template {text!r}: {exc}") from None


def _side(raw: dict[str, Any] | None) -> Side:
    raw = raw or {}
    return Side(
        files=tuple((raw.get("files") or {}).items()),
        steps=tuple(tuple(s) for s in raw.get("steps") or ()),
        run=tuple(
            Daemon(d["name"], tuple(d["argv"]), tuple((d.get("env") or {}).items()), float(d.get("grace", 0.3)))
            for d in raw.get("run") or ()
        ),
        after=tuple(tuple(s) for s in raw.get("after") or ()),
        teardown=tuple(tuple(s) for s in raw.get("teardown") or ()),
    )


def _ready(raw: dict[str, Any] | None) -> Ready | None:
    if not raw:
        return None
    timeout = float(raw.get("timeout", 15.0))
    if "listen" in raw:
        return Ready("listen", raw["listen"], timeout=timeout)
    if "log" in raw:
        return Ready("log", raw["log"], raw.get("process", ""), timeout)
    return Ready("command", tuple(raw["command"]), timeout=timeout)


def parse_spec(text: str, file: str) -> TransportSpec:
    """A transport description from YAML text; ``PolicyError`` (file:line:column) when it is wrong."""
    data, marks = load_yaml(text, file)
    validate(data, marks, spec_schema())
    _check_templates(data, marks, file)
    names = [d["name"] for side in ("server", "client") for d in ((data.get(side) or {}).get("run") or ())]
    ready = (data.get("client") or {}).get("ready") or {}
    if ready.get("process") and ready["process"] not in names:
        raise PolicyError.at(marks.value(("client", "ready", "process")), f"no daemon named {ready['process']!r}")
    cite = data.get("cite") or ()
    version = data.get("version") or {}
    return TransportSpec(
        name=data["name"],
        title=data["title"],
        proto=data["proto"],
        fetch=Fetch(**data["fetch"]),
        port=int(data.get("port", 443)),
        port_note=data.get("port_note", ""),
        packages=tuple(data.get("packages") or ()),
        programs=tuple(data.get("programs") or ()),
        version_argv=tuple(version.get("argv") or ()),
        version_pattern=version.get("pattern", ""),
        materials=tuple(data.get("materials") or ()),
        vars=tuple((k, str(v)) for k, v in (data.get("vars") or {}).items()),
        requires=tuple(data.get("requires") or ()),
        server=_side(data.get("server")),
        client=_side(data.get("client")),
        ready=_ready(data.get("client", {}).get("ready")),
        unavailable=data.get("unavailable", ""),
        cite=(cite,) if isinstance(cite, str) else tuple(cite),
        notes=data.get("notes", ""),
        source=file,
    )


_PLACEHOLDER = re.compile(r"\$(?:(\$)|([_a-z][_a-z0-9]*)|\{([_a-z][_a-z0-9]*)\}|())", re.IGNORECASE)


def _check_templates(data: Any, marks: Marks, file: str, path: tuple[Any, ...] = ()) -> None:
    """Every ``$`` in a string must start a placeholder (or be ``$$``), found at its position."""
    if isinstance(data, dict):
        for key, value in data.items():
            _check_templates(value, marks, file, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _check_templates(value, marks, file, path + (i,))
    elif isinstance(data, str):
        for match in _PLACEHOLDER.finditer(data):
            if match.group(4) is not None:
                pos = marks.value(path) or SourcePos(file, 1, 1)
                raise PolicyError.at(pos, f"bad template: '$' at offset {match.start()} starts no $name ($$ for '$')")


def load_spec(path: str | Path) -> TransportSpec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), 1, 1, f"cannot read: {exc.strerror or exc}") from None
    return parse_spec(text, str(path))


__all__ = [
    "Daemon",
    "Fetch",
    "MATERIALS",
    "Ready",
    "SPEC_DIR",
    "Side",
    "TransportSpec",
    "load_spec",
    "parse_spec",
    "spec_schema",
]
