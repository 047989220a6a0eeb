"""The active prober inside the censor daemon: flagged flows in, probes out, confirmed servers blocked.

:class:`ActiveProber` is given every flow whose ``log`` verdicts change (``Censor.observe``); a verdict of a
trigger rule (``active_probing.triggers``) makes it plan that probe set's probes for the flow's server
(``plan.Planner``) and queue them by due time. A timer thread hands each due probe to the prober process
(``prober.py``, started in the lab's prober namespace and fed JSON lines); a reader thread takes the reactions,
writes one ``active_probe`` event per probe (prober address and port, probe type, length, TTL, reaction, bytes
back, time to react) and asks the probe set's ``confirm`` rule (``confirm.decide``) about the server. A
confirmed server gets a ``chokepoint`` event (action ``drop``, the set's block rule, ``confirmed_by``) and, in
inline mode, an nftables element with the block's timeout in the censor's own table ``chokepoint_prober``:
packets from the server (``s2c``, as Alice et al. and Winter and Lindskog saw: only the server-to-client
direction) or to and from it (``both``), by server port or whole address. Replay types marked
``after_data`` are held until a replay to that server got data back. In mirror mode the block is recorded but
cannot be enforced (a copy of the traffic cannot drop it), as the other mirror-mode actions say.
"""

from __future__ import annotations

import heapq
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chokepoint.activeprobe.confirm import Reaction, decide
from chokepoint.activeprobe.plan import Planner, Probe, sample_delay
from chokepoint.lab import system
from chokepoint.output.eve import eve_timestamp
from chokepoint.policy.probing import ActiveProbing, ProbeSet

TABLE = "chokepoint_prober"
#: Routers between the prober and a VPS server in the lab (censor, server): probes leave with this many more
#: TTL than the server should see (the profile gives the server's view).
HOPS = 2
LOGS_SEEN = "activeprobe.logs_seen"


@dataclass
class _Server:
    probe_set: ProbeSet
    reactions: list[Reaction] = field(default_factory=list)
    held: list[Probe] = field(default_factory=list)
    answered_data: bool = False
    confirmed: str = ""


