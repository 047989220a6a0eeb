"""EveSpool: records past the bound go to disk in sorted runs and come back merged in sort order."""

from __future__ import annotations

import pickle
import random

import pytest

from chokepoint.output import spool as spool_module
from chokepoint.output.spool import EveSpool


def records(n: int, seed: int = 1) -> list[tuple[str, int, str]]:
    rng = random.Random(seed)
    out = [(f"2024-01-01T00:00:{rng.randrange(60):02d}", rng.randrange(1 << 50), f'{{"n":{i}}}') for i in range(n)]
    rng.shuffle(out)
    return out


def test_below_the_bound_it_is_the_list_it_holds():
    items = records(10)
    spool = EveSpool(items, spill_at=100)
    assert list(spool) == items and len(spool) == 10 and not spool.runs
    spool[0] = ("t", 1, "x")
    assert spool[0] == ("t", 1, "x")


def test_spilled_runs_merge_back_in_sort_order():
    items = records(1000)
    spool = EveSpool(items, spill_at=64)
    assert len(spool.runs) == 1000 // 64 and len(spool) == 1000
    assert list(spool) == sorted(items)
    assert list(spool) == sorted(items)  # read again
    with pytest.raises(IndexError, match="spilled"):
        spool[0]
    spool.close()
    assert len(spool) == 0


def test_many_runs_are_merged_into_one(monkeypatch):
    monkeypatch.setattr(spool_module, "MAX_RUNS", 8)
    items = records(3000, seed=2)
    spool = EveSpool(items, spill_at=50)
    assert len(spool.runs) <= 9 and len(spool) == 3000
    assert list(spool) == sorted(items)


def test_a_pickled_spool_carries_its_records():
    spool = EveSpool(records(300), spill_at=50)
    copy = pickle.loads(pickle.dumps(spool))
    assert copy == spool and list(copy) == sorted(records(300))
