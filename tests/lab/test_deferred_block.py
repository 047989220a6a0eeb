"""TSG's delayed block of unknown high-volume flows in the real lab (root; inline mode): the bundled tsg
profile brought up with ``params`` shortening the delay to 3 s and the threshold to 200 kB. A real TCP client in
cpk-client streams random-looking bytes to the lab echo service (:9000): the echo flows for about 3 s, then
stalls (the censor drops the flow from the first packet at which it is 3 s old and has carried 200 kB, having
kept it in user space past the inspection budget), and events.jsonl attributes the drop to the rule."""

from __future__ import annotations

import pytest

from chokepoint import lab
from chokepoint.policy.profile import BUNDLED_DIR

from ._e2e import LabRun, all_left_behind, session
from ._lab import foreign

RULE = "tsg-unknown-high-volume"
SITE = "198.19.0.17"  # a server address of its own (docs/lab.md: 198.19.0.10-39 serve echo :9000)

#: Sends seeded random 1000-byte chunks at ~800 kbit/s for ``seconds`` (non-blocking: a dropped flow fills the
#: send buffer, it does not hang the client), reads the echo, and reports when echoed bytes last arrived.
STREAM = r"""
import json, random, select, socket, sys, time
address, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)
sock = socket.create_connection((address, port), timeout=3)
sock.setblocking(False)
start = time.monotonic()
sent = received = 0
last_echo = first_echo = None
next_send = start
while (now := time.monotonic()) - start < seconds:
    if now >= next_send:
        try:
            sent += sock.send(rng.randbytes(1000))
        except BlockingIOError:
            pass
        next_send += 0.01
    ready, _, _ = select.select([sock], [], [], max(0.0, min(0.01, next_send - time.monotonic())))
    if ready:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, ConnectionError):
            data = b""
        if data:
            received += len(data)
            last_echo = time.monotonic() - start
            first_echo = first_echo if first_echo is not None else last_echo
sock.close()
print(json.dumps({"sent": sent, "received": received, "first_echo_s": first_echo, "last_echo_s": last_echo}))
"""


def test_unknown_high_volume_flow_is_dropped_after_the_delay() -> None:
    with session():
        try:
            state = lab.up("tsg", "inline", seed=1, params={f"{RULE}.after_s": "3", f"{RULE}.min_bytes": "200000"})
            run = LabRun(state, BUNDLED_DIR / "tsg.yaml", "inline")
            result = run.python(STREAM, SITE, "9000", "7", timeout=30)
            actions = run.wait_actions(RULE, timeout=3)
        finally:
            report = lab.down(keep=foreign())
            assert not report.errors, report.errors
            left = all_left_behind()
            assert not any(left.values()), left
    # it flowed: ~300 kB echoed before the block (more than min_bytes both ways), and the echo began at once
    assert result["first_echo_s"] is not None and result["first_echo_s"] < 1.0, result
    assert result["received"] > 150_000, result
    # then it stalled around 3 s after the flow's first packet (the SYN), and for the remaining ~4 s nothing came
    assert 2.0 <= result["last_echo_s"] <= 4.5, result
    assert result["sent"] > result["received"], result
    assert actions, "no chokepoint event for the rule"
    event = actions[0]["chokepoint"]
    assert (event["action"], event["rule"], event["flow_action"]) == ("drop", RULE, "drop"), event
    fields = {e["field"] for e in event.get("evidence", [])}
    assert {"flow.age_s", "flow.bytes"} <= fields, event


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))
