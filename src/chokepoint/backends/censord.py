"""The censor daemon: one engine, an inline (NFQUEUE) or on-path (AF_PACKET) front, events and counters.

``python -m chokepoint.backends.censord --mode inline|mirror (--profile NAME | --rules FILE) [--fail-closed]
[--seed N] [--queue-num N] [--queue-maxlen N] [--client-iface ce0] [--server-iface ce1] [--intercept-port N]
[--clock-offset SECONDS | --fake-time ISO8601] [--param RULE.PARAM=VALUE ...] --state-dir DIR``
runs in the censor's network namespace (``lab up`` starts it through
:func:`launch`). It installs the kernel program (:mod:`chokepoint.backends.kernel`; inline only — mirror
mode removes any left over and never drops), then feeds every packet it sees to the engine. When a flow's
verdict is reached, :func:`chokepoint.enforce.plan` says what to do; the backend injects the plan's packets
(:mod:`chokepoint.backends.inject`), drops or accepts the trigger, adds the residual block and marks the
flow for the kernel. A profile with ``tls-intercept`` rules (inline mode) also gets the TLS-intercepting proxy
(:mod:`chokepoint.backends.intercept`, a child process) and the kernel's redirect of the ports those rules
can match to it; it writes its own events to the same ``events.jsonl`` and its counters under ``intercept``.

Files in ``DIR`` (the lab's ``/run/chokepoint-lab``):

- ``censor-stats.json``, rewritten (atomically) every second: packets seen/accepted/dropped/held,
  verdicts by action and by rule, injections, residual entries, flows, errors, engine counters;
  ``"running": false`` after a clean stop.
- ``events.jsonl``: the Suricata-EVE flow record of every flow that ended (``flow_to_eve``) and, per
  enforced verdict, an ``event_type: "chokepoint"`` record with the plan and the fields of every injected
  packet (the probes' ground truth).

**Clock.** Everything the daemon stamps (the engine's packet time, hence ``local_hour``; residual expiry;
event timestamps; the stats) reads ``time.time() + offset``. ``--clock-offset S`` sets the offset;
``--fake-time 2026-11-27T02:30:00+06:30`` (ISO 8601 with a fixed UTC offset, so no DST rules apply) sets it so
that the clock reads that instant at start and runs on from there: a profile's schedule (Myanmar's nightly
shutdown) can be exercised at any hour. The kernel's timers (residual sets, tc) are relative and unaffected.
``--param RULE.PARAM=VALUE`` (repeatable) overrides a rule parameter at load time
(``load_profile(..., params=...)``; an unknown rule or parameter is refused at start). The stats show both
(``"clock"``, ``"params"``).

SIGTERM/SIGINT stop it cleanly (remaining flows are written, kernel state removed). After ``kill -9`` or a
crash the kernel state stays: with ``--queue-bypass`` (default) the kernel then accepts what it would have
queued (fail-open; flows already blocked stay blocked); with ``--fail-closed`` those packets are dropped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chokepoint.backends.inject import InjectError, Injector
from chokepoint.backends.kernel import ResidualKey
from chokepoint.dissect import dns
from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.engine import Engine, Step
from chokepoint.output.eve import PROTO_NAMES, eve_timestamp, flow_id, flow_to_eve
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import TCP, UDP, Packet, tcp_flags_text
from chokepoint.policy.verdict import Action, Verdict

STATS_FILE = "censor-stats.json"
EVENTS_FILE = "events.jsonl"
STATS_INTERVAL = 1.0
MODES = ("inline", "mirror")
#: Bytes of an injected packet's payload written to events.jsonl (hex).
EVENT_PAYLOAD_BYTES = 1500
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101



def _ip_text(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def packet_fields(packet: bytes) -> dict[str, Any]:
    """The header fields of a crafted IP packet, for the event log (decoded by the engine's own decoder)."""
    decoded = Decoder().decode(Frame(0.0, LINKTYPE_RAW, packet, len(packet), 0))
    if decoded is None:
        return {"undecodable": True, "size": len(packet)}
    out: dict[str, Any] = {
        "ip_version": decoded.ip_version, "src_ip": _ip_text(decoded.src), "dest_ip": _ip_text(decoded.dst),
        "proto": PROTO_NAMES.get(decoded.proto, str(decoded.proto)), "ttl": decoded.ttl, "size": len(packet),
    }
    if decoded.ip_version == 4:
        out.update(ip_id=decoded.ip_id, df=decoded.df)
    if decoded.proto in (TCP, UDP):
        out.update(src_port=decoded.sport, dest_port=decoded.dport)
    if decoded.proto == TCP:
        out.update(tcp_flags=tcp_flags_text(decoded.tcp_flags), seq=decoded.seq, ack=decoded.ack,
                   window=decoded.window)
    if decoded.icmp_type >= 0:
        out.update(icmp_type=decoded.icmp_type, icmp_code=decoded.icmp_code)
    payload = decoded.payload
    out["payload_len"] = len(payload)
    if payload:
        out["payload_hex"] = payload[:EVENT_PAYLOAD_BYTES].hex()
    if decoded.proto == UDP and payload:
        try:
            message = dns.parse_message(payload)
        except (NotThisProtocol, NeedMoreData, Malformed):
            message = None
        if message is not None and message.is_response:
            out["dns"] = {"id": message.id, "flags": f"{message.flags:04x}",
                          "answers": [{"rrname": r.name, "rrtype": r.rtype, "ttl": r.ttl, "rdata": r.value}
                                      for r in message.answers]}
    return out


def residual_key(residual: Any) -> ResidualKey:
    """The kernel key of a :class:`chokepoint.enforce.Residual` (fields its scope leaves out are None)."""
    return ResidualKey(scope=residual.scope, client_ip=residual.client_ip or "", server_ip=residual.server_ip or "",
                       server_port=residual.server_port or 0, client_port=residual.client_port or 0,
                       proto=residual.proto)


def fake_time_offset(text: str, now: float | None = None) -> float:
    """Seconds to add to the wall clock (``now``, default ``time.time()``) so that it reads ``text`` now.

    ``text`` is an ISO 8601 date and time with a fixed UTC offset (``2026-11-27T02:30:00+06:30``, ``...Z``;
    ISO 8601-1:2019 5.3.4): a time without one would depend on the machine's zone and its DST rules.
    ``ValueError`` with the reason for anything else."""
    try:
        instant = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date and time: {text!r} (e.g. 2026-11-27T02:30:00+06:30)") from None
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset: add one, e.g. {text.strip()}+06:30 or {text.strip()}Z")
    return instant.timestamp() - (time.time() if now is None else now)


def clock_offset(text: str) -> float:
    """A clock offset in seconds (may be negative); ``ValueError`` unless a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not a finite number of seconds: {text!r}")
    return value


def param_override(text: str) -> tuple[str, str]:
    """``RULE.PARAM=VALUE`` as ``("RULE.PARAM", "VALUE")`` (the value is YAML text, checked by the loader);
    ``ValueError`` when the shape is wrong."""
    key, sep, value = text.partition("=")
    rule, dot, param = key.strip().rpartition(".")
    if not sep or not dot or not rule or not param:
        raise ValueError(f"expected RULE.PARAM=VALUE, not {text!r} (e.g. tsg-unknown-high-volume.after_s=5)")
    return f"{rule}.{param}", value.strip()


def check_params(profile, personality) -> None:
    """Every rule's params must be understood by the enforcer: a ``PolicyError`` now, not at the first
    matching packet."""
    from chokepoint.enforce import effective

    for rule in profile.policy.rules:
        if rule.action is not Action.LOG:
            effective(personality, rule.params)


@dataclass(slots=True)
class Decision:
    """What a backend must do with one packet's flow, after the engine and the enforcer spoke."""

    step: Step
    pkt: Packet
    plan: Any = None                     # chokepoint.enforce Plan, for an enforced verdict decided now


class Censor:
    """The backend-independent part of the daemon: engine, enforcement plans, events, counters."""

    def __init__(self, profile, *, mode: str, personality: Any = None, seed: int | None = None,
                 state_dir: Path | None = None, fail_closed: bool = False, clock=time.time,
                 clock_offset_s: float = 0.0, params: Mapping[str, str] | None = None) -> None:
        """``clock() + clock_offset_s`` is the daemon's time; ``params``: the rule-param overrides the
        profile was loaded with (shown in the stats)."""
        from chokepoint import enforce

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.profile = profile
        self.mode = mode
        self.fail_closed = fail_closed
        self.seed = seed
        self.clock_offset_s = float(clock_offset_s)
        self.clock = (lambda: clock() + self.clock_offset_s) if self.clock_offset_s else clock
        self.params = dict(params or {})
        self.rng = random.Random(seed)
        self.enforce = enforce
        self.stamper = enforce.Stamper(random.Random(self.rng.getrandbits(64)))
        if personality is None:
            personality = getattr(profile, "personality", None)
        if not isinstance(personality, enforce.Personality):
            personality = enforce.parse_personality(personality)
        self.personality = personality
        check_params(profile, personality)
        self.engine = Engine(profile, rng=random.Random(self.rng.getrandbits(64)))
        self.decoder = Decoder.from_settings(profile.engine)
        self.injector = Injector()
        self.counters: Counter[str] = Counter()
        self.verdicts_by_action: Counter[str] = Counter()
        self.verdicts_by_rule: Counter[str] = Counter()
        self.residual_expiry: dict[tuple[str, ResidualKey], tuple[float, str]] = {}
        self._rule_params: dict[str, tuple] = {}
        self.state_dir = Path(state_dir) if state_dir else None
        self.started = self.clock()
        self.flow_end_hooks: list = []       # backends release per-flow kernel resources here
        self.extra_stats: dict[str, Any] = {}  # name -> callable returning a section of the stats (intercept)
        self.last_sent = 0.0                 # time.perf_counter() after the last injection was handed over
        self._events = None
        self._next_stats = 0.0
        self._index = 0
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._events = open(self.state_dir / EVENTS_FILE, "a", encoding="utf-8", buffering=1)

    # -- packets ----------------------------------------------------------------------------------------
    def observe(self, data: bytes, linktype: int = LINKTYPE_RAW, orig_len: int | None = None) -> Decision | None:
        """Decode one packet and run it through the engine; None when it does not decode (counted)."""
        self._index += 1
        self.counters["seen"] += 1
        now = self.clock()
        pkt = self.decoder.decode(Frame(now, linktype, data, orig_len or len(data), self._index))
        if pkt is None:
            self.counters["undecodable"] += 1
            return None
        step = self.engine.step(pkt)
        if step.ended:
            self.flows_ended(step.ended)
        decision = Decision(step, pkt)
        flow = step.flow
        if step.decided_now:
            verdict = flow.verdict
            self.verdicts_by_action[verdict.action.value] += 1
            self.verdicts_by_rule[verdict.rule_id] += 1
            if verdict.action is not Action.ALLOW:
                self._rule_params[verdict.rule_id] = verdict.params
                raw = data if linktype == LINKTYPE_RAW else ip_packet(data)
                decision.plan = self.enforce.plan(verdict, flow, pkt, raw, step.direction, self.personality,
                                                  self.stamper, now, mode=self.mode)
        return decision

    def inject(self, plan: Any) -> list[dict[str, Any]]:
        """Send the plan's packets (all of them first: the race is on), then their fields (or the error)
        for the event log."""
        errors: list[str | None] = []
        for injection in plan.injections:
            try:
                self.injector.send(injection.packet)
                self.counters[f"injected_to_{injection.to}"] += 1
                errors.append(None)
            except InjectError as exc:
                self.counters["inject_errors"] += 1
                errors.append(str(exc))
                print(f"censord: {exc}", file=sys.stderr)
        self.last_sent = time.perf_counter()
        sent = []
        for injection, error in zip(plan.injections, errors):
            fields = packet_fields(injection.packet)
            fields["to"] = injection.to
            fields["what"] = injection.what
            if injection.injector:
                fields["injector"] = injection.injector
            if error:
                fields["error"] = error
            sent.append(fields)
        return sent

    def note_residual(self, key: ResidualKey, action: str, seconds: float, rule_id: str = "") -> None:
        """Remember a residual block (counted; matched in user space by the mirror backend)."""
        self.residual_expiry[(action, key)] = (self.clock() + seconds, rule_id)
        self.counters["residual_added"] += 1

    def residual_active(self) -> int:
        now = self.clock()
        for k in [k for k, (until, _) in self.residual_expiry.items() if until <= now]:
            del self.residual_expiry[k]
        return len(self.residual_expiry)

    def residual_match(self, pkt: Packet) -> tuple[str, ResidualKey, str] | None:
        """(action, key, rule id) of an active residual entry matching a packet in either direction."""
        if not self.residual_expiry:
            return None
        now = self.clock()
        src, dst = _ip_text(pkt.src), _ip_text(pkt.dst)
        for (action, key), (until, rule_id) in self.residual_expiry.items():
            if until <= now:
                continue
            for c_ip, c_port, s_ip, s_port in ((src, pkt.sport, dst, pkt.dport), (dst, pkt.dport, src, pkt.sport)):
                if key.scope in ("3-tuple", "4-tuple", "client-server") and key.client_ip != c_ip:
                    continue
                if key.server_ip != s_ip:
                    continue
                if key.scope in ("3-tuple", "4-tuple", "server") and key.server_port != s_port:
                    continue
                if key.scope == "4-tuple" and key.client_port != c_port:
                    continue
                return action, key, rule_id
        return None

    def residual_plan(self, flow, pkt: Packet, direction: int, rule_id: str, raw: bytes) -> tuple[Any, Verdict]:
        """The plan of a reset for a packet caught by a residual block (mirror mode): the rule's own
        parameters, so the reset looks like the original one and the residual is re-armed if it says so."""
        original = self._rule_params.get(rule_id, ())
        verdict = Verdict(Action.RESET, rule_id=rule_id, reason="residual block",
                          params=tuple((k, v) for k, v in original if k != "probability"),
                          packet_index=pkt.index, direction="c2s" if direction == 0 else "s2c")
        return self.enforce.plan(verdict, flow, pkt, raw, direction, self.personality, self.stamper,
                                 self.clock(), mode=self.mode), verdict

    # -- events -----------------------------------------------------------------------------------------
    def record_action(self, decision: Decision, injected: list[dict[str, Any]], *, trigger_dropped: bool,
                      kernel: dict[str, Any] | None = None, verdict: Verdict | None = None) -> dict[str, Any]:
        """Write the ``chokepoint`` event of one enforced plan (``verdict``: when it is not the flow's)."""
        flow, plan = decision.step.flow, decision.plan
        verdict = verdict or flow.verdict
        residual = None
        if plan.residual is not None:
            r = plan.residual
            residual = {"scope": r.scope, "key": residual_key(r).value(), "seconds": r.seconds,
                        "action": r.action, "rearm": r.rearm}
        record = {
            "timestamp": eve_timestamp(self.clock()),
            "flow_id": flow_id(flow),
            "event_type": "chokepoint",
            "src_ip": flow.client_text, "src_port": flow.client_port,
            "dest_ip": flow.server_text, "dest_port": flow.server_port,
            "proto": PROTO_NAMES.get(flow.proto, str(flow.proto)),
            "app_proto": flow.facts.app_proto,
            "chokepoint": {
                "profile": self.profile.name, "mode": self.mode,
                "action": verdict.action.value, "rule": verdict.rule_id, "reason": verdict.reason,
                "evidence": [e.to_json() for e in verdict.evidence],
                "trigger": {"direction": "c2s" if decision.step.direction == 0 else "s2c",
                            "packet": decision.pkt.index, "dropped": trigger_dropped},
                "flow_action": plan.flow_action, "drop_direction": plan.drop_direction, "residual": residual,
                "throttle_kbps": plan.throttle_kbps, "delay_ms": plan.delay_ms, "notes": list(plan.notes),
                "injected": injected,
            },
        }
        if kernel:
            record["chokepoint"]["kernel"] = kernel
        self._write_event(record)
        self.counters["actions"] += 1
        return record

    def flows_ended(self, flows) -> None:
        for flow in flows:
            self.counters["flows_ended"] += 1
            for hook in self.flow_end_hooks:
                hook(flow)
            self._write_event(flow_to_eve(flow, self.profile.name))

    def _write_event(self, record: dict[str, Any]) -> None:
        if self._events is not None:
            self._events.write(json.dumps(record, separators=(",", ":")) + "\n")

    # -- stats ------------------------------------------------------------------------------------------
    def stats(self, *, running: bool = True, backend: dict[str, Any] | None = None) -> dict[str, Any]:
        engine = self.engine
        return {
            "running": running, "pid": os.getpid(), "mode": self.mode, "profile": self.profile.name,
            "fail_closed": self.fail_closed, "seed": self.seed,
            "started": self.started, "updated": self.clock(), "clock": self.clock_stats(),
            "params": dict(self.params),
            "packets": {"seen": self.counters["seen"], "undecodable": self.counters["undecodable"]}
            | (backend or {}).get("packets", {}),
            "verdicts": {"by_action": dict(self.verdicts_by_action), "by_rule": dict(self.verdicts_by_rule)},
            "injections": {k: v for k, v in self.counters.items() if k.startswith(("injected", "inject_"))},
            "residual": {"added": self.counters["residual_added"], "active": self.residual_active()},
            "flows": {"active": len(engine.table), "ended": self.counters["flows_ended"],
                      "created": engine.table.counters["flows_created"]},
            "actions": self.counters["actions"],
            "errors": {k: v for k, v in self.counters.items() if "error" in k}
            | (backend or {}).get("errors", {}),
            "engine": dict(engine.counters),
            "decoder": dict(self.decoder.counters),
            "backend": {k: v for k, v in (backend or {}).items() if k not in ("packets", "errors")},
        } | {name: section() for name, section in self.extra_stats.items()}

    def clock_stats(self) -> dict[str, Any]:
        """The daemon's time: offset from the wall clock, now (epoch seconds), as UTC and as the profile's
        local time (``local_hour`` is read from the latter)."""
        now = self.clock()
        offset = getattr(getattr(self.profile, "meta", None), "utc_offset_s", 0)
        return {"offset_s": self.clock_offset_s, "now": now,
                "utc": dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat(timespec="seconds"),
                "local": dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(seconds=offset)))
                .isoformat(timespec="seconds")}

    def maybe_write_stats(self, backend: dict[str, Any] | None = None, *, force: bool = False,
                          running: bool = True) -> None:
        now = self.clock()
        if self.state_dir is None or (not force and now < self._next_stats):
            return
        self._next_stats = now + STATS_INTERVAL
        target = self.state_dir / STATS_FILE
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.stats(running=running, backend=backend), indent=1, sort_keys=True))
        os.replace(tmp, target)

    def close(self, backend: dict[str, Any] | None = None) -> None:
        """Write every remaining flow and the final counters."""
        self.flows_ended(self.engine.finish())
        self.maybe_write_stats(backend, force=True, running=False)
        if self._events is not None:
            self._events.close()
            self._events = None
        self.injector.close()


