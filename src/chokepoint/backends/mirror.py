"""The on-path (mirror) backend: a copy of the traffic in, injected packets out, never a drop.

The censor namespace forwards traffic normally (no NFQUEUE rules; any left by an inline run are removed
at start). One ``AF_PACKET``/``ETH_P_ALL`` socket per censor interface sees every frame; a forwarded
packet appears twice — received on one interface, sent on the other — so outgoing copies are skipped
(``PACKET_IGNORE_OUTGOING``, Linux >= 4.20, with a ``PACKET_OUTGOING`` check as a fallback): each packet is
counted once, and the censor's own injections (outgoing too) are never fed back to the engine.

A frame's 802.1Q tag, which Linux hands packet sockets as metadata (``PACKET_AUXDATA``), is put back into the
frame (:func:`chokepoint.packet.decap.reinsert_vlan`, as libpcap does), so a mirror of a VLAN trunk is decoded
with its tags (``encap``).

Like the GFW's and the TSG gateway's "mirror mode", the censor races the real server: its RSTs, forged
DNS answers and block pages only win if they arrive before the genuine answer (on the lab's short links,
that means a server slower than the censor; ``inject_latency`` in the counters says how slow the censor
is). Kernel-side actions (drop, throttle, delay) cannot be enforced and are counted under
``unenforceable``. Residual blocks are kept in user space: while one is active, a new client SYN that
matches it is answered with the plan of a reset (action ``reset``); a ``drop`` residual cannot be enforced.
"""

from __future__ import annotations

import select
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from chokepoint.backends.censor import LINKTYPE_ETHERNET, Censor, ip_packet, residual_key
from chokepoint.backends.kernel import KernelProgram
from chokepoint.packet.decap import reinsert_vlan
from chokepoint.packet.record import RST, TCP

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263  # linux/socket.h (not exported by Python's socket module)
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h
PACKET_AUXDATA = 8  # linux/if_packet.h: a struct tpacket_auxdata with each frame (its VLAN tag)
AUXDATA_SPACE = socket.CMSG_SPACE(20)
RECV_BUFFER = 1 << 16 | 256  # GSO frames from a veth can be up to 64 KiB
SOCKET_RCVBUF = 8 << 20
TICK = 0.05
#: Resets injected per connection caught by a residual block (SYN, SYN+ACK, first client segment).
RESIDUAL_RESETS = 3
_RESIDUAL_RESETS = "mirror.residual_resets"
#: Latency samples kept for the percentiles in the counters.
LATENCY_SAMPLES = 4096


