"""The inline backend: packets still needing inspection come from NFQUEUE; the kernel does the rest.

Design (the kernel rules are in :mod:`chokepoint.backends.kernel`):

1. The censor namespace's ``mangle FORWARD`` queues a packet to user space only if its connection has
   no kernel state yet (ctmark bits 0-1 zero); ``--queue-bypass`` accepts packets while no daemon is bound
   (fail-open), ``--fail-closed`` leaves it out so they are dropped. Overload fails the same way: unless
   fail-closed, the queue is configured with ``NFQA_CFG_F_FAIL_OPEN`` (the kernel accepts packets while
   ``max_len`` packets already wait for a verdict) - python-netfilterqueue has no call for it, so the
   config message is sent on its netlink socket (:func:`fail_open_message`).
2. Each queued packet goes through the engine (:class:`chokepoint.backends.censor.Censor`). While the
   flow is being inspected the packet is accepted as is (``NF_ACCEPT``, no mark).
3. When inspection ends without a block (verdict ``allow``, or the inspection budget spent) the packet
   gets mark 1 and ``NF_REPEAT``: the kernel copies it into the ctmark and the rest of the flow never
   leaves the kernel (offload). A flow flagged by a deferred rule (``Flow.watch``) is not offloaded: every
   packet stays in user space until its deferred verdict fires (or the flow ends), since the engine needs
   each packet's time and size to decide it.
4. When a verdict is enforced, :func:`chokepoint.enforce.plan` says what to do: its packets are injected
   first (raw sockets, so an RST or a forged answer leaves before the trigger is released), the residual
   entry is added to the nft set (re-adding re-arms the timeout), then the trigger is dropped or accepted
   and the flow gets its kernel state: ``drop`` -> mark 2 (``NF_REPEAT`` drops the trigger and remembers;
   when the trigger must pass, bit 0x4 lets this one packet through), ``throttle`` -> mark
   ``(class << 8) | 3`` with an HTB class at the plan's rate, ``allow``/none -> mark 1.
5. ``delay`` is done here, because the lab kernel has no ``netem``: the flow stays in user space and every
   packet's verdict is given ``delay_ms`` later (a timer heap in the run loop; the kernel keeps the
   packets queued meanwhile, up to ``max_len``).

Probabilistic rules are the engine's (its RNG is seeded from ``--seed``).

6. ``tls-intercept`` is enforced before this path: the kernel redirects the ports those rules can match to the
   intercept proxy (:mod:`chokepoint.backends.intercept`), so such connections never reach the queue. A flow
   that meets a ``tls-intercept`` verdict here was not redirected (another port): its plan says ``intercept``
   and it is offloaded untouched (mark 1), with the event noting it.

7. A packet that arrived wrapped in an IP tunnel (GRE, IP-in-IP, VXLAN, GTP-U: ``Packet.encap``; the decoder
   unwrapped it) shares one conntrack entry with every flow of its tunnel, so its flow's state cannot live in
   the ctmark (an offload would exempt the whole tunnel, a block would cut it): such flows stay in user space,
   each packet accepted, dropped (a drop verdict, in its direction) or held (delay) by its inner flow's state;
   throttling and residual blocks (nft sets keyed by the outer addresses' conntrack) are not enforced for them
   and are counted under ``wrapped_unenforceable``.

8. Overload is counted (``overload`` in the counters). A full queue (``max_len`` packets waiting) is dropped by
   the kernel when fail-closed (``queue_dropped`` of ``/proc/net/netfilter/nfnetlink_queue``) and accepted
   uninspected when fail-open, which the kernel does not count: the packets that reached the ``NFQUEUE`` rule
   (its iptables counters, IPv4 and IPv6, read by a child process at most every :data:`RULE_COUNT_INTERVAL`
   seconds without blocking the packet loop, and once more just after the queue is unbound) minus those the
   daemon received, those waiting and those the kernel dropped are ``failed_open``: a lower bound while
   running (the daemon's count is read after the rule's), exact at a clean stop but for the packets that were
   waiting when the queue was unbound (the kernel drops those). A GSO packet that the kernel splits when it
   queues it counts once at the rule and once per segment in the daemon: with segmentation offloads on (the
   test path; the lab turns them off) the estimate is short by those. A worker of several sharing
   the rule (``--queue-balance``) cannot tell its share: ``failed_open`` is then None.
"""

