"""The backend-independent core of a censor node: engine, enforcement plans, events and counters.

:class:`Censor` is what the inline (:mod:`chokepoint.backends.nfqueue`) and on-path
(:mod:`chokepoint.backends.mirror`) backends drive, one packet at a time; :class:`Decision` is what it tells
them to do with a packet. The daemon that starts them is :mod:`chokepoint.backends.censord`; this module never
imports it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import sys
import threading
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
        "ip_version": decoded.ip_version,
        "src_ip": _ip_text(decoded.src),
        "dest_ip": _ip_text(decoded.dst),
        "proto": PROTO_NAMES.get(decoded.proto, str(decoded.proto)),
        "ttl": decoded.ttl,
        "size": len(packet),
    }
    if decoded.ip_version == 4:
        out.update(ip_id=decoded.ip_id, df=decoded.df)
    if decoded.proto in (TCP, UDP):
        out.update(src_port=decoded.sport, dest_port=decoded.dport)
    if decoded.proto == TCP:
        out.update(tcp_flags=tcp_flags_text(decoded.tcp_flags), seq=decoded.seq, ack=decoded.ack, window=decoded.window)
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
            out["dns"] = {
                "id": message.id,
                "flags": f"{message.flags:04x}",
                "answers": [
                    {"rrname": r.name, "rrtype": r.rtype, "ttl": r.ttl, "rdata": r.value} for r in message.answers
                ],
            }
    return out


def residual_key(residual: Any) -> ResidualKey:
    """The kernel key of a :class:`chokepoint.enforce.Residual` (fields its scope leaves out are None)."""
    return ResidualKey(
        scope=residual.scope,
        client_ip=residual.client_ip or "",
        server_ip=residual.server_ip or "",
        server_port=residual.server_port or 0,
        client_port=residual.client_port or 0,
        proto=residual.proto,
    )


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
    plan: Any = None  # chokepoint.enforce Plan, for an enforced verdict decided now


class Censor:
    """The backend-independent part of the daemon: engine, enforcement plans, events, counters."""

    def __init__(
        self,
        profile,
        *,
        mode: str,
        personality: Any = None,
        seed: int | None = None,
        state_dir: Path | None = None,
        fail_closed: bool = False,
        clock=time.time,
        clock_offset_s: float = 0.0,
        params: Mapping[str, str] | None = None,
    ) -> None:
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
        self.flow_end_hooks: list = []  # backends release per-flow kernel resources here
        self.extra_stats: dict[str, Any] = {}  # name -> callable returning a section of the stats (intercept)
        self.last_sent = 0.0  # time.perf_counter() after the last injection was handed over
        self._events = None
        self._event_lock = threading.Lock()
        #: the censor's active prober (``chokepoint.activeprobe.scheduler``), when the profile has one
        self.active_prober: Any = None
        #: networks whose traffic is the censor's own (its prober's pool): never inspected
        self.ignore_networks: tuple[Any, ...] = ()
        self._next_stats = 0.0
        self._index = 0
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._events = open(self.state_dir / EVENTS_FILE, "a", encoding="utf-8", buffering=1)

    def swap_profile(self, profile) -> None:
        """Enforce ``profile`` from the next packet on (the node's policy reload: ``backends/control.py``);
        ``PolicyError`` when the enforcer cannot apply its rules' params, and then nothing changed. What flows
        see is :meth:`chokepoint.engine.Engine.swap_profile`'s; residual blocks and kernel state stay."""
        personality = getattr(profile, "personality", None)
        if not isinstance(personality, self.enforce.Personality):
            personality = self.enforce.parse_personality(personality)
        check_params(profile, personality)
        old_engine = self.profile.engine
        self.engine.swap_profile(profile)
        self.profile = profile
        self.personality = personality
        fragments = ("ip_fragment_reassembly", "ip_fragment_limit")
        if any(getattr(old_engine, k) != getattr(profile.engine, k) for k in fragments):
            self.decoder = Decoder.from_settings(profile.engine)  # pending fragments are dropped (counted anew)
        self.counters["policy_swaps"] += 1

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
        if self.ignore_networks and self._own(pkt):
            self.counters["own_traffic"] += 1
            return None
        step = self.engine.step(pkt)
        if step.ended:
            self.flows_ended(step.ended)
        decision = Decision(step, pkt)
        flow = step.flow
        if self.active_prober is not None and flow.logs:
            self.active_prober.on_flow(flow, now)
        if step.decided_now:
            verdict = flow.verdict
            self.verdicts_by_action[verdict.action.value] += 1
            self.verdicts_by_rule[verdict.rule_id] += 1
            if verdict.action is not Action.ALLOW:
                self._rule_params[verdict.rule_id] = verdict.params
                raw = data if linktype == LINKTYPE_RAW else ip_packet(data)
                decision.plan = self.enforce.plan(
                    verdict, flow, pkt, raw, step.direction, self.personality, self.stamper, now, mode=self.mode
                )
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
        verdict = Verdict(
            Action.RESET,
            rule_id=rule_id,
            reason="residual block",
            params=tuple((k, v) for k, v in original if k != "probability"),
            packet_index=pkt.index,
            direction="c2s" if direction == 0 else "s2c",
        )
        return self.enforce.plan(
            verdict, flow, pkt, raw, direction, self.personality, self.stamper, self.clock(), mode=self.mode
        ), verdict

    # -- events -----------------------------------------------------------------------------------------
    def record_action(
        self,
        decision: Decision,
        injected: list[dict[str, Any]],
        *,
        trigger_dropped: bool,
        kernel: dict[str, Any] | None = None,
        verdict: Verdict | None = None,
    ) -> dict[str, Any]:
        """Write the ``chokepoint`` event of one enforced plan (``verdict``: when it is not the flow's)."""
        flow, plan = decision.step.flow, decision.plan
        verdict = verdict or flow.verdict
        residual = None
        if plan.residual is not None:
            r = plan.residual
            residual = {
                "scope": r.scope,
                "key": residual_key(r).value(),
                "seconds": r.seconds,
                "action": r.action,
                "rearm": r.rearm,
            }
        record = {
            "timestamp": eve_timestamp(self.clock()),
            "flow_id": flow_id(flow),
            "event_type": "chokepoint",
            "src_ip": flow.client_text,
            "src_port": flow.client_port,
            "dest_ip": flow.server_text,
            "dest_port": flow.server_port,
            "proto": PROTO_NAMES.get(flow.proto, str(flow.proto)),
            **({"encap": list(flow.encap)} if flow.encap else {}),
            "app_proto": flow.app_proto,
            "chokepoint": {
                "profile": self.profile.name,
                "as_of": _day(self.profile),
                "mode": self.mode,
                "action": verdict.action.value,
                "rule": verdict.rule_id,
                "reason": verdict.reason,
                "evidence": [e.to_json() for e in verdict.evidence],
                "trigger": {
                    "direction": "c2s" if decision.step.direction == 0 else "s2c",
                    "packet": decision.pkt.index,
                    "dropped": trigger_dropped,
                },
                "flow_action": plan.flow_action,
                "drop_direction": plan.drop_direction,
                "residual": residual,
                "throttle_kbps": plan.throttle_kbps,
                "delay_ms": plan.delay_ms,
                "notes": list(plan.notes),
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
        """Append one event line (the active prober writes from its own threads: one line at a time)."""
        if self._events is not None:
            line = json.dumps(record, separators=(",", ":")) + "\n"
            with self._event_lock:
                self._events.write(line)

    def _own(self, pkt: Packet) -> bool:
        src, dst = ipaddress.ip_address(pkt.src), ipaddress.ip_address(pkt.dst)
        return any(src in net or dst in net for net in self.ignore_networks)

    # -- stats ------------------------------------------------------------------------------------------
    def stats(self, *, running: bool = True, backend: dict[str, Any] | None = None) -> dict[str, Any]:
        engine = self.engine
        return {
            "running": running,
            "pid": os.getpid(),
            "mode": self.mode,
            "profile": self.profile.name,
            "as_of": _day(self.profile),
            "fail_closed": self.fail_closed,
            "seed": self.seed,
            "started": self.started,
            "updated": self.clock(),
            "clock": self.clock_stats(),
            "params": dict(self.params),
            "packets": {"seen": self.counters["seen"], "undecodable": self.counters["undecodable"]}
            | (backend or {}).get("packets", {}),
            "verdicts": {"by_action": dict(self.verdicts_by_action), "by_rule": dict(self.verdicts_by_rule)},
            "injections": {k: v for k, v in self.counters.items() if k.startswith(("injected", "inject_"))},
            "residual": {"added": self.counters["residual_added"], "active": self.residual_active()},
            "flows": {
                "active": len(engine.table),
                "ended": self.counters["flows_ended"],
                "created": engine.table.counters["flows_created"],
            }
            | self.flow_table_stats(),
            "actions": self.counters["actions"],
            "errors": {k: v for k, v in self.counters.items() if "error" in k} | (backend or {}).get("errors", {}),
            "engine": dict(engine.counters),
            "decoder": dict(self.decoder.counters),
            "backend": {k: v for k, v in (backend or {}).items() if k not in ("packets", "errors")},
        } | {name: section() for name, section in self.extra_stats.items()}

    def flow_table_stats(self) -> dict[str, Any]:
        """The flow table's memory budget under a flood (``flow/memcap.py``): evictions, emergency mode."""
        table = self.engine.table
        counters = table.counters
        return {
            "evicted": counters["flows_evicted"],
            "evicted_unassured": counters["flows_evicted_unassured"],
            "emergency_entered": counters["flows_emergency_entered"],
            "expired_emergency": counters["flows_expired_emergency"],
            "emergency": table.emergency,
            "budget_used_mb": round(table.used / (1 << 20), 1),
            "budget_mb": table.settings.flow_memcap_mb,
        }

    def clock_stats(self) -> dict[str, Any]:
        """The daemon's time: offset from the wall clock, now (epoch seconds), as UTC and as the profile's
        local time (``local_hour`` is read from the latter)."""
        now = self.clock()
        offset = getattr(getattr(self.profile, "meta", None), "utc_offset_s", 0)
        return {
            "offset_s": self.clock_offset_s,
            "now": now,
            "utc": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(timespec="seconds"),
            "local": dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(seconds=offset))).isoformat(
                timespec="seconds"
            ),
        }

    def maybe_write_stats(
        self, backend: dict[str, Any] | None = None, *, force: bool = False, running: bool = True
    ) -> None:
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
        ethertype = int.from_bytes(frame[off + 2 : off + 4], "big")
        off += 4
    packet = frame[off:]
    if ethertype == 0x0800 and len(packet) >= 4:
        length = int.from_bytes(packet[2:4], "big")
    elif ethertype == 0x86DD and len(packet) >= 6:
        length = 40 + int.from_bytes(packet[4:6], "big")
    else:
        return packet
    return packet[:length] if 0 < length < len(packet) else packet


def _day(profile: Any) -> str | None:
    """The day the censor's profile was loaded for (events, stats), as ``YYYY-MM-DD``."""
    day = getattr(profile, "as_of", None)
    return day.isoformat() if day is not None else None
