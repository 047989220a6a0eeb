"""The scenario catalogue: what to measure in the lab and what the measurement should conclude, as data.

A catalogue is a YAML file (the bundled one is ``scenarios.yaml`` beside this module)::

    defaults:                     # optional; any scenario key except name/target/expected
      mode: inline
      tests: [dns, tcp, tls, http]
      timeout: 3
    scenarios:
      - name: gfw-sni-reset       # unique, [a-z0-9-]
        profile: gfw              # a bundled profile, or null: no censor at all
        mode: inline              # inline | mirror
        target: https://www.google.com/
        tests: [tcp, tls, http]   # chokepoint.probe.runner.TESTS
        resolver: control         # optional: the probe's system resolver is the control resolver (the
                                  # censor's DNS rules stay out of a TLS/HTTP scenario)
        timeout: 3                # seconds per network operation of the probe
        seed: 4                   # the censor's seed for this scenario's lab (probabilistic rules); default:
                                  # the run's seed
        as_of: "2022-06-01"       # the day the profile is loaded for (what was in force that day); default: the
                                  # run's --as-of, else the profile's last day; a day outside its coverage is
                                  # an error at this line
        local_time: "02:30"       # the censor's clock reads this local time (the profile's timezone) when the
                                  # lab comes up (scheduled rules: Myanmar's nightly shutdown); default: 12:00
                                  # for a profile with rules on local_hour, so results do not depend on the
                                  # hour the catalogue runs at; the wall clock otherwise
        quick: true               # part of the reduced CI set (`validate --quick`)
        rule: gfw-sni-reset       # the profile rule the scenario exercises (coverage, documentation)
        note: free text
        expected:
          technique: tls-reset    # a class of TECHNIQUES ("none": not censorship)
          blocking: http-failure  # OONI's blocking: false, null, dns, tcp_ip, http-failure, http-diff
          accessible: false       # OONI's accessible: true, false, null
          attribution: gfw-type-ii   # a personality preset detect should find consistent (injected packets)

A ``kind: trace`` scenario runs ``chokepoint trace`` instead of the probe, with the censor at a hop position::

      - name: trace-gfw-sni-inline-c1s2
        kind: trace
        profile: gfw
        mode: inline
        target: www.youtube.com   # the blocked name, sent in the Host header, the SNI or a DNS query
        protocol: tls             # http | tls | dns (chokepoint trace --protocol)
        hops_client: 1            # routers between the client and the censor (lab up --hops-client)
        hops_server: 2            # routers between the censor and the server, at least 1
        delay_ms: 10              # the far side's one-way delay (lab up --delay-ms); default 10
        params: {gfw-http-host-reset.probability: "1"}   # censor --param overrides (optional)
        tcp_timestamps: false     # the client's TCP timestamps (default true; henan sees 20-byte headers)
        rule: gfw-sni-reset
        expected: {outcome: censor-identified}   # trace's outcome; the hop, address and path come from
                                                 # the topology and the censor's event log at run time

Errors name the place as ``file:line:column: message`` (like profiles); nothing is returned from a
catalogue with any error in it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chokepoint.lab.clock import parse_local_time
from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.yamlsrc import Marks, load_yaml

__all__ = [
    "BUNDLED_CATALOGUE",
    "CatalogueError",
    "Expected",
    "KINDS",
    "MODES",
    "NOT_CENSORSHIP",
    "OONI_BLOCKING",
    "RESOLVERS",
    "Scenario",
    "TECHNIQUES",
    "TRACE_OUTCOMES",
    "TRACE_PROTOCOLS",
    "TraceSpec",
    "load_catalogue",
    "parse_catalogue",
    "select",
]

BUNDLED_CATALOGUE = Path(__file__).with_name("scenarios.yaml")
MODES = ("inline", "mirror")
#: What a scenario runs: the probe runner (scored on the technique matrix) or a censorship traceroute
#: (``chokepoint trace``, scored on the censor's hop, its path and the outcome).
KINDS = ("probe", "trace")
TRACE_PROTOCOLS = ("http", "tls", "dns")
#: chokepoint.trace.analysis.OUTCOMES (not imported: the catalogue loads without the trace package)
TRACE_OUTCOMES = ("censor-identified", "endpoint-firewall", "no-censorship", "terminated-early", "cannot-identify")
RESOLVERS = ("system", "control")
NOT_CENSORSHIP = "none"
#: The technique classes of the confusion matrix: what a censor did, at which layer, as the probe's
#: classifier (chokepoint.probe.webconnectivity and the runner's extra probes) and the censor's event log
#: both express it. "none": no interference.
TECHNIQUES = (
    NOT_CENSORSHIP,
    "dns-forged",
    "dns-nxdomain",
    "dns-failure",
    "tcp-dropped",
    "tcp-reset",
    "tcp-refused",
    "tcp-unreachable",
    "tcp-failure",
    "tls-reset",
    "tls-dropped",
    "tls-eof",
    "tls-mitm",
    "tls-failure",
    "http-reset",
    "http-dropped",
    "http-eof",
    "http-failure",
    "http-blockpage",
    "quic-dropped",
    "quic-failure",
    "fet-blocked",
    "throttled",
    "delayed",
)
#: OONI Web Connectivity `blocking` values (ts-017); None is JSON null.
OONI_BLOCKING: tuple[str | bool | None, ...] = (False, None, "dns", "tcp_ip", "http-failure", "http-diff")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,79}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")
_SCENARIO_KEYS = (
    "name",
    "profile",
    "mode",
    "target",
    "tests",
    "resolver",
    "timeout",
    "seed",
    "quick",
    "rule",
    "note",
    "expected",
    "local_time",
    "as_of",
    "kind",
    "protocol",
    "hops_client",
    "hops_server",
    "delay_ms",
    "params",
    "tcp_timestamps",
)
_PROBE_ONLY_KEYS = ("tests", "resolver")
_TRACE_ONLY_KEYS = ("protocol", "hops_client", "hops_server", "delay_ms", "params", "tcp_timestamps")
_DEFAULT_KEYS = ("mode", "tests", "resolver", "timeout", "quick")
_EXPECTED_KEYS = ("technique", "blocking", "accessible", "attribution")
_DEFAULT_TESTS = ("dns", "tcp", "tls", "http")
_DEFAULT_TIMEOUT = 3.0


class CatalogueError(ValueError):
    """A catalogue that does not follow the format; ``str()`` is ``file:line:column: message``."""

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        super().__init__(file, line, column, message)
        self.file, self.line, self.column, self.message = file, line, column, message

    @classmethod
    def at(cls, pos: SourcePos, message: str) -> CatalogueError:
        return cls(pos.file, pos.line, pos.column, message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class Expected:
    """What the measurement should conclude."""

    technique: str
    blocking: str | bool | None
    accessible: bool | None
    attribution: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "blocking": self.blocking,
            "accessible": self.accessible,
            "attribution": self.attribution,
        }


@dataclass(frozen=True, slots=True)
class TraceSpec:
    """A trace scenario's traceroute and topology: the protocol, the censor's position, the expected outcome."""

    protocol: str
    hops_client: int
    hops_server: int
    delay_ms: float = 10.0
    params: tuple[tuple[str, str], ...] = ()  # censor --param overrides, (RULE.PARAM, VALUE)
    tcp_timestamps: bool = True
    outcome: str = "censor-identified"

    @property
    def censor_hop(self) -> int:
        """The censor's hop as trace counts (the TTL that expires at it): chokepoint.lab.geometry's censor_ttl."""
        return self.hops_client + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "hops_client": self.hops_client,
            "hops_server": self.hops_server,
            "delay_ms": self.delay_ms,
            "params": dict(self.params),
            "tcp_timestamps": self.tcp_timestamps,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class Scenario:
    """One measurement in the lab: which censor, which target, which probes, what should come out."""

    name: str
    profile: str | None
    mode: str
    target: str
    tests: tuple[str, ...]
    expected: Expected
    resolver: str = "system"
    timeout: float = _DEFAULT_TIMEOUT
    quick: bool = False
    rule: str | None = None
    note: str = ""
    seed: int | None = None  # the censor's seed; None: the run's
    source: str = ""  # file:line:column of the scenario (error messages, reports)
    local_time: str | None = None  # "HH:MM" on the censor's clock in the profile's timezone; None: see above
    as_of: str | None = None  # "YYYY-MM-DD": the day the profile is loaded for; None: the run's, else its last
    kind: str = "probe"
    trace: TraceSpec | None = None  # kind "trace": the traceroute and the censor's position

    @property
    def group(self) -> tuple[str, str, int | None, str | None, str | None]:
        """Scenarios sharing a lab: same profile (or none), mode, censor seed, censor clock and day (and
        ``lab_key``)."""
        return (self.profile or "", self.mode, self.seed, self.local_time, self.as_of)

    @property
    def lab_key(self) -> str:
        """A trace scenario has a lab of its own: its hop positions and censor parameters, and no residual
        block from another scenario."""
        return f"trace:{self.name}" if self.kind == "trace" else ""

    @property
    def host(self) -> str:
        if self.kind == "trace":
            return self.target
        from chokepoint.probe.probes.common import parse_target

        return parse_target(self.target).host

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profile": self.profile,
            "mode": self.mode,
            "target": self.target,
            "tests": list(self.tests),
            "resolver": self.resolver,
            "timeout": self.timeout,
            "quick": self.quick,
            "rule": self.rule,
            "note": self.note,
            "seed": self.seed,
            "local_time": self.local_time,
            "as_of": self.as_of,
            "expected": self.expected.to_json() if self.trace is None else {"outcome": self.trace.outcome},
            "source": self.source,
            "kind": self.kind,
            "trace": None if self.trace is None else self.trace.to_json(),
        }


@dataclass(slots=True)
class _Checker:
    marks: Marks
    profiles: frozenset[str] | None
    presets: frozenset[str] | None
    seen: dict[str, SourcePos] = field(default_factory=dict)

    def fail(self, path: tuple, message: str, *, key: bool = False) -> CatalogueError:
        return CatalogueError.at(self.marks.key(path) if key else self.marks.value(path), message)

    def mapping(self, path: tuple, value: Any, known: Sequence[str], what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"{what} must be a mapping, not {type(value).__name__}")
        for k in value:
            if k not in known:
                raise self.fail((*path, k), f"unknown key {k!r} in {what}; known: {', '.join(known)}", key=True)
        return value

    def string(self, path: tuple, value: Any, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"{what} must be a non-empty string")
        return value.strip()

    def boolean(self, path: tuple, value: Any, what: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"{what} must be true or false")
        return value

    def settings(self, path: tuple, raw: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
        """mode/tests/resolver/timeout/quick from ``raw`` over ``base``, checked."""
        from chokepoint.probe.runner import TESTS

        out = dict(base)
        if "mode" in raw:
            if raw["mode"] not in MODES:
                raise self.fail((*path, "mode"), f"mode must be one of {', '.join(MODES)}, not {raw['mode']!r}")
            out["mode"] = raw["mode"]
        if "tests" in raw:
            tests = raw["tests"]
            if not isinstance(tests, list) or not tests:
                raise self.fail((*path, "tests"), "tests must be a non-empty list")
            for i, test in enumerate(tests):
                if test not in TESTS:
                    raise self.fail((*path, "tests", i), f"unknown test {test!r}; known: {', '.join(TESTS)}")
            out["tests"] = tuple(dict.fromkeys(tests))
        if "resolver" in raw:
            if raw["resolver"] not in RESOLVERS:
                raise self.fail((*path, "resolver"), f"resolver must be one of {', '.join(RESOLVERS)}")
            out["resolver"] = raw["resolver"]
        if "timeout" in raw:
            timeout = raw["timeout"]
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
                raise self.fail((*path, "timeout"), "timeout must be a number of seconds in (0, 120]")
            out["timeout"] = float(timeout)
        if "quick" in raw:
            out["quick"] = self.boolean((*path, "quick"), raw["quick"], "quick")
        return out

    def expected(self, path: tuple, raw: Any, profile: str | None) -> Expected:
        raw = self.mapping(path, raw, _EXPECTED_KEYS, "expected")
        for required in ("technique", "blocking", "accessible"):
            if required not in raw:
                raise self.fail(path, f"expected needs {required!r}")
        technique = raw["technique"]
        if technique not in TECHNIQUES:
            raise self.fail((*path, "technique"), f"unknown technique {technique!r}; known: {', '.join(TECHNIQUES)}")
        blocking = raw["blocking"]
        if blocking is True or blocking not in OONI_BLOCKING:
            raise self.fail(
                (*path, "blocking"),
                "blocking must be one of false, null, "
                + ", ".join(str(b) for b in OONI_BLOCKING if isinstance(b, str)),
            )
        accessible = raw["accessible"]
        if accessible not in (True, False, None):
            raise self.fail((*path, "accessible"), "accessible must be true, false or null")
        attribution = raw.get("attribution")
        if attribution is not None:
            attribution = self.string((*path, "attribution"), attribution, "attribution")
            if self.presets is not None and attribution not in self.presets:
                raise self.fail(
                    (*path, "attribution"),
                    f"no personality preset {attribution!r}; known: " + ", ".join(sorted(self.presets)),
                )
        if profile is None and technique != NOT_CENSORSHIP:
            raise self.fail(
                (*path, "technique"), f"a scenario without a censor (profile: null) cannot expect {technique!r}"
            )
        return Expected(technique, blocking, accessible, attribution)

    def scenario(self, index: int, raw: Any, defaults: Mapping[str, Any]) -> Scenario:
        from chokepoint.probe.probes.common import ProbeError, parse_target

        path: tuple = ("scenarios", index)
        raw = self.mapping(path, raw, _SCENARIO_KEYS, "a scenario")
        for required in ("name", "target", "expected"):
            if required not in raw:
                raise self.fail(path, f"a scenario needs {required!r}")
        if "profile" not in raw:
            raise self.fail(path, "a scenario needs 'profile' (a profile name, or null for no censor)")
        kind = raw.get("kind", "probe")
        if kind not in KINDS:
            raise self.fail((*path, "kind"), f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        for k in _TRACE_ONLY_KEYS if kind == "probe" else _PROBE_ONLY_KEYS:
            if k in raw:
                raise self.fail((*path, k), f"{k!r} does not apply to a {kind} scenario", key=True)
        name = raw["name"]
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.fail((*path, "name"), "name must match [a-z0-9][a-z0-9-]* (at most 80 characters)")
        if name in self.seen:
            raise self.fail((*path, "name"), f"duplicate scenario name {name!r} (first at {self.seen[name]})")
        self.seen[name] = self.marks.value((*path, "name"))
        profile = raw["profile"]
        if profile is not None:
            profile = self.string((*path, "profile"), profile, "profile")
            if self.profiles is not None and profile not in self.profiles:
                raise self.fail(
                    (*path, "profile"), f"no bundled profile {profile!r}; known: " + ", ".join(sorted(self.profiles))
                )
        target = self.string((*path, "target"), raw["target"], "target")
        if kind == "trace":
            if not _DOMAIN_RE.match(target):
                raise self.fail((*path, "target"), "a trace scenario's target is the blocked domain name")
        else:
            try:
                parse_target(target)
            except ProbeError as exc:
                raise self.fail((*path, "target"), f"bad target: {exc}") from None
        settings = self.settings(path, raw, defaults)
        rule = raw.get("rule")
        if rule is not None:
            rule = self.string((*path, "rule"), rule, "rule")
        seed = raw.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
            raise self.fail((*path, "seed"), "seed must be a non-negative integer")
        note = raw.get("note", "")
        if not isinstance(note, str):
            raise self.fail((*path, "note"), "note must be a string")
        local_time = raw.get("local_time")
        if local_time is not None:
            try:
                parse_local_time(local_time)
            except ValueError as exc:
                raise self.fail((*path, "local_time"), str(exc)) from None
            if profile is None:
                raise self.fail((*path, "local_time"), "local_time needs a censor (a profile)")
        as_of = raw.get("as_of")
        if as_of is not None:
            as_of = self.day((*path, "as_of"), as_of, profile)
        trace = None
        if kind == "trace":
            trace = self.trace(path, raw, profile)
            expected = Expected(NOT_CENSORSHIP, None, None)
        else:
            expected = self.expected((*path, "expected"), raw["expected"], profile)
        return Scenario(
            name=name,
            profile=profile,
            mode=settings["mode"],
            target=target,
            tests=settings["tests"] if kind == "probe" else (),
            expected=expected,
            resolver=settings["resolver"],
            timeout=settings["timeout"],
            quick=settings["quick"],
            rule=rule,
            note=note.strip(),
            seed=seed,
            source=str(self.marks.value(path)),
            local_time=local_time,
            as_of=as_of,
            kind=kind,
            trace=trace,
        )

    def trace(self, path: tuple, raw: Mapping[str, Any], profile: str | None) -> TraceSpec:
        """A trace scenario's protocol, hop positions, censor parameters and expected outcome."""
        if profile is None:
            raise self.fail((*path, "profile"), "a trace scenario needs a censor (a profile)")
        for required in ("protocol", "hops_client", "hops_server"):
            if required not in raw:
                raise self.fail(path, f"a trace scenario needs {required!r}")
        protocol = raw["protocol"]
        if protocol not in TRACE_PROTOCOLS:
            raise self.fail((*path, "protocol"), f"protocol must be one of {', '.join(TRACE_PROTOCOLS)}")
        hops = {}
        for key, low in (("hops_client", 0), ("hops_server", 1)):
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 16:
                why = " (the hop after the censor shows what it forwarded)" if low else ""
                raise self.fail((*path, key), f"{key} must be an integer from {low} to 16{why}")
            hops[key] = value
        delay = raw.get("delay_ms", 10)
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= 5000:
            raise self.fail((*path, "delay_ms"), "delay_ms must be a number of milliseconds in [0, 5000]")
        params = raw.get("params") or {}
        if not isinstance(params, Mapping):
            raise self.fail((*path, "params"), "params must be a mapping RULE.PARAM: VALUE")
        for k, v in params.items():
            if not isinstance(k, str) or "." not in k or isinstance(v, (Mapping, list)):
                raise self.fail((*path, "params", k), "params must map RULE.PARAM to a scalar value")
        timestamps = self.boolean((*path, "tcp_timestamps"), raw.get("tcp_timestamps", True), "tcp_timestamps")
        exp = self.mapping((*path, "expected"), raw["expected"], ("outcome",), "a trace scenario's expected")
        outcome = exp.get("outcome", "censor-identified")
        if outcome not in TRACE_OUTCOMES:
            raise self.fail((*path, "expected", "outcome"), f"outcome must be one of {', '.join(TRACE_OUTCOMES)}")
        return TraceSpec(
            protocol=protocol,
            hops_client=hops["hops_client"],
            hops_server=hops["hops_server"],
            delay_ms=float(delay),
            params=tuple((str(k), str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()),
            tcp_timestamps=timestamps,
            outcome=outcome,
        )

    def day(self, path: tuple, value: Any, profile: str | None) -> str:
        """``as_of``: a day (``YYYY-MM-DD``) the scenario's profile covers."""
        from chokepoint.policy import PolicyError as _PolicyError
        from chokepoint.policy import load_profile
        from chokepoint.policy.dates import parse_as_of

        if profile is None:
            raise self.fail(path, "as_of needs a censor (a profile)")
        try:
            day = parse_as_of(str(value))
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None
        if self.profiles is not None:
            try:
                load_profile(profile, as_of=day)
            except _PolicyError as exc:
                raise self.fail(path, exc.message) from None
        return day.isoformat()


def _known_profiles() -> frozenset[str]:
    from chokepoint.policy import list_profiles
    from chokepoint.policy.profile import named_dates

    names = set(named_dates())
    for item in list_profiles():
        names.add(item if isinstance(item, str) else getattr(item, "name", str(item)))
    return frozenset(names)


def _known_presets() -> frozenset[str]:
    from chokepoint.enforce.personality import PRESETS

    return frozenset(PRESETS)


def parse_catalogue(text: str, file: str = "<catalogue>", *, check_names: bool = True) -> tuple[Scenario, ...]:
    """The scenarios of a catalogue text. ``check_names``: profiles and attribution presets must exist.

    Raises ``CatalogueError`` (file:line:column) for any problem, YAML syntax included."""
    try:
        data, marks = load_yaml(text, file)
    except PolicyError as exc:
        raise CatalogueError(exc.file, exc.line, exc.column, exc.message) from None
    checker = _Checker(marks, _known_profiles() if check_names else None, _known_presets() if check_names else None)
    data = checker.mapping((), data, ("defaults", "scenarios"), "a catalogue")
    base: dict[str, Any] = {
        "mode": "inline",
        "tests": _DEFAULT_TESTS,
        "resolver": "system",
        "timeout": _DEFAULT_TIMEOUT,
        "quick": False,
    }
    if data.get("defaults") is not None:
        raw = checker.mapping(("defaults",), data["defaults"], _DEFAULT_KEYS, "defaults")
        base = checker.settings(("defaults",), raw, base)
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, list) or not scenarios:
        raise checker.fail(("scenarios",), "a catalogue needs a non-empty list 'scenarios'")
    return tuple(checker.scenario(i, raw, base) for i, raw in enumerate(scenarios))


