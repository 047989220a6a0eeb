"""``chokepoint lab up --fake-time / --clock-offset / --param / --dns-map`` as a user runs them: the censor's
clock and rule-param overrides go through ``state.json`` to the daemon, ``lab status`` shows them, and a bad one
fails ``lab up`` before anything exists.

The root test brings Myanmar's profile up twice with the real CLI: at a fake 02:30 Myanmar time the censor's
nightly-shutdown rule drops what the same lab, with its clock at 12:00, lets through.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from chokepoint.lab import state as st
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

from ._lab import down_keeping_foreign, lab_guard, run_cli  # noqa: F401 (fixture)

CURL = ["curl", "-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", "http://198.19.0.2/"]


#: A day of the nightly shutdowns (myanmar.yaml: 2021-02-15 to 2021-04-27), the profile's ``--as-of``.
SHUTDOWN_DAY = "2021-03-01"


def myanmar_time(hh_mm: str) -> str:
    """``SHUTDOWN_DAY`` in Myanmar at ``hh_mm``, ISO 8601 with its fixed offset."""
    return f"{SHUTDOWN_DAY}T{hh_mm}:00+06:30"


def events() -> list[dict]:
    path = st.STATE_DIR / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []


def test_fake_night_blocks_what_the_day_allows_and_status_shows_clock_and_params(lab_guard):
    night = myanmar_time("02:30")
    up = run_cli(
        "lab",
        "up",
        "--profile",
        "myanmar",
        "--as-of",
        SHUTDOWN_DAY,
        "--fake-time",
        night,
        "--param",
        "mm-nightly-shutdown.direction=c2s",
    )
    assert up.returncode == 0, up.stderr
    assert "censor clock: wall clock" in up.stdout
    assert "rule params: mm-nightly-shutdown.direction=c2s" in up.stdout
    saved = json.loads((st.STATE_DIR / st.STATE_FILE).read_text())
    expected = dt.datetime.fromisoformat(night).timestamp() - saved["created_at"]
    assert abs(saved["clock_offset_s"] - expected) < 30, (saved["clock_offset_s"], expected)
    assert saved["params"] == {"mm-nightly-shutdown.direction": "c2s"}
    stats = json.loads((st.STATE_DIR / st.STATS_FILE).read_text())
    assert stats["clock"]["local"][:15] == night[:15], stats["clock"]  # the daemon's own time: 02:3x there
    assert stats["clock"]["offset_s"] == saved["clock_offset_s"]
    assert stats["params"] == {"mm-nightly-shutdown.direction": "c2s"}

    blocked = system.run(CURL, netns=f"{PREFIX}client", check=False, timeout=15)
    assert blocked.returncode == 28, (blocked.returncode, blocked.stdout, blocked.stderr)  # curl: timed out
    actions = [e["chokepoint"] for e in events() if e.get("event_type") == "chokepoint"]
    assert actions and all(a["rule"] == "mm-nightly-shutdown" for a in actions), actions
    assert actions[0]["drop_direction"] == "c2s"  # the override reached the censor (the file: both)

    status = run_cli("lab", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert (
        "censor clock: wall clock" in status.stdout
        and "rule params: mm-nightly-shutdown.direction=c2s" in status.stdout
    )
    assert f"clock.local = {night[:15]}" in status.stdout
    as_json = json.loads(run_cli("lab", "status", "--json").stdout)
    assert as_json["clock_offset_s"] == saved["clock_offset_s"]
    assert as_json["params"] == {"mm-nightly-shutdown.direction": "c2s"}

    report = down_keeping_foreign()
    assert not report.errors, report.errors
    noon = dt.datetime.fromisoformat(myanmar_time("12:00")).timestamp()
    day = run_cli(
        "lab", "up", "--profile", "myanmar", "--as-of", SHUTDOWN_DAY, "--clock-offset", f"{noon - time.time():.0f}"
    )
    assert day.returncode == 0, day.stderr
    allowed = system.run(CURL, netns=f"{PREFIX}client", check=False, timeout=15)
    assert (allowed.returncode, allowed.stdout) == (0, b"200"), allowed.stderr
    assert not [e for e in events() if e.get("event_type") == "chokepoint"]
    stats = json.loads((st.STATE_DIR / st.STATS_FILE).read_text())
    assert stats["clock"]["local"][11:13] == "12" and stats["params"] == {}


def test_dns_map_from_the_cli_reaches_the_lab_resolver(lab_guard, tmp_path):
    dns_map = tmp_path / "map.json"
    dns_map.write_text(json.dumps({"names": {"mapped.test": ["198.19.0.17"]}}))
    up = run_cli("lab", "up", "--profile", "demo", "--dns-map", str(dns_map))
    assert up.returncode == 0, up.stderr
    answer = system.run(
        ["dig", "@198.19.0.53", "mapped.test", "+short", "+time=2", "+tries=1"],
        netns=f"{PREFIX}client",
        check=False,
        timeout=15,
    )
    assert answer.stdout.decode().split() == ["198.19.0.17"], answer


def _snapshot() -> dict[str, object]:
    state_file = st.STATE_DIR / st.STATE_FILE
    return {
        "namespaces": topo.lab_namespaces(),
        "state": state_file.read_bytes() if state_file.exists() else None,
        "state_dir": sorted(p.name for p in st.STATE_DIR.iterdir()) if st.STATE_DIR.exists() else None,
    }


def test_bad_clock_params_or_dns_map_fail_lab_up_before_anything_exists(tmp_path):
    cases = [
        (["--param", "mm-nightly-shutdown.no_such_param=1"], 1, "no_such_param"),
        (["--param", "no-such-rule.direction=c2s"], 1, "no-such-rule"),
        (["--param", "mm-nightly-shutdown.direction=sideways"], 1, "sideways"),
        (["--param", "direction=c2s"], 2, "RULE.PARAM=VALUE"),
        (["--fake-time", "2026-11-27T02:30:00"], 2, "no UTC offset"),
        (["--fake-time", "last night"], 2, "not an ISO 8601"),
        (["--fake-time", "2026-11-27T02:30:00Z", "--clock-offset", "5"], 2, "not both"),
        (["--clock-offset", "inf"], 2, "not a finite number"),
        (["--dns-map", str(tmp_path / "missing.json")], 2, "does not exist"),
    ]
    with st.session_lock(timeout=600):
        before = _snapshot()
        for extra, code, message in cases:
            result = run_cli("lab", "up", "--profile", "myanmar", *extra)
            assert result.returncode == code, (extra, result.returncode, result.stdout, result.stderr)
            assert message in " ".join(result.stderr.split()), (extra, result.stderr)
            if code == 1:
                assert "nothing was created" in result.stderr
            assert _snapshot() == before, extra