def ip_packet(frame: bytes) -> bytes:
    """The IP packet inside an Ethernet frame (VLAN tags skipped, trailing padding cut by the IP length)."""
    off, ethertype = 14, int.from_bytes(frame[12:14], "big")
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        ethertype = int.from_bytes(frame[off + 2:off + 4], "big")
        off += 4
    packet = frame[off:]
    if ethertype == 0x0800 and len(packet) >= 4:
        length = int.from_bytes(packet[2:4], "big")
    elif ethertype == 0x86DD and len(packet) >= 6:
        length = 40 + int.from_bytes(packet[4:6], "big")
    else:
        return packet
    return packet[:length] if 0 < length < len(packet) else packet


# -- the daemon -------------------------------------------------------------------------------------------
class _Stop:
    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        self.requested = True


def load_policy(profile: str | None, rules: str | None, params: Mapping[str, str] | None = None):
    """The daemon's profile: ``--rules FILE`` or ``--profile NAME`` (default demo), with ``--param`` overrides
    (also the intercept proxy's, which the daemon starts with the same arguments)."""
    from chokepoint.policy import load_profile, load_rules_file

    if rules:
        return load_rules_file(rules, params=params or None)
    return load_profile(profile or "demo", params=params or None)


def _argtype(parse, what: str):
    """An argparse ``type`` from a parser raising ``ValueError``: the reason becomes the usage error."""
    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = what
    return convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chokepoint.backends.censord",
                                     description="Chokepoint censor daemon (inline NFQUEUE or mirror AF_PACKET)")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--profile", help="bundled profile name or profile file")
    parser.add_argument("--rules", help="a rule file (profile block optional) instead of --profile")
    parser.add_argument("--fail-closed", action="store_true", help="no --queue-bypass: drop when the daemon is gone")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--queue-num", type=int, default=0)
    parser.add_argument("--queue-maxlen", type=int, default=4096,
                        help="packets the kernel keeps waiting for a verdict (then: fail open, or drop)")
    parser.add_argument("--client-iface", default="ce0")
    parser.add_argument("--server-iface", default="ce1")
    parser.add_argument("--keep-kernel-state", action="store_true",
                        help="leave the kernel program in place on a clean stop")
    parser.add_argument("--intercept-port", type=int, default=None,
                        help="port of the TLS-intercepting proxy (tls-intercept rules; default 14443)")
    clock = parser.add_mutually_exclusive_group()
    clock.add_argument("--clock-offset", type=_argtype(clock_offset, "clock offset"), default=None,
                       metavar="SECONDS", help="the daemon's clock is the wall clock plus this (may be negative)")
    clock.add_argument("--fake-time", type=_argtype(fake_time_offset, "ISO 8601 time"), default=None,
                       dest="fake_time_offset", metavar="ISO8601",
                       help="start the daemon's clock at this instant, e.g. 2026-11-27T02:30:00+06:30")
    parser.add_argument("--param", type=_argtype(param_override, "RULE.PARAM=VALUE"), action="append",
                        default=[], metavar="RULE.PARAM=VALUE", help="override a rule parameter (repeatable)")
    args = parser.parse_args(argv)
    if args.profile and args.rules:
        parser.error("give either --profile or --rules, not both")
    offset = args.clock_offset if args.clock_offset is not None else (args.fake_time_offset or 0.0)
    params = dict(args.param)

    from chokepoint.lab.system import CommandError
    from chokepoint.policy import PolicyError

    try:
        profile = load_policy(args.profile, args.rules, params)
    except PolicyError as exc:
        print(f"censord: profile rejected: {exc}", file=sys.stderr)
        return 1
    from chokepoint.backends.kernel import KernelProgram

    kernel = KernelProgram(None, queue_num=args.queue_num, fail_closed=args.fail_closed,
                           client_iface=args.client_iface, server_iface=args.server_iface)
    try:
        censor = Censor(profile, mode=args.mode, seed=args.seed, state_dir=args.state_dir,
                        fail_closed=args.fail_closed, clock_offset_s=offset, params=params)
    except PolicyError as exc:
        print(f"censord: profile rejected: {exc}", file=sys.stderr)
        return 1
    try:
        intercept = _start_intercept(args, profile, kernel, censor)
    except OSError as exc:
        print(f"censord: cannot start the TLS-intercepting proxy: {exc}", file=sys.stderr)
        censor.close()
        return 3
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if args.mode == "inline":
            from chokepoint.backends.nfqueue import InlineBackend

            backend = InlineBackend(censor, kernel, queue_num=args.queue_num, max_len=args.queue_maxlen)
        else:
            from chokepoint.backends.mirror import MirrorBackend

            backend = MirrorBackend(censor, kernel, (args.client_iface, args.server_iface))
        backend.start()
    except (OSError, CommandError) as exc:
        # The backend undid its own half-start; another censor's kernel state is left alone.
        print(f"censord: cannot start the {args.mode} backend: {exc}", file=sys.stderr)
        if intercept is not None:
            intercept.stop()
        censor.close()
        return 3
    censor.maybe_write_stats(backend.counters(), force=True)
    clock_note = f", clock {censor.clock_stats()['local']} ({offset:+.0f} s)" if offset else ""
    params_note = f", params {' '.join(f'{k}={v}' for k, v in params.items())}" if params else ""
    print(f"censord: {args.mode} censor running, profile {profile.name}, pid {os.getpid()}{clock_note}"
          f"{params_note}", file=sys.stderr, flush=True)
    try:
        backend.run(lambda: stop.requested)
    except BaseException:
        # A crash behaves like kill -9: the kernel program stays, so traffic fails open (--queue-bypass)
        # or closed, as configured; the traceback goes to the log.
        backend.stop()
        if intercept is not None:
            intercept.stop()
        censor.close(backend.counters())
        raise
    backend.stop()
    if not args.keep_kernel_state:
        kernel.remove()
    if intercept is not None:
        intercept.stop()
    censor.close(backend.counters())
    return 0