def _ruleset(action: str) -> list[dict[str, Any]]:
    """nft JSON commands creating (``add``) or removing (``delete``) the block table."""
    table = {"family": "inet", "name": TABLE}
    if action == "delete":
        return [{"add": {"table": table}}, {"delete": {"table": table}}]
    cmds: list[dict[str, Any]] = [{"add": {"table": table}}]
    cmds.append(
        {
            "add": {
                "chain": {
                    **table,
                    "table": TABLE,
                    "name": "forward",
                    "type": "filter",
                    "hook": "forward",
                    "prio": -170,
                    "policy": "accept",
                }
            }
        }
    )
    for name, kind in (
        ("ep_s2c", ["ipv4_addr", "inet_service"]),
        ("ep_both", ["ipv4_addr", "inet_service"]),
        ("ip_s2c", "ipv4_addr"),
        ("ip_both", "ipv4_addr"),
    ):
        cmds.append(
            {"add": {"set": {"family": "inet", "table": TABLE, "name": name, "type": kind, "flags": ["timeout"]}}}
        )
    tcp = {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": ["tcp", "udp"]}}}

    def field_(proto: str, name: str) -> dict[str, Any]:
        return {"payload": {"protocol": proto, "field": name}}

    def rule(expr: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "add": {"rule": {"family": "inet", "table": TABLE, "chain": "forward", "expr": [*expr, {"drop": None}]}}
        }

    for addr, port, sets in (("saddr", "sport", ("ep_s2c", "ep_both")), ("daddr", "dport", ("ep_both",))):
        for name in sets:
            key = {"concat": [field_("ip", addr), field_("th", port)]}
            cmds.append(rule([tcp, {"match": {"op": "==", "left": key, "right": f"@{name}"}}]))
    for addr, sets in (("saddr", ("ip_s2c", "ip_both")), ("daddr", ("ip_both",))):
        for name in sets:
            cmds.append(rule([{"match": {"op": "==", "left": field_("ip", addr), "right": f"@{name}"}}]))
    return cmds


class ActiveProber:
    """See the module docstring. ``censor`` is the daemon's ``backends.censor.Censor``."""

    def __init__(
        self,
        config: ActiveProbing,
        censor: Any,
        *,
        netns: str | None,
        pool: str,
        time_scale: float | None = None,
        seed: int | None = None,
        enforce: bool = True,
        max_delay_s: float | None = None,
    ) -> None:
        self.config = config
        self.censor = censor
        self.netns = netns
        self.pool = pool
        self.time_scale = config.time_scale if time_scale is None else time_scale
        self.rng = random.Random(seed)
        self.enforce = enforce and censor.mode == "inline"
        #: a lab run's horizon: probes that would come later than this after their trigger are not sent
        #: (counted as ``beyond_max_delay``); None: every probe is sent, however late
        self.max_delay_s = max_delay_s
        self.planners = {
            name: Planner(ps, self.rng, time_scale=self.time_scale, hops=HOPS) for name, ps in config.probe_sets.items()
        }
        self.servers: dict[tuple[str, int], _Server] = {}
        self.queue: list[tuple[float, int, Probe]] = []
        self.sent: dict[int, Probe] = {}
        self.counters: Counter[str] = Counter()
        self.reactions: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.proc: subprocess.Popen[str] | None = None
        self.stopping = False
        self._threads: list[threading.Thread] = []
        self._ids = 0

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        first = next(iter(self.config.probe_sets.values()))
        argv = system.in_netns(
            [
                sys.executable,
                "-m",
                "chokepoint.activeprobe.prober",
                "--pool",
                self.pool,
                "--ports",
                f"{first.source_ports[0]}-{first.source_ports[1]}",
                "--timestamps",
                first.tcp_timestamps,
                "--seed",
                str(self.rng.getrandbits(31)),
                *([] if self.netns else ["--no-setup"]),  # without a namespace of its own, touch no routes
            ],
            self.netns,
        )
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        if '"ready"' not in ready:
            raise RuntimeError(f"the prober did not start in {self.netns} (it said {ready!r})")
        if self.enforce:
            system.nft({"nftables": _ruleset("delete") + _ruleset("add")})
        for target in (self._timer, self._reader):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        with self.lock:
            self.stopping = True
            self.wake.notify_all()
        if self.proc is not None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.enforce:
            system.nft({"nftables": _ruleset("delete")}, check=False)

    # -- flows in -----------------------------------------------------------------------------------------
    def on_flow(self, flow: Any, now: float) -> None:
        """Called with a flow whose ``logs`` grew: schedule probes for new trigger verdicts."""
        seen = flow.state.get(LOGS_SEEN, 0)
        if len(flow.logs) == seen:
            return
        flow.state[LOGS_SEEN] = len(flow.logs)
        for verdict in flow.logs[seen:]:
            name = next((n for rule, n in self.config.triggers if rule == verdict.rule_id), None)
            if name is None or flow.proto != 6:
                continue
            first = flow.first_payload[0] or b""
            server = (flow.server_text, flow.server_port)
            with self.lock:
                state = self.servers.setdefault(server, _Server(self.config.probe_sets[name]))
                if state.confirmed:
                    continue
                self.counters["flows_flagged"] += 1
                where = f"{flow.client_text}:{flow.client_port} -> {flow.server_text}:{flow.server_port}"
                start = time.monotonic()
                for probe in self.planners[name].for_flow(first, server, start, trigger=verdict.rule_id, flow=where):
                    if self.max_delay_s is not None and probe.due - start > self.max_delay_s:
                        self.counters["beyond_max_delay"] += 1
                        continue
                    if probe.after_data and not state.answered_data:
                        state.held.append(probe)
                    else:
                        self._push(probe)
                self.wake.notify_all()

    def _push(self, probe: Probe) -> None:
        self._ids += 1
        probe.id = self._ids
        heapq.heappush(self.queue, (probe.due, probe.id, probe))
        self.counters["scheduled"] += 1

    # -- probes out ---------------------------------------------------------------------------------------
    def _timer(self) -> None:
        with self.lock:
            while not self.stopping:
                now = time.monotonic()
                if self.queue and self.queue[0][0] <= now:
                    _, _, probe = heapq.heappop(self.queue)
                    self._send(probe)
                    continue
                self.wake.wait(timeout=None if not self.queue else self.queue[0][0] - now)

    def _send(self, probe: Probe) -> None:
        job = {
            "id": probe.id,
            "kind": probe.kind,
            "dst": probe.server_ip,
            "port": probe.server_port,
            "payload": probe.payload.hex(),
            "ttl": probe.ttl,
            "timeout": self.servers[(probe.server_ip, probe.server_port)].probe_set.timeout_s,
        }
        self.sent[probe.id] = probe
        self.counters["sent"] += 1
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            self.counters["prober_gone"] += 1

    # -- reactions in -------------------------------------------------------------------------------------
    def _reader(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                result = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self._result(result)

    def _result(self, result: dict[str, Any]) -> None:
        probe = self.sent.pop(int(result.get("id", -1)), None)
        if probe is None:
            return
        server = (probe.server_ip, probe.server_port)
        state = self.servers[server]
        reaction = Reaction(
            probe.type,
            probe.kind,
            len(probe.payload),
            result.get("reaction", "error"),
            int(result.get("bytes_back", 0)),
            float(result.get("after_s", 0.0)),
        )
        state.reactions.append(reaction)
        self.counters["results"] += 1
        self.reactions[reaction.reaction] += 1
        self.censor._write_event(
            {
                "timestamp": eve_timestamp(self.censor.clock()),
                "event_type": "active_probe",
                "src_ip": result.get("src"),
                "src_port": result.get("sport"),
                "dest_ip": probe.server_ip,
                "dest_port": probe.server_port,
                "proto": "TCP",
                "active_probe": {
                    "id": probe.id,
                    "set": state.probe_set.name,
                    "type": probe.type,
                    "kind": probe.kind,
                    "length": len(probe.payload),
                    "ttl_sent": probe.ttl,
                    "ttl_at_server": probe.ttl - HOPS,
                    "reaction": reaction.reaction,
                    "bytes_back": reaction.bytes_back,
                    "after_s": reaction.after_s,
                    "trigger": probe.trigger,
                    "flagged_flow": probe.flow,
                    "error": result.get("error", ""),
                },
            }
        )
        if probe.kind == "replay" and reaction.reaction == "data" and not state.answered_data:
            state.answered_data = True
            now = time.monotonic()
            for held in state.held:
                delay = sample_delay(state.probe_set.delay_quantiles, self.rng) * self.time_scale
                if self.max_delay_s is not None and delay > self.max_delay_s:
                    self.counters["beyond_max_delay"] += 1
                    continue
                held.due = now + delay
                self._push(held)
            state.held.clear()
            self.wake.notify_all()
        if state.confirmed:
            return
        verdict = decide(state.reactions, state.probe_set.confirm_any, state.probe_set.min_reactions)
        if verdict is not None:
            self._block(server, state, *verdict)

    def _block(self, server: tuple[str, int], state: _Server, signature: str, detail: str) -> None:
        ps = state.probe_set
        state.confirmed = signature
        self.counters["servers_confirmed"] += 1
        self.queue = [item for item in self.queue if (item[2].server_ip, item[2].server_port) != server]
        heapq.heapify(self.queue)
        notes, kernel = [], {}
        if self.enforce:
            name = f"{'ep' if ps.block_scope == 'server-port' else 'ip'}_{ps.block_direction}"
            val: Any = {"concat": [server[0], server[1]]} if ps.block_scope == "server-port" else server[0]
            timeout = max(1, int(ps.block_seconds))
            system.nft(
                {
                    "nftables": [
                        {
                            "add": {
                                "element": {
                                    "family": "inet",
                                    "table": TABLE,
                                    "name": name,
                                    "elem": [{"elem": {"val": val, "timeout": timeout}}],
                                }
                            }
                        }
                    ]
                }
            )
            kernel = {"table": TABLE, "set": name, "timeout_s": timeout}
            self.counters["servers_blocked"] += 1
        else:
            notes.append("mirror mode cannot drop: the block is recorded, not enforced")
        counts = Counter(f"{r.type}:{r.reaction}" for r in state.reactions)
        self.censor._write_event(
            {
                "timestamp": eve_timestamp(self.censor.clock()),
                "event_type": "chokepoint",
                "src_ip": None,
                "src_port": None,
                "dest_ip": server[0],
                "dest_port": server[1],
                "proto": "TCP",
                "app_proto": "",
                "chokepoint": {
                    "profile": self.censor.profile.name,
                    "mode": self.censor.mode,
                    "action": "drop",
                    "rule": ps.block_rule,
                    "reason": f"active probing confirmed a proxy ({signature}: {detail})",
                    "confirmed_by": signature,
                    "evidence": [
                        {"field": "active_probe.reactions", "value": json.dumps(dict(counts)), "matched": signature}
                    ],
                    "residual": {"scope": ps.block_scope, "direction": ps.block_direction, "seconds": ps.block_seconds},
                    "cite": ps.cite,
                    "notes": notes,
                    "kernel": kernel,
                    "injected": [],
                },
            }
        )

    # -- stats --------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "pending": len(self.queue) + len(self.sent),
                "held": sum(len(s.held) for s in self.servers.values()),
                "counters": dict(self.counters),
                "reactions": dict(self.reactions),
                "confirmed": {f"{ip}:{port}": s.confirmed for (ip, port), s in self.servers.items() if s.confirmed},
                "time_scale": self.time_scale,
                "max_delay_s": self.max_delay_s,
                "enforced": self.enforce,
            }


__all__ = ["ActiveProber", "HOPS", "TABLE"]
