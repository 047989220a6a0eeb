"""What the agent reads of a worker: complete event lines from an offset, counters summed over workers."""

from __future__ import annotations

import os

from chokepoint.manager.agent.workers import Worker, pid_alive, summed_counters


def test_events_are_read_by_complete_lines_from_the_offset(tmp_path):
    worker = Worker(tmp_path, 0)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event_type":"flow","flow":{"bytes_toserver":10,"bytes_toclient":5}}\n{"a":1}\n{"b":')
    batch = worker.read_events(0, 100)
    assert len(batch.lines) == 2 and batch.flow_bytes == 15
    assert worker.read_events(batch.end, 100).lines == []  # the partial line waits for its newline
    with path.open("ab") as f:
        f.write(b"2}\n")
    assert worker.read_events(batch.end, 100).lines == [b'{"b":2}']
    path.write_bytes(b'{"c":3}\n')  # replaced by a shorter file: start again
    assert worker.read_events(batch.end, 100).lines == [b'{"c":3}']


def test_counters_sum_over_workers_and_liveness(tmp_path):
    stats = [
        {"data": {"packets": {"seen": 5, "queued": 3}, "verdicts": {"by_action": {"drop": 2}, "by_rule": {"r": 2}},
                  "backend": {"kernel_queue": {"queue_dropped": 1}}, "flows": {"active": 4}}},
        {"data": {"packets": {"seen": 7}, "verdicts": {"by_action": {"drop": 1, "reset": 1}}}},
    ]  # fmt: skip
    total = summed_counters(stats)
    assert total["packets_seen"] == 12 and total["verdicts_by_action"] == {"drop": 3, "reset": 1}
    assert total["queue_dropped"] == 1 and total["flows_active"] == 4
    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(2**22 + 12345)
    assert Worker(tmp_path / "none", 1).stats()["running"] is False
