"""The daemon's injected clock (``--clock-offset`` / ``--fake-time``) and rule-param overrides (``--param``).

No root: the real nDPI capture ``http.pcapng`` is fed to ``Censor.observe`` with Myanmar's profile, whose
nightly-shutdown rule reads ``local_hour`` (the packet time the daemon stamps, in UTC+06:30).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from chokepoint.backends.censor import Censor
from chokepoint.backends.censord import main
from chokepoint.backends.kernel import ResidualKey
from chokepoint.backends.options import clock_offset, fake_time_offset, load_policy, param_override
from chokepoint.packet.pcap import open_capture
from chokepoint.policy import PolicyError, load_profile

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PCAPS = SHARED / "ndpi" / "pcap"
SHUTDOWN_ERA = "2021-03-01"  # myanmar.yaml: the nightly shutdowns ran 2021-02-15 to 2021-04-27
WALL = 1_790_000_000.0  # a fixed "wall clock" (2026-09-21T14:13:20Z), so nothing depends on today


def frames(name: str) -> list[bytes]:
    path = PCAPS / name
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path} (the nDPI captures beside the checkout)")
    with open_capture(path) as reader:
        return [f.data for f in reader]


def enforced(censor: Censor, data: list[bytes]) -> list[str]:
    return [d.plan.rule_id for d in (censor.observe(f, 1) for f in data) if d is not None and d.plan is not None]


# -- parsing ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2021-03-01T02:30:00+06:30", dt.datetime(2021, 2, 28, 20, 0, tzinfo=dt.UTC)),
        ("2021-02-28T20:00:00Z", dt.datetime(2021, 2, 28, 20, 0, tzinfo=dt.UTC)),
        ("2021-02-28T15:00:00-05:00", dt.datetime(2021, 2, 28, 20, 0, tzinfo=dt.UTC)),
        ("2026-07-01T12:00:00+00:00", dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)),  # no DST anywhere
        (" 2021-03-01T02:30:00.250+06:30 ", dt.datetime(2021, 2, 28, 20, 0, 0, 250000, tzinfo=dt.UTC)),
    ],
)
def test_fake_time_is_an_offset_from_the_wall_clock(text: str, instant: dt.datetime) -> None:
    assert fake_time_offset(text, WALL) == pytest.approx(instant.timestamp() - WALL, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2021-03-01T02:30:00", "no UTC offset"),  # the machine's zone and its DST would decide
        ("2026-11-27", "no UTC offset"),
        ("02:30", "not an ISO 8601"),
        ("2026-02-30T02:30:00+06:30", "not an ISO 8601"),  # no such day
        ("tomorrow at 2", "not an ISO 8601"),
        ("2021-03-01T02:30:00+25:00", "not an ISO 8601"),
    ],
)
def test_bad_fake_times_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        fake_time_offset(text, WALL)


def test_clock_offset_and_param_shapes() -> None:
    assert clock_offset("-3600") == -3600.0 and clock_offset("1.5e3") == 1500.0
    for bad in ("nan", "inf", "-inf", "ten", ""):
        with pytest.raises(ValueError):
            clock_offset(bad)
    assert param_override("tsg-unknown-high-volume.after_s=5") == ("tsg-unknown-high-volume.after_s", "5")
    assert param_override("big.flow.after_s = 3") == ("big.flow.after_s", "3")  # rule ids may hold dots
    assert param_override("r.answers=[192.0.2.1, 192.0.2.2]") == ("r.answers", "[192.0.2.1, 192.0.2.2]")
    for bad in ("after_s=5", "rule.after_s", ".after_s=5", "rule.=5", "=5"):
        with pytest.raises(ValueError, match="RULE.PARAM=VALUE"):
            param_override(bad)


def test_bad_clock_arguments_are_usage_errors(capsys, tmp_path) -> None:
    base = ["--mode", "inline", "--profile", "myanmar", "--state-dir", str(tmp_path)]
    for extra, message in (
        (["--fake-time", "2021-03-01T02:30:00"], "no UTC offset"),
        (["--clock-offset", "nan"], "not a finite number"),
        (["--clock-offset", "5", "--fake-time", "2021-03-01T02:30:00Z"], "not allowed with"),
        (["--param", "after_s=5"], "RULE.PARAM=VALUE"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(base + extra)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "censor-stats.json").exists()


def test_an_unknown_override_is_refused_at_start(capsys, tmp_path) -> None:
    code = main(
        [
            "--mode",
            "inline",
            "--profile",
            "myanmar",
            "--state-dir",
            str(tmp_path),
            "--param",
            "mm-nightly-shutdown.no_such_param=1",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "profile rejected" in err and "no_such_param" in err
    assert not (tmp_path / "censor-stats.json").exists()
    with pytest.raises(PolicyError, match="no-such-rule"):
        load_policy("myanmar", None, {"no-such-rule.direction": "c2s"})


# -- the clock in the engine ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fake", "blocked"),
    [
        ("2021-03-01T02:30:00+06:30", True),  # inside 01:00-09:00 Myanmar time
        ("2021-02-28T20:00:00Z", True),  # the same instant, written in UTC
        ("2021-03-01T08:59:59+06:30", True),
        ("2021-03-01T00:59:00+06:30", False),  # a minute before the shutdown
        ("2021-03-01T09:00:00+06:30", False),
        ("2021-03-01T12:00:00+06:30", False),
    ],
)
def test_fake_time_decides_myanmars_nightly_shutdown(fake: str, blocked: bool) -> None:
    data = frames("http.pcapng")
    censor = Censor(
        load_profile("myanmar", as_of=SHUTDOWN_ERA),
        mode="inline",
        clock=lambda: WALL,
        clock_offset_s=fake_time_offset(fake, WALL),
    )
    assert enforced(censor, data) == (["mm-nightly-shutdown"] if blocked else [])


def test_stats_and_events_carry_the_daemons_time(tmp_path) -> None:
    data = frames("http.pcapng")
    profile = load_policy("myanmar", None, {"mm-nightly-shutdown.direction": "c2s"}, as_of=SHUTDOWN_ERA)
    offset = fake_time_offset("2021-03-01T02:30:00+06:30", WALL)
    censor = Censor(
        profile,
        mode="inline",
        clock=lambda: WALL,
        clock_offset_s=offset,
        state_dir=tmp_path,
        params={"mm-nightly-shutdown.direction": "c2s"},
    )
    decisions = [d for d in (censor.observe(f, 1) for f in data) if d is not None and d.plan is not None]
    assert [d.plan.drop_direction for d in decisions] == ["c2s"]  # the override reached the plan
    record = censor.record_action(decisions[0], [], trigger_dropped=True)
    assert record["timestamp"].startswith("2021-02-28T20:00:00")  # EVE time is UTC
    censor.note_residual(ResidualKey("server", "", "198.19.0.10", 443), "drop", 30, "mm-nightly-shutdown")
    assert censor.residual_expiry and all(until == WALL + offset + 30 for until, _ in censor.residual_expiry.values())
    censor.close()
    stats = json.loads((tmp_path / "censor-stats.json").read_text())
    assert stats["clock"] == {
        "offset_s": offset,
        "now": WALL + offset,
        "utc": "2021-02-28T20:00:00+00:00",
        "local": "2021-03-01T02:30:00+06:30",
    }
    assert stats["params"] == {"mm-nightly-shutdown.direction": "c2s"}
    assert stats["started"] == stats["updated"] == WALL + offset
    plain = Censor(load_profile("myanmar"), mode="inline", clock=lambda: WALL).stats()
    assert plain["clock"]["offset_s"] == 0.0 and plain["clock"]["now"] == WALL and plain["params"] == {}
    assert Censor(load_profile("myanmar"), mode="inline").clock is time.time  # no offset: the wall clock