def load_catalogue(path: str | Path | None = None, *, check_names: bool = True) -> tuple[Scenario, ...]:
    """Read a catalogue file (default: the bundled one). Raises ``CatalogueError``."""
    path = Path(path) if path is not None else BUNDLED_CATALOGUE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError(str(path), 1, 1, f"cannot read the catalogue: {exc}") from None
    return parse_catalogue(text, str(path), check_names=check_names)


def select(
    scenarios: Sequence[Scenario], *, profiles: Sequence[str] = (), names: Sequence[str] = (), quick: bool = False
) -> tuple[Scenario, ...]:
    """The scenarios to run, in catalogue order. ``profiles``: profile names ("none" = no censor);
    ``names``: scenario names or shell-style patterns; ``quick``: only the reduced CI set.
    Raises ``ValueError`` for a profile or name that selects nothing."""
    from fnmatch import fnmatchcase

    chosen = list(scenarios)
    if quick:
        chosen = [s for s in chosen if s.quick]
    if profiles:
        wanted = set(profiles)
        unknown = wanted - {s.profile or NOT_CENSORSHIP for s in scenarios}
        if unknown:
            raise ValueError(f"no scenario uses profile(s) {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if (s.profile or NOT_CENSORSHIP) in wanted]
    if names:
        for pattern in names:
            if not any(fnmatchcase(s.name, pattern) for s in scenarios):
                raise ValueError(f"no scenario named {pattern!r}")
        chosen = [s for s in chosen if any(fnmatchcase(s.name, p) for p in names)]
    return tuple(chosen)