def _start_intercept(args: argparse.Namespace, profile, kernel, censor: Censor):
    """The TLS-intercepting proxy and the kernel's redirect to it, when the profile has ``tls-intercept``
    rules and the censor is inline (a mirror censor cannot terminate connections: those flows pass, noted
    in their events). Returns the proxy's ``InterceptProcess`` or None; ``OSError`` when it cannot start."""
    from chokepoint.backends import intercept

    port = args.intercept_port or intercept.DEFAULT_PORT
    redirect = intercept.redirect_for(profile.policy, port)
    if redirect is None:
        return None
    if args.mode != "inline":
        print("censord: mirror mode cannot intercept TLS: tls-intercept flows pass untouched", file=sys.stderr)
        return None
    try:
        proxy = intercept.InterceptProcess.start(args.state_dir, profile=args.profile, rules=args.rules,
                                                 port=port, seed=args.seed, clock_offset_s=censor.clock_offset_s,
                                                 params=dict(args.param) or None)
    except intercept.InterceptError as exc:
        raise OSError(str(exc)) from None
    kernel.redirect = redirect

    def section() -> dict[str, Any]:
        return {"port": port, "pid": proxy.proc.pid, "alive": proxy.alive(),
                "redirect": {"ports": [list(p) for p in redirect.ports],
                             "destinations": list(redirect.destinations)},
                "counters": proxy.stats().get("counters", {})}

    censor.extra_stats["intercept"] = section
    return proxy


