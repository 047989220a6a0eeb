"""chokepoint.lab.clock: the offset that puts a profile's local clock at a given time (no root needed)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chokepoint.backends.options import fake_time_offset
from chokepoint.lab.clock import clock_offset_for, local_now, parse_local_time

MYANMAR = 6 * 3600 + 1800  # UTC+06:30


@pytest.mark.parametrize(("text", "parsed"), [("00:00", (0, 0)), ("02:30", (2, 30)), ("23:59", (23, 59))])
def test_parse_local_time(text, parsed):
    assert parse_local_time(text) == parsed


@pytest.mark.parametrize("bad", ["24:00", "2:30", "02:60", "0230", "", "noon", None, 230])
def test_parse_local_time_rejects(bad):
    with pytest.raises(ValueError, match="HH:MM"):
        parse_local_time(bad)


@given(
    now=st.floats(1.6e9, 2.0e9),
    offset=st.integers(-12 * 3600, 14 * 3600).map(lambda s: s - s % 900),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
)
def test_the_local_clock_reads_the_time_asked_and_the_offset_is_the_nearest(now, offset, hour, minute):
    text = f"{hour:02d}:{minute:02d}"
    shift = clock_offset_for(offset, text, now)
    local = local_now(offset, round(now + shift, 3))  # float rounding: a microsecond either way
    assert (local.hour, local.minute, local.second) == (hour, minute, 0)
    assert -12 * 3600 < shift <= 12 * 3600


def test_it_agrees_with_the_daemon_s_fake_time_parser():
    now = dt.datetime(2026, 11, 27, 11, 43, tzinfo=dt.UTC).timestamp()  # 18:13 in Myanmar
    expected = fake_time_offset("2026-11-28T02:30:00+06:30", now)  # the nearest 02:30 there
    assert clock_offset_for(MYANMAR, "02:30", now) == expected