class MirrorBackend:
    """Reads a copy of the traffic on ``ifaces`` and injects what the plans say."""

    def __init__(
        self,
        censor: Censor,
        kernel: KernelProgram | None,
        ifaces: Sequence[str],
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``clock`` must be the one ``Censor.last_sent`` is read with (``time.perf_counter``)."""
        self.censor = censor
        self.kernel = kernel
        self.ifaces = tuple(ifaces)
        self.clock = clock
        self.counters_: Counter[str] = Counter()
        self.latencies: list[float] = []
        self._sockets: list[socket.socket] = []
        self._ignore_outgoing = False

    def start(self) -> None:
        if self.kernel is not None:
            self.kernel.remove()  # an inline run's leftovers: the mirror never drops
        for iface in self.ifaces:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_RCVBUF)
                try:
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                    self._ignore_outgoing = True
                except OSError:
                    self._ignore_outgoing = False
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                sock.bind((iface, ETH_P_ALL))
                sock.setblocking(False)
            except OSError:
                sock.close()
                self.stop()
                raise
            self._sockets.append(sock)

    def run(self, should_stop: Callable[[], bool]) -> None:
        while not should_stop():
            readable, _, _ = select.select(self._sockets, [], [], TICK)
            for sock in readable:
                self._drain(sock)
            self.censor.maybe_write_stats(self.counters())

    def stop(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def counters(self) -> dict[str, Any]:
        c = self.counters_
        out: dict[str, Any] = {
            "packets": {"captured": c["captured"], "skipped_outgoing": c["skipped_outgoing"]},
            "errors": {k: v for k, v in c.items() if "error" in k},
            "unenforceable": {k[len("unenforceable:") :]: v for k, v in c.items() if k.startswith("unenforceable:")},
            "residual_hits": c["residual_hits"],
            "ignore_outgoing": self._ignore_outgoing,
        }
        if self.latencies:
            ordered = sorted(self.latencies)
            out["inject_latency_ms"] = {
                "p50": round(ordered[len(ordered) // 2] * 1000, 3),
                "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
                "samples": len(ordered),
            }
        return out

    # -- the packet path --------------------------------------------------------------------------------
    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data, ancillary, _flags, addr = sock.recvmsg(RECV_BUFFER, AUXDATA_SPACE)
            except BlockingIOError:
                return
            except OSError as exc:
                self.counters_["recv_errors"] += 1
                print(f"censord: mirror recv: {exc}", file=sys.stderr, flush=True)
                return
            if addr[2] == PACKET_OUTGOING:
                self.counters_["skipped_outgoing"] += 1
                continue
            self.counters_["captured"] += 1
            for level, kind, aux in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    data = reinsert_vlan(data, aux)
            self.on_frame(data)

    def on_frame(self, frame: bytes) -> None:
        """One Ethernet frame seen on the wire."""
        seen = self.clock()
        decision = self.censor.observe(frame, LINKTYPE_ETHERNET)
        if decision is None:
            return
        censor, plan = self.censor, decision.plan
        if plan is None:
            if censor.residual_expiry:
                self._residual_check(decision, frame)
            return
        injected = censor.inject(plan)
        if injected:
            self._latency(seen)
        if plan.residual is not None:
            censor.note_residual(residual_key(plan.residual), plan.residual.action, plan.residual.seconds, plan.rule_id)
        if plan.flow_action in ("drop", "throttle", "delay", "intercept"):
            self.counters_[f"unenforceable:{plan.flow_action}"] += 1
        if plan.drop_trigger:
            self.counters_["unenforceable:drop_trigger"] += 1
        censor.record_action(decision, injected, trigger_dropped=False, kernel={"mirror": True})

    def _residual_check(self, decision, frame: bytes) -> None:
        """A TCP packet of a connection caught by an active residual block: reset it (at most
        ``RESIDUAL_RESETS`` times per connection). The SYN's RST+ACK only helps while the client is still in
        SYN-SENT; the ones answering the SYN+ACK and the client's first segments carry the exact RCV.NXT,
        so they also win when the censor is slower than the handshake."""
        pkt, flow = decision.pkt, decision.step.flow
        if pkt.proto != TCP or pkt.tcp_flags & RST:
            return
        done = flow.state.get(_RESIDUAL_RESETS, 0)
        if done >= RESIDUAL_RESETS:
            return
        hit = self.censor.residual_match(pkt)
        if hit is None:
            return
        action, key, rule_id = hit
        self.counters_["residual_hits"] += 1
        flow.state[_RESIDUAL_RESETS] = done + 1
        if action != "reset":
            self.counters_["unenforceable:residual_drop"] += 1
            return
        seen = self.clock()
        plan, verdict = self.censor.residual_plan(flow, pkt, decision.step.direction, rule_id, ip_packet(frame))
        injected = self.censor.inject(plan)
        if injected:
            self._latency(seen)
        if plan.residual is not None and plan.residual.rearm:
            self.censor.note_residual(residual_key(plan.residual), plan.residual.action, plan.residual.seconds, rule_id)
        decision.plan = plan
        self.censor.record_action(
            decision,
            injected,
            trigger_dropped=False,
            verdict=verdict,
            kernel={"mirror": True, "residual_hit": key.value()},
        )

    def _latency(self, seen: float) -> None:
        """Capture to the last injected packet handed to the kernel (``Censor.last_sent``)."""
        if len(self.latencies) >= LATENCY_SAMPLES:
            self.latencies.pop(0)
        self.latencies.append(self.censor.last_sent - seen)


__all__ = ["MirrorBackend"]