from __future__ import annotations

import heapq
import itertools
import select
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chokepoint.backends.censor import LINKTYPE_RAW, Censor, Decision, residual_key
from chokepoint.backends.kernel import MARK_BLOCK, MARK_OFFLOAD, PASS_ONCE, KernelProgram, mark
from chokepoint.lab import system
from chokepoint.lab.system import CommandError

#: Packets the kernel may hold for this queue (queued and not yet given a verdict, incl. delayed ones).
DEFAULT_MAX_LEN = 4096
#: Longest sleep of the run loop (stop requests and counters are checked at least this often).
TICK = 0.05
_STATE = "inline.kernel"
#: Latency samples (seconds in the callback, per queued packet) kept for the percentiles in the counters.
LATENCY_SAMPLES = 8192
QUEUE_PROC = "/proc/net/netfilter/nfnetlink_queue"
#: While packets keep coming, the callback checks the clock every DUTY_EVERY packets and does the run loop's
#: duties (stats, held packets, stop requests) when DUTY_TICK seconds have passed.
DUTY_EVERY = 64
DUTY_TICK = TICK
#: Seconds between two reads of the NFQUEUE rule's packet counters (fail-open accounting, point 8).
RULE_COUNT_INTERVAL = 1.0

# linux/netfilter/nfnetlink.h, nfnetlink_queue.h
_NFNL_SUBSYS_QUEUE = 3
_NFQNL_MSG_CONFIG = 2
_NFQA_CFG_MASK = 4
_NFQA_CFG_FLAGS = 5
_NFQA_CFG_F_FAIL_OPEN = 1
_NLM_F_REQUEST = 1


_WRAPPED_DROP = "nfqueue.wrapped_drop"
#: Labels of link-level wrappers, which the kernel removes before netfilter (NFQUEUE never sees them).
_LINK_LEVEL = ("vlan:", "qinq:", "mpls:", "pppoe:", "ppp")


class _StopRequested(Exception):
    """Raised from the packet callback (after the packet's verdict) to leave ``nfq.run`` when asked to stop."""


def _tunnelled(encap: tuple[str, ...]) -> bool:
    """Whether a packet's wrapping includes an IP tunnel (not only link-level wrappers)."""
    return any(not label.startswith(_LINK_LEVEL) for label in encap)


def fail_open_message(queue_num: int) -> bytes:
    """An NFQNL_MSG_CONFIG request setting NFQA_CFG_F_FAIL_OPEN on ``queue_num`` (nfnetlink_queue.h): when
    the queue is full the kernel then accepts packets instead of dropping them."""
    # attribute headers in host order, the two flag words big-endian (the kernel reads them with ntohl)
    attrs = b"".join(
        struct.pack("=HH", 8, attr) + struct.pack("!I", _NFQA_CFG_F_FAIL_OPEN)
        for attr in (_NFQA_CFG_MASK, _NFQA_CFG_FLAGS)
    )
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue_num)) + attrs
    return (
        struct.pack("=IHHII", 16 + len(body), (_NFNL_SUBSYS_QUEUE << 8) | _NFQNL_MSG_CONFIG, _NLM_F_REQUEST, 0, 0)
        + body
    )


def queue_counters(queue_num: int, path: str = QUEUE_PROC) -> dict[str, int]:
    """The kernel's counters for one queue (``/proc/net/netfilter/nfnetlink_queue`` of this namespace):
    packets waiting for a verdict, dropped because the queue was full, dropped because the netlink
    socket buffer was full; empty when the queue is not bound."""
    try:
        with open(path, encoding="ascii") as table:
            for line in table:
                fields = line.split()
                if len(fields) >= 7 and int(fields[0]) == queue_num:
                    return {"waiting": int(fields[2]), "queue_dropped": int(fields[5]), "user_dropped": int(fields[6])}
    except (OSError, ValueError):
        pass
    return {}


def nfqueue_rule_packets(listing: str) -> int:
    """Packets counted by the ``NFQUEUE`` rules of an ``iptables -L CHAIN -n -v -x`` listing."""
    total = 0
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "NFQUEUE" and fields[0].isdigit():
            total += int(fields[0])
    return total


