"""The profile's ``personality:`` section parsed into a :class:`~chokepoint.enforce.personality.model.Personality`
(every error a ``PolicyError`` at the offending key), and :func:`preset`.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

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
    Path,
    Personality,
    ResetStyle,
    ResidualStyle,
    ThrottleStyle,
    TsgSeed,
    Ttl,
)
from chokepoint.enforce.personality.presets import PRESETS
from chokepoint.packet.record import AE
from chokepoint.policy.errors import PolicyError, SourcePos

_EXTRA_FLAGS = {"AE": AE, "RE": RE_BIT}


def preset(name: str) -> Personality:
    """A bundled personality by name (see :data:`PRESETS`)."""
    if name not in PRESETS:
        raise PolicyError("<personality>", 1, 1, f"no personality preset {name!r}; known: {', '.join(PRESETS)}")
    return parse_personality({"name": name, **PRESETS[name]}, defaults=DEFAULT)


class _Where:
    """Turns a data path into a PolicyError at the best known position."""

    def __init__(self, file: str, marks: Any, base: Path) -> None:
        self.file, self.marks, self.base = file, marks, base

    def error(self, path: Path, message: str) -> PolicyError:
        shown = ".".join(str(p) for p in self.base + path)
        if self.marks is not None:
            pos: SourcePos = self.marks.value(self.base + path)
            return PolicyError.at(pos, f"{shown}: {message}")
        return PolicyError(self.file, 1, 1, f"{shown}: {message}")


def _int(w: _Where, path: Path, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise w.error(path, f"expected an integer in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise w.error(path, f"{value} is out of range [{lo}, {hi}]")
    return value


def _num(w: _Where, path: Path, value: Any, lo: float, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise w.error(path, f"expected a number, got {value!r}")
    if value < lo or (positive and value <= 0) or value != value or value == float("inf"):
        raise w.error(path, f"{value} is out of range ({'> 0' if positive else f'>= {lo}'})")
    return float(value)


def _bool(w: _Where, path: Path, value: Any) -> bool:
    if not isinstance(value, bool):
        raise w.error(path, f"expected true or false, got {value!r}")
    return value


def _choice(w: _Where, path: Path, value: Any, choices: Sequence[str]) -> Any:
    if value not in choices or not isinstance(value, str):
        raise w.error(path, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _reset_flags(w: _Where, path: Path, value: Any) -> tuple[str, int]:
    """``R`` or ``RA``, optionally followed by ``+AE`` and/or ``+RE`` (see :class:`ResetStyle`)."""
    if not isinstance(value, str):
        raise w.error(path, f"expected R or RA (optionally +AE, +RE), got {value!r}")
    base, *extras = value.split("+")
    if base not in ("R", "RA") or len(set(extras)) != len(extras) or not set(extras) <= set(_EXTRA_FLAGS):
        raise w.error(path, f"expected R or RA, optionally followed by +AE and/or +RE, got {value!r}")
    bits = 0
    for name in extras:
        bits |= _EXTRA_FLAGS[name]
    return base, bits


def _pair(w: _Where, path: Path, value: Any, lo: int, hi: int) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise w.error(path, f"expected [low, high], got {value!r}")
    a = _int(w, path + (0,), value[0], lo, hi)
    b = _int(w, path + (1,), value[1], lo, hi)
    if a > b:
        raise w.error(path, f"low {a} is above high {b}")
    return a, b


def _mapping(w: _Where, path: Path, value: Any, known: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise w.error(path, f"expected a mapping, got {type(value).__name__}")
    for key in value:
        if key not in known:
            raise w.error(path + (key,), f"unknown key {key!r}; known: {', '.join(known)}")
    return value


def _field16(w: _Where, path: Path, value: Any) -> Field16:
    if value == "random":
        return Field16("random", 0, 0xFFFF)
    if value == "tsg":
        return Field16("tsg")
    if isinstance(value, int) and not isinstance(value, bool):
        return Field16("fixed", _int(w, path, value, 0, 0xFFFF))
    if isinstance(value, list | tuple):
        lo, hi = _pair(w, path, value, 0, 0xFFFF)
        return Field16("random", lo, hi)
    if isinstance(value, Mapping) and "increment" in value:
        m = _mapping(w, path, value, ("increment", "step"))
        start = _int(w, path + ("increment",), m["increment"], 0, 0xFFFF)
        step = _int(w, path + ("step",), m.get("step", 1), 1, 0xFFFF)
        return Field16("increment", start, 0, step)
    raise w.error(path, f"expected an integer, [low, high], random, tsg or {{increment: N, step: S}}, got {value!r}")


def _ttl(w: _Where, path: Path, value: Any) -> Ttl:
    if value == "mirror":
        return Ttl("mirror", 0, 0)
    if isinstance(value, int) and not isinstance(value, bool):
        ttl = _int(w, path, value, 1, 255)
        return Ttl("fixed", ttl, ttl)
    if isinstance(value, list | tuple):
        lo, hi = _pair(w, path, value, 1, 255)
        return Ttl("range", lo, hi)
    raise w.error(path, f"expected a TTL 1-255, [low, high] or mirror, got {value!r}")


def _tsg(w: _Where, path: Path, value: Any, base: TsgSeed) -> TsgSeed:
    m = _mapping(w, path, value, ("seed_key", "seed_max", "val"))
    key = _int(w, path + ("seed_key",), m.get("seed_key", base.seed_key), 1, 0xFFFF)
    top = _int(w, path + ("seed_max",), m.get("seed_max", base.seed_max), 1, 0xFFFF)
    if key > top:
        raise w.error(path, f"seed_key {key} is above seed_max {top}")
    if "val" in m:
        lo, hi = _pair(w, path + ("val",), m["val"], 1, top // key)
    else:
        lo, hi = 1, 0
    return TsgSeed(key, top, lo, hi)


_IP_KEYS = ("ttl", "ip_id", "df", "window", "tsg")


def _ip(w: _Where, path: Path, raw: Mapping[str, Any], base: IpStyle, keys: Sequence[str] = _IP_KEYS) -> IpStyle:
    """``base`` with the header keys of ``raw`` applied (other keys are the caller's)."""
    changes: dict[str, Any] = {}
    if "ttl" in raw and "ttl" in keys:
        changes["ttl"] = _ttl(w, path + ("ttl",), raw["ttl"])
    if "ip_id" in raw and "ip_id" in keys:
        changes["ip_id"] = _field16(w, path + ("ip_id",), raw["ip_id"])
    if "df" in raw and "df" in keys:
        changes["df"] = _bool(w, path + ("df",), raw["df"])
    if "window" in raw and "window" in keys:
        changes["window"] = _field16(w, path + ("window",), raw["window"])
    if "tsg" in raw and "tsg" in keys:
        changes["tsg"] = _tsg(w, path + ("tsg",), raw["tsg"], base.tsg)
    return replace(base, **changes)


def _payload(w: _Where, path: Path, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        digits = "".join(c for c in value if c not in " :\t")
        if len(digits) % 2 or any(c not in string.hexdigits for c in digits):
            raise w.error(path, f"expected hex bytes such as '01 02 0a', got {value!r}")
        return bytes.fromhex(digits)
    if isinstance(value, list | tuple):
        return bytes(_int(w, path + (i,), b, 0, 255) for i, b in enumerate(value))
    raise w.error(path, f"expected hex text or a list of byte values, got {value!r}")


def _addresses(w: _Where, path: Path, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise w.error(path, f"expected a non-empty list of IP addresses, got {value!r}")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(ipaddress.ip_address(item).compressed)
        except ValueError:
            raise w.error(path + (i,), f"not an IPv4 or IPv6 address: {item!r}") from None
    return tuple(dict.fromkeys(out))


def _dns_flags(w: _Where, path: Path, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise w.error(path, f"expected a 16-bit number such as 0x8180, got {value!r}") from None
    flags = _int(w, path, value, 0, 0xFFFF)
    if not flags & 0x8000:
        raise w.error(path, f"0x{flags:04x} lacks the QR bit (0x8000): that is not a response")
    return flags


_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def _headers(w: _Where, path: Path, value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = []
        for i, pair in enumerate(value):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise w.error(path + (i,), f"expected [name, value], got {pair!r}")
            items.append((pair[0], pair[1]))
    else:
        raise w.error(path, f"expected a mapping of header names to values, got {value!r}")
    out = []
    for name, text in items:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN:
            raise w.error(path, f"bad header name {name!r} (RFC 9110 token)")
        if name.lower() in ("content-length", "location"):
            raise w.error(path, f"{name} is set by the enforcer (use location: for redirects)")
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise w.error(path, f"bad value for header {name}: {text!r}")
        out.append((name, text))
    return tuple(out)


def _location(w: _Where, path: Path, value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n\0 "):
        raise w.error(path, f"expected a URL without spaces or line breaks, got {value!r}")
    return value


def _body(w: _Where, path: Path, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise w.error(path, f"expected text, got {value!r}")
    return value.encode("utf-8")


def _check_blockpage(w: _Where, path: Path, page: BlockpageStyle) -> BlockpageStyle:
    if 300 <= page.status < 400 and not page.location:
        raise w.error(path, f"status {page.status} is a redirect: it needs a location")
    return page


_RESET_KEYS = ("flags", "count", "targets", "seq", "payload", "identical", *_IP_KEYS)
_DNS_KEYS = (
    "flags",
    "answer_ttl",
    "answers",
    "answers_per_response",
    "compression",
    "copy_query_edns",
    "mode",
    "ttl",
    "ip_id",
    "df",
    "tsg",
)
_PAGE_KEYS = ("status", "headers", "body", "location", "close", "reset_server", "mss", *_IP_KEYS)
_ICMP_KEYS = ("code", "code6", "source", "ttl", "ip_id", "df", "tsg")
_TOP_KEYS = (
    "name",
    "based_on",
    "description",
    "cite",
    "ip",
    "reset",
    "dns",
    "blockpage",
    "throttle",
    "delay",
    "icmp",
    "residual",
    "drop_trigger",
    "parallel",
    "max_fragments",
)


def parse_personality(
    raw: Mapping[str, Any] | None,
    *,
    defaults: Personality = DEFAULT,
    file: str = "<personality>",
    marks: Any = None,
    base: Path = ("personality",),
) -> Personality:
    """A profile's ``personality:`` section over ``defaults`` (or over the preset named by ``based_on``).

    Keys: ``name``, ``based_on`` (a :data:`PRESETS` name), ``description``/``cite`` (free text), ``ip`` (header
    defaults for every injected packet: ``ttl``, ``ip_id``, ``df``, ``window``, ``tsg``), the sections
    ``reset``, ``dns``, ``blockpage``, ``throttle``, ``delay``, ``icmp``, ``residual`` (each takes its own header
    keys too), ``drop_trigger`` and ``parallel`` (a list of ``{preset, probability}``: other injectors on the
    path, :class:`ParallelInjector`). Raises ``PolicyError`` naming the offending key; with ``marks`` (the
    profile's ``chokepoint.policy.yamlsrc.Marks``) at its position, ``base`` being the section's data path.
    """
    if raw is None:
        return defaults
    w = _Where(file, marks, base)
    m = _mapping(w, (), raw, _TOP_KEYS)
    if "based_on" in m:
        name = _choice(w, ("based_on",), m["based_on"], tuple(PRESETS))
        defaults = parse_personality({"name": name, **PRESETS[name]}, defaults=DEFAULT, file=file)
    name = m.get("name", defaults.name)
    if not isinstance(name, str) or not name:
        raise w.error(("name",), f"expected a name, got {name!r}")
    for key in ("description", "cite"):
        if key in m and not isinstance(m[key], str | list):
            raise w.error((key,), "expected text or a list of texts")
    shared = _mapping(w, ("ip",), m.get("ip", {}), _IP_KEYS)

    def ip_of(section: str, style: IpStyle, raw_section: Mapping[str, Any], keys: Sequence[str]) -> IpStyle:
        style = _ip(w, ("ip",), shared, style, keys)
        return _ip(w, (section,), raw_section, style, keys)

    r = _mapping(w, ("reset",), m.get("reset", {}), _RESET_KEYS)
    d = defaults.reset
    flags, extra_flags = _reset_flags(w, ("reset", "flags"), r["flags"]) if "flags" in r else (d.flags, d.extra_flags)
    reset = ResetStyle(
        flags=flags,
        extra_flags=extra_flags,
        count=_int(w, ("reset", "count"), r.get("count", d.count), 1, 16),
        targets=_choice(w, ("reset", "targets"), r.get("targets", d.targets), ("client", "server", "both")),
        seq=_choice(w, ("reset", "seq"), r.get("seq", d.seq), ("in-window", "ack-based")),
        payload=_payload(w, ("reset", "payload"), r["payload"]) if "payload" in r else d.payload,
        identical=_bool(w, ("reset", "identical"), r.get("identical", d.identical)),
        ip=ip_of("reset", d.ip, r, _IP_KEYS),
    )

    s = _mapping(w, ("dns",), m.get("dns", {}), _DNS_KEYS)
    dd = defaults.dns
    dns = DnsStyle(
        flags=_dns_flags(w, ("dns", "flags"), s["flags"]) if "flags" in s else dd.flags,
        answer_ttl=_int(w, ("dns", "answer_ttl"), s.get("answer_ttl", dd.answer_ttl), 0, 0x7FFFFFFF),
        answers=_addresses(w, ("dns", "answers"), s["answers"]) if "answers" in s else dd.answers,
        answers_per_response=_int(
            w, ("dns", "answers_per_response"), s.get("answers_per_response", dd.answers_per_response), 1, 32
        ),
        compression=_bool(w, ("dns", "compression"), s.get("compression", dd.compression)),
        copy_query_edns=_bool(w, ("dns", "copy_query_edns"), s.get("copy_query_edns", dd.copy_query_edns)),
        mode=_choice(w, ("dns", "mode"), s.get("mode", dd.mode), ("race", "replace")),
        ip=ip_of("dns", dd.ip, s, ("ttl", "ip_id", "df", "tsg")),
    )

    b = _mapping(w, ("blockpage",), m.get("blockpage", {}), _PAGE_KEYS)
    db = defaults.blockpage
    page = BlockpageStyle(
        status=_int(w, ("blockpage", "status"), b.get("status", db.status), 100, 599),
        headers=_headers(w, ("blockpage", "headers"), b["headers"]) if "headers" in b else db.headers,
        body=_body(w, ("blockpage", "body"), b["body"]) if "body" in b else db.body,
        location=_location(w, ("blockpage", "location"), b["location"]) if "location" in b else db.location,
        close=_choice(w, ("blockpage", "close"), b.get("close", db.close), ("fin", "rst")),
        reset_server=_bool(w, ("blockpage", "reset_server"), b.get("reset_server", db.reset_server)),
        mss=_int(w, ("blockpage", "mss"), b.get("mss", db.mss), 64, 65495),
        ip=ip_of("blockpage", db.ip, b, _IP_KEYS),
    )
    _check_blockpage(w, ("blockpage",), page)

    t = _mapping(w, ("throttle",), m.get("throttle", {}), ("rate_kbps", "burst_bytes"))
    throttle = ThrottleStyle(
        rate_kbps=_num(w, ("throttle", "rate_kbps"), t.get("rate_kbps", defaults.throttle.rate_kbps), 0, positive=True),
        burst_bytes=_int(
            w, ("throttle", "burst_bytes"), t.get("burst_bytes", defaults.throttle.burst_bytes), 1, 1 << 30
        ),
    )

    y = _mapping(w, ("delay",), m.get("delay", {}), ("ms", "jitter_ms"))
    delay = DelayStyle(
        ms=_num(w, ("delay", "ms"), y.get("ms", defaults.delay.ms), 0),
        jitter_ms=_num(w, ("delay", "jitter_ms"), y.get("jitter_ms", defaults.delay.jitter_ms), 0),
    )

    c = _mapping(w, ("icmp",), m.get("icmp", {}), _ICMP_KEYS)
    di = defaults.icmp
    source = c.get("source", di.source)
    if source != "destination":
        try:
            source = ipaddress.ip_address(source).compressed
        except ValueError:
            raise w.error(("icmp", "source"), f"expected destination or an IP address, got {source!r}") from None
    icmp = IcmpStyle(
        code=_int(w, ("icmp", "code"), c.get("code", di.code), 0, 15),
        code6=_int(w, ("icmp", "code6"), c.get("code6", di.code6), 0, 255),
        source=source,
        ip=ip_of("icmp", di.ip, c, ("ttl", "ip_id", "df", "tsg")),
    )

    e = _mapping(w, ("residual",), m.get("residual", {}), ("scope", "seconds", "rearm", "action"))
    de = defaults.residual
    residual = ResidualStyle(
        scope=_choice(w, ("residual", "scope"), e.get("scope", de.scope), RESIDUAL_SCOPES),
        seconds=_num(w, ("residual", "seconds"), e.get("seconds", de.seconds), 0),
        rearm=_bool(w, ("residual", "rearm"), e.get("rearm", de.rearm)),
        action=_choice(w, ("residual", "action"), e.get("action", de.action), ("drop", "reset", "auto")),
    )
    drop_trigger = _bool(w, ("drop_trigger",), m.get("drop_trigger", defaults.drop_trigger))
    parallel = _parallel(w, ("parallel",), m["parallel"]) if "parallel" in m else defaults.parallel
    max_fragments = defaults.max_fragments
    if "max_fragments" in m:
        max_fragments = (
            None if m["max_fragments"] is None else _int(w, ("max_fragments",), m["max_fragments"], 0, 65535)
        )
    return Personality(name, reset, dns, page, throttle, delay, icmp, residual, drop_trigger, parallel, max_fragments)


def _parallel(w: _Where, path: Path, value: Any) -> tuple[ParallelInjector, ...]:
    if not isinstance(value, list | tuple):
        raise w.error(path, "expected a list of {preset, probability}")
    out = []
    for i, item in enumerate(value):
        item = _mapping(w, path + (i,), item, ("preset", "probability"))
        if "preset" not in item:
            raise w.error(path + (i,), "each parallel injector names a preset")
        name = _choice(w, path + (i, "preset"), item["preset"], tuple(PRESETS))
        probability = _num(w, path + (i, "probability"), item.get("probability", 1.0), 0)
        if probability > 1:
            raise w.error(path + (i, "probability"), f"{probability} is above 1")
        chosen, sections = preset(name), PRESETS[name]
        out.append(
            ParallelInjector(
                name,
                chosen.reset if "reset" in sections else None,
                probability,
                chosen.dns if "dns" in sections else None,
                chosen.max_fragments,
            )
        )
    return tuple(out)
