"""The scheduler with a real prober process on loopback (no namespace, no routes touched, nothing enforced)."""

from __future__ import annotations

import itertools
import random
import socket
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

from chokepoint.activeprobe.scheduler import ActiveProber
from chokepoint.policy import load_profile
from chokepoint.policy.verdict import Action, Verdict


def _server() -> int:
    """Closes every third connection at once (FIN), keeps the others open: a content-dependent server."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    counter = itertools.count()

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            if next(counter) % 3 == 0:
                conn.recv(4096)
                conn.close()
            else:
                threading.Timer(5, conn.close).start()

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def test_flagged_flow_probed_reactions_logged_and_server_confirmed():
    port = _server()
    events: list[dict] = []
    censor = SimpleNamespace(
        mode="mirror", clock=time.time, profile=SimpleNamespace(name="gfw"), _write_event=events.append
    )
    original = load_profile("gfw").active_probing
    sets = {name: replace(ps, timeout_s=1.0) for name, ps in original.probe_sets.items()}
    config = replace(original, probe_sets=sets)
    prober = ActiveProber(config, censor, netns=None, pool="127.0.64.0/20", time_scale=0.001, seed=2, max_delay_s=2)
    prober.start()
    try:
        for i in range(4):
            flow = SimpleNamespace(
                logs=[Verdict(Action.LOG, "gfw-ap-suspect")],
                state={},
                proto=6,
                first_payload=[random.Random(i).randbytes(300), None],
                server_text="127.0.0.1",
                server_port=port,
                client_text="198.18.0.2",
                client_port=40000 + i,
            )
            prober.on_flow(flow, 0.0)
            prober.on_flow(flow, 0.0)  # the same verdicts again: nothing new
        deadline = time.monotonic() + 20
        while prober.stats()["pending"] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        prober.close()
    stats = prober.stats()
    assert stats["counters"]["flows_flagged"] == 4
    probes = [e for e in events if e["event_type"] == "active_probe"]
    assert probes and all(46 <= p["active_probe"]["ttl_at_server"] <= 50 for p in probes)
    assert {p["active_probe"]["reaction"] for p in probes} >= {"fin", "timeout"}
    blocks = [e for e in events if e["event_type"] == "chokepoint"]
    assert len(blocks) == 1 and blocks[0]["chokepoint"]["rule"] == "gfw-ap-block-shadowsocks"
    assert blocks[0]["chokepoint"]["confirmed_by"] == "content-dependent-close"
    assert blocks[0]["chokepoint"]["notes"] == ["mirror mode cannot drop: the block is recorded, not enforced"]
    assert stats["confirmed"] == {f"127.0.0.1:{port}": "content-dependent-close"}