def failed_open(rule_packets: int, queued: int, kernel_queue: dict[str, int]) -> int:
    """Packets the kernel accepted uninspected because the queue was full (or no daemon was bound): every
    packet that reached the NFQUEUE rule and was neither received by the daemon, nor still waiting, nor
    dropped by the kernel (point 8 of the module docstring)."""
    accounted = queued + sum(kernel_queue.get(k, 0) for k in ("waiting", "queue_dropped", "user_dropped"))
    return max(0, rule_packets - accounted)


class _RuleCounter:
    """The NFQUEUE rule's packet count (IPv4 + IPv6), refreshed by child processes that the packet loop
    polls instead of waiting for (``refresh``), or read synchronously (``read_now``)."""

    def __init__(self, netns: str | None) -> None:
        self.argvs = [
            system.in_netns([tool, "-w", "-t", "mangle", "-L", "CHOKEPOINT", "-n", "-v", "-x"], netns)
            for tool in ("iptables", "ip6tables")
        ]
        self.packets: int | None = None
        self.reads = 0
        self._procs: list[subprocess.Popen[str]] = []
        self._due = 0.0

    def refresh(self, now: float) -> bool:
        """Start a read when one is due, collect a finished one; True when ``packets`` was just updated."""
        if self._procs:
            if any(proc.poll() is None for proc in self._procs):
                return False
            return self._collect()
        if now >= self._due:
            self._due = now + RULE_COUNT_INTERVAL
            self._start()
        return False

    def read_now(self, timeout: float = 5.0) -> bool:
        if not self._procs:
            self._start()
        for proc in self._procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return self._collect()

    def _start(self) -> None:
        try:
            self._procs = [
                subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for argv in self.argvs
            ]
        except OSError:
            self._procs = []

    def _collect(self) -> bool:
        procs, self._procs = self._procs, []
        outputs = [(proc.communicate()[0], proc.returncode) for proc in procs]
        if not outputs or any(code != 0 for _, code in outputs):
            return False  # the rules are gone (stopping) or iptables failed: keep the last count
        self.packets = sum(nfqueue_rule_packets(out) for out, _ in outputs)
        self.reads += 1
        return True


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e6  # noqa: E731
    return {"p50_us": round(pick(0.5), 1), "p99_us": round(pick(0.99), 1), "samples": len(ordered)}


@dataclass(slots=True)
class FlowKernelState:
    """What the kernel (or the delay heap) does with the rest of one enforced flow."""

    mark: int = 0  # packet mark for its packets (0: none)
    delay_ms: int = 0  # >0: each packet is held this long in user space ...
    jitter_ms: int = 0  # ... plus a uniform 0..jitter_ms