def launch(state, mode: str, profile: str, fail_closed: bool = False, seed: int | None = None, *,
           rules: str | None = None, timeout: float = 10.0, clock_offset_s: float | None = None,
           params: Mapping[str, str] | None = None):
    """Start the daemon detached in the censor namespace (for ``lab up``) and wait until it runs.

    ``state`` is a :class:`chokepoint.lab.state.LabState`. ``clock_offset_s``: ``--clock-offset``;
    ``params``: ``--param`` overrides. Returns its ``ProcessInfo``; raises
    ``chokepoint.lab.state.StateError`` with the daemon's log when it does not come up."""
    from chokepoint.lab.state import StateError

    argv = ["--mode", mode, "--state-dir", str(state.state_dir)]
    argv += ["--rules", rules] if rules else ["--profile", profile]
    if fail_closed:
        argv.append("--fail-closed")
    if seed is not None:
        argv += ["--seed", str(seed)]
    if clock_offset_s is not None:
        argv.append(f"--clock-offset={float(clock_offset_s)!r}")
    for key, value in (params or {}).items():
        argv += ["--param", f"{key}={value}"]
    stats = Path(state.state_dir) / STATS_FILE
    stats.unlink(missing_ok=True)
    info = state.start("censor", "censor", state.python_argv("chokepoint.backends.censord", *argv))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not info.alive():
            raise StateError(f"the censor daemon exited at start; its log ({info.log}):\n{info.log_tail()}")
        try:
            if json.loads(stats.read_text()).get("running"):
                return info
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise StateError(f"the censor daemon did not come up within {timeout:g} s; its log ({info.log}):\n"
                     f"{info.log_tail()}")


__all__ = ["Censor", "Decision", "EVENTS_FILE", "STATS_FILE", "check_params", "clock_offset", "fake_time_offset",
           "ip_packet", "launch", "load_policy", "main", "packet_fields", "param_override", "residual_key",
           "tcp_flags_text"]


if __name__ == "__main__":
    # Run the canonical module's main, so the backends (which import this module) share its classes.
    from chokepoint.backends.censord import main as _main

    sys.exit(_main())


