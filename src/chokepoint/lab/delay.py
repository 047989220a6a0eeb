"""The far side's one-way delay, without netem: a user-space stage that holds packets and lets them go later.

This kernel has no netem (/work/shared/ENVIRONMENT.md). The delay stage runs in the namespace at the censor's
far end (``far1`` when there are server-side hops, else ``server``): iptables sends every packet that enters
from the censor's side (``mangle PREROUTING -i IFACE``) and every packet that leaves toward it (``mangle
POSTROUTING -o IFACE``) to an NFQUEUE; this process takes each one (metadata only, ``COPY_META``), notes when
it arrived and issues its ACCEPT verdict ``delay_ms`` later. libnetfilter_queue allows verdicts in any order
and at any time (a packet stays queued in the kernel until then), so a fixed delay keeps each direction's
order. Both directions are delayed, so a round trip across the far side takes ``2 * delay_ms`` more: the
distance between a censor at a country's border and a server abroad.

No ``--queue-bypass``: if this process dies, far-side traffic stops (loudly) instead of losing its delay.
``python -m chokepoint.lab.delay --queue-num N --delay-ms D`` (started by ``lab up --delay-ms``);
``bench/lab_delay.py`` measures how well it holds the delay at throughput.
"""

from __future__ import annotations

import argparse
import collections
import select
import signal
import sys
import time

from chokepoint.lab import system

#: The NFQUEUE the delay stage binds (the censor's own queues live in another namespace).
QUEUE_NUM = 7
#: Packets the kernel keeps queued for the stage: a bandwidth-delay product of ~1 Gbit/s x 100 ms.
QUEUE_MAXLEN = 65536
#: Bytes of netlink receive buffer (the kernel doubles it).
SOCK_LEN = 32 * 1024 * 1024


def rules(iface: str, queue_num: int = QUEUE_NUM) -> list[list[str]]:
    """iptables arguments that queue both directions through ``iface`` to the delay stage."""
    target = ["-j", "NFQUEUE", "--queue-num", str(queue_num)]
    return [
        ["-t", "mangle", "-A", "PREROUTING", "-i", iface, *target],
        ["-t", "mangle", "-A", "POSTROUTING", "-o", iface, *target],
    ]


def install(netns: str, iface: str, queue_num: int = QUEUE_NUM) -> None:
    """Queue IPv4 and IPv6 through ``iface`` in ``netns`` (call after the stage has bound its queue)."""
    for v6 in (False, True):
        for args in rules(iface, queue_num):
            system.iptables(args, netns, v6)


def serve(queue_num: int, delay_ms: float) -> int:
    """Hold each queued packet ``delay_ms`` and accept it; until SIGTERM/SIGINT."""
    from netfilterqueue import COPY_META, NetfilterQueue

    delay = delay_ms / 1000.0
    held: collections.deque = collections.deque()
    clock = time.monotonic

    def arrived(packet) -> None:
        now = clock()
        held.append((now + delay, packet))
        while held[0][0] <= now:  # release what is due between two packets of a burst, too
            held.popleft()[1].accept()

    queue = NetfilterQueue()
    queue.bind(queue_num, arrived, max_len=QUEUE_MAXLEN, mode=COPY_META, sock_len=SOCK_LEN)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    fd = queue.get_fd()
    print(f"delay stage: queue {queue_num}, {delay_ms:g} ms each way", flush=True)
    try:
        while not stop:
            now = clock()
            while held and held[0][0] <= now:
                held.popleft()[1].accept()
            timeout = max(0.0, held[0][0] - now) if held else 0.5
            try:
                ready, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            if ready:
                queue.run(block=False)
    finally:
        for _, packet in held:  # let the last ones through rather than leave them queued
            packet.accept()
        queue.unbind()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chokepoint.lab.delay", description=__doc__.splitlines()[0])
    parser.add_argument("--queue-num", type=int, default=QUEUE_NUM)
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args(argv)
    if not 0 < args.delay_ms <= 5000:
        parser.error(f"--delay-ms {args.delay_ms}: more than 0, at most 5000")
    return serve(args.queue_num, args.delay_ms)


if __name__ == "__main__":
    sys.exit(main())