class InlineBackend:
    """Binds NFQUEUE ``queue_num`` and gives every queued packet its verdict."""

    def __init__(
        self,
        censor: Censor,
        kernel: KernelProgram,
        *,
        queue_num: int = 0,
        max_len: int = DEFAULT_MAX_LEN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.censor = censor
        self.kernel = kernel
        self.queue_num = queue_num
        self.max_len = max_len
        self.clock = clock
        self.counters_: Counter[str] = Counter()
        self._nfq = None
        self._held: list[tuple[float, int, Any, int]] = []  # (due, seq, nfqueue packet, mark)
        self._seq = itertools.count()
        self.latency_first: list[float] = []  # callback time of each flow's first packet
        self.latency_all: list[float] = []
        censor.flow_end_hooks.append(self._flow_ended)
        self._rules = _RuleCounter(kernel.netns)
        self._last_kq: dict[str, int] = {}
        self._should_stop: Callable[[], bool] = lambda: False
        self._since_duties = 0
        self._next_duty = 0.0
        self._failed_open = 0  # the estimate at the last read of the rule's counters (point 8)

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind the queue (``OSError`` if another process holds it: nothing is touched then), then install
        the kernel program (on failure the queue is released and the program removed again)."""
        from netfilterqueue import NetfilterQueue

        nfq = NetfilterQueue()
        nfq.bind(self.queue_num, self._on_packet, max_len=self.max_len)
        self._nfq = nfq
        if not self.kernel.fail_closed:
            # Overload fails open too (the queue full): on the library's own socket, since the kernel only
            # takes a queue's configuration from the socket bound to it.
            with socket.socket(fileno=nfq.get_fd()) as sock:
                try:
                    sock.send(fail_open_message(self.queue_num))
                finally:
                    sock.detach()
        try:
            self.kernel.install(inline=True)
        except CommandError:
            self.stop()
            self.kernel.remove()
            raise

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Give verdicts until ``should_stop()``. ``nfq.run(block=False)`` returns only once the queue is empty,
        which a flood never lets happen: the periodic duties (held packets, stats, the stop request) are then
        done from the packet callback every :data:`DUTY_TICK` seconds (:meth:`_duties`)."""
        nfq = self._nfq
        fd = nfq.get_fd()
        self._should_stop = should_stop
        try:
            while not should_stop():
                timeout = TICK
                if self._held:
                    timeout = min(timeout, max(0.0, self._held[0][0] - self.clock()))
                readable, _, _ = select.select([fd], [], [], timeout)
                if readable:
                    nfq.run(block=False)
                self._duties(stop_check=False)
        except _StopRequested:
            pass

    def _duties(self, *, stop_check: bool = True) -> None:
        """What the run loop does between packets: release due held packets, read the NFQUEUE rule's counters,
        write the stats; from the callback (``stop_check``) also ask whether to stop (the policy reload hook
        runs there too), and leave ``nfq.run`` by raising :class:`_StopRequested` after the packet's verdict."""
        self._next_duty = self.clock() + DUTY_TICK
        if self._held:
            self._release_due()
        if self._rules.refresh(self.clock()):
            self._note_failed_open()
        self.censor.maybe_write_stats(self.counters())
        if stop_check and self._should_stop():
            raise _StopRequested

    def _note_failed_open(self) -> None:
        if self._rules.packets is not None:
            # once unbound the queue has no /proc line: its last counters, nothing waiting any more
            kernel_queue = queue_counters(self.queue_num) or {**self._last_kq, "waiting": 0}
            estimate = failed_open(self._rules.packets, self.counters_["queued"], kernel_queue)
            self._failed_open = max(self._failed_open, estimate)  # a lower bound: never goes back

    def stop(self) -> None:
        """Release held packets (accepted now), unbind the queue, then take the final count of failed-open
        packets (every packet that reached the rule by then: the daemon's count no longer moves)."""
        while self._held:
            _, _, nfpkt, packet_mark = heapq.heappop(self._held)
            self._give(nfpkt, packet_mark)
        if self._nfq is not None:
            self.counters()  # the kernel queue's last counters, kept for the stats
            self._nfq.unbind()
            self._nfq = None
            if self._rules.read_now():
                self._note_failed_open()

    def counters(self) -> dict[str, Any]:
        c = self.counters_
        kernel_queue = queue_counters(self.queue_num)
        if kernel_queue:
            self._last_kq = kernel_queue  # after the queue is unbound /proc has no line for it
        latency = {}
        if self.latency_first:
            latency["first_packet"] = _percentiles(self.latency_first)
        if self.latency_all:
            latency["any_packet"] = _percentiles(self.latency_all)
        return {
            "packets": {
                "queued": c["queued"],
                "accepted": c["accepted"],
                "dropped": c["dropped"],
                "offloaded": c["offloaded"],
                "blocked": c["blocked"],
                "throttled": c["throttled"],
                "held": c["held"],
                "held_now": len(self._held),
            },
            "errors": {k: v for k, v in c.items() if "error" in k},
            "flows_offloaded": c["flows_offloaded"],
            "wrapped_unenforceable": c["wrapped_unenforceable"],
            "verdict_latency": latency,  # user-space time per queued packet
            "kernel_queue": kernel_queue,
            "queue_num": self.queue_num,
            "overload": self.overload(kernel_queue),
        }

    def overload(self, kernel_queue: dict[str, int] | None = None) -> dict[str, Any]:
        """What a full queue did (point 8 of the module docstring): the configured behaviour, the packets
        accepted uninspected (fail-open) and those the kernel dropped (fail-closed, or netlink buffer full)."""
        kq = queue_counters(self.queue_num) if kernel_queue is None else kernel_queue
        shared = self.kernel.queue_balance is not None
        return {
            "when_full": "drop (fail-closed)" if self.kernel.fail_closed else "accept (fail-open)",
            "max_len": self.max_len,
            "nfqueue_rule_packets": None if shared else self._rules.packets,
            "failed_open": None if shared or self.kernel.fail_closed else self._failed_open,
            "queue_dropped": kq.get("queue_dropped", self._last_kq.get("queue_dropped", 0)),
            "user_dropped": kq.get("user_dropped", self._last_kq.get("user_dropped", 0)),
        }

    # -- the packet path --------------------------------------------------------------------------------
    def _on_packet(self, nfpkt) -> None:
        started = time.perf_counter()
        self.counters_["queued"] += 1
        decision = self.censor.observe(nfpkt.get_payload(), LINKTYPE_RAW)
        if decision is None:
            self._accept(nfpkt)
        else:
            self._decide(nfpkt, decision)
        spent = time.perf_counter() - started
        self._sample(self.latency_all, spent)
        if decision is not None and sum(decision.step.flow.pkts) == 1:
            self._sample(self.latency_first, spent)
        self._since_duties += 1
        if self._since_duties >= DUTY_EVERY:  # a flood keeps nfq.run() from returning (see run)
            self._since_duties = 0
            if self.clock() >= self._next_duty:
                self._duties()

    @staticmethod
    def _sample(samples: list[float], value: float) -> None:
        if len(samples) >= LATENCY_SAMPLES:
            del samples[: LATENCY_SAMPLES // 2]
        samples.append(value)

    def _decide(self, nfpkt, decision: Decision) -> None:
        if decision.pkt.encap and _tunnelled(decision.pkt.encap):
            self._decide_wrapped(nfpkt, decision)
            return
        if decision.plan is not None:
            self._enforce(nfpkt, decision)
            return
        flow = decision.step.flow
        state: FlowKernelState | None = flow.state.get(_STATE)
        if state is not None:
            if state.delay_ms:
                self._hold(nfpkt, state)
            else:
                self._repeat(nfpkt, state.mark)
        elif flow.inspecting or flow.watch:
            # a flagged flow stays in user space after inspection: its deferred verdict needs every packet
            self._accept(nfpkt)
        else:
            flow.state[_STATE] = FlowKernelState(MARK_OFFLOAD)
            self.counters_["flows_offloaded"] += 1
            self._repeat(nfpkt, MARK_OFFLOAD)

    def _enforce(self, nfpkt, decision: Decision) -> None:
        censor, plan, flow = self.censor, decision.plan, decision.step.flow
        kernel: dict[str, Any] = {}
        residual = plan.residual
        if residual is not None:
            # Before the injections: a client that retries as soon as it is reset must meet the block.
            key = residual_key(residual)
            try:
                kernel["residual_set"] = self.kernel.add_residual(
                    key, residual.seconds, residual.action, rearm=residual.rearm
                )
                censor.note_residual(key, residual.action, residual.seconds, plan.rule_id)
            except (CommandError, ValueError) as exc:
                self._error("residual_errors", exc)
        injected = censor.inject(plan)
        if plan.flow_action == "inspect":  # decided per message (DNS over UDP): the flow stays in user space
            if plan.drop_trigger:
                self._drop(nfpkt)
            else:
                if residual is not None:
                    nfpkt.set_mark(PASS_ONCE)  # past the block just added (kernel.residual_rules)
                self._accept(nfpkt)
            censor.record_action(decision, injected, trigger_dropped=bool(plan.drop_trigger), kernel=kernel)
            return
        state = FlowKernelState(MARK_OFFLOAD)
        direction = plan.drop_direction or "both"
        if plan.flow_action == "drop":
            state.mark = mark(MARK_BLOCK, direction=direction)
        if plan.throttle_kbps:
            try:
                state.mark = self.kernel.throttle(int(plan.throttle_kbps), plan.throttle_burst_bytes)
            except (CommandError, RuntimeError, ValueError) as exc:
                self._error("throttle_errors", exc)
        if plan.delay_ms:
            state.delay_ms = int(plan.delay_ms)
            state.jitter_ms = int(plan.delay_jitter_ms or 0)
            if state.mark == MARK_OFFLOAD:
                state.mark = 0
        flow.state[_STATE] = state
        kernel["mark"] = state.mark
        if state.delay_ms:
            kernel["delay_ms"] = state.delay_ms
        blocked = state.mark & 0x3 == MARK_BLOCK
        if plan.drop_trigger:
            if blocked:
                self._repeat(nfpkt, state.mark)  # dropped by the kernel, which remembers the block
            else:
                self._drop(nfpkt)
        elif state.delay_ms:
            self._hold(nfpkt, state)
        elif blocked:
            self._repeat(nfpkt, mark(MARK_BLOCK, direction=direction, pass_once=True))
        else:
            # a trigger the plan forwards passes the residual block just added (kernel.residual_rules)
            self._repeat(nfpkt, state.mark | (PASS_ONCE if residual is not None else 0))
        censor.record_action(decision, injected, trigger_dropped=bool(plan.drop_trigger), kernel=kernel)

    def _decide_wrapped(self, nfpkt, decision: Decision) -> None:
        """A tunnelled packet (point 7 of the module docstring): its inner flow's state, per packet."""
        censor, plan, flow = self.censor, decision.plan, decision.step.flow
        if plan is not None:
            injected = censor.inject(plan)
            if plan.residual is not None or plan.throttle_kbps:
                self.counters_["wrapped_unenforceable"] += 1
            if plan.flow_action == "drop":
                flow.state[_WRAPPED_DROP] = plan.drop_direction or "both"
            if plan.delay_ms:
                flow.state[_STATE] = FlowKernelState(0, int(plan.delay_ms), int(plan.delay_jitter_ms or 0))
            dropped = bool(plan.drop_trigger)
            if dropped:
                self._drop(nfpkt)
            elif plan.delay_ms:
                self._hold(nfpkt, flow.state[_STATE])
            else:
                self._accept(nfpkt)
            censor.record_action(decision, injected, trigger_dropped=dropped, kernel={"wrapped": True})
            return
        direction = flow.state.get(_WRAPPED_DROP)
        if direction is not None and direction in ("both", ("c2s", "s2c")[decision.step.direction]):
            self._drop(nfpkt)
            return
        state: FlowKernelState | None = flow.state.get(_STATE)
        if state is not None and state.delay_ms:
            self._hold(nfpkt, state)
        else:
            self._accept(nfpkt)

    # -- verdicts ---------------------------------------------------------------------------------------
    def _accept(self, nfpkt) -> None:
        nfpkt.accept()
        self.counters_["accepted"] += 1

    def _drop(self, nfpkt) -> None:
        nfpkt.drop()
        self.counters_["dropped"] += 1

    def _repeat(self, nfpkt, packet_mark: int) -> None:
        """Hand the packet back to the chain with its kernel state as the mark (see module docstring)."""
        nfpkt.set_mark(packet_mark)
        nfpkt.repeat()
        state = packet_mark & 0x3
        self.counters_["offloaded" if state == MARK_OFFLOAD else "blocked" if state == MARK_BLOCK else "throttled"] += 1

    def _hold(self, nfpkt, state: FlowKernelState) -> None:
        delay = state.delay_ms + (self.censor.rng.uniform(0, state.jitter_ms) if state.jitter_ms else 0.0)
        heapq.heappush(self._held, (self.clock() + delay / 1000.0, next(self._seq), nfpkt, state.mark))
        self.counters_["held"] += 1

    def _release_due(self) -> None:
        now = self.clock()
        while self._held and self._held[0][0] <= now:
            _, _, nfpkt, packet_mark = heapq.heappop(self._held)
            self._give(nfpkt, packet_mark)

    def _give(self, nfpkt, packet_mark: int) -> None:
        if packet_mark:
            nfpkt.set_mark(packet_mark)  # accepted with the throttle mark: tc still classifies it
        self._accept(nfpkt)

    def _flow_ended(self, flow) -> None:
        state: FlowKernelState | None = flow.state.get(_STATE)
        if state is not None and state.mark & 0x3 == 0x3:
            self.kernel.release(state.mark)

    def _error(self, counter: str, exc: Exception) -> None:
        self.counters_[counter] += 1
        print(f"censord: {counter.replace('_', ' ')}: {exc}", file=sys.stderr, flush=True)


__all__ = ["DEFAULT_MAX_LEN", "FlowKernelState", "InlineBackend", "failed_open", "nfqueue_rule_packets"]
