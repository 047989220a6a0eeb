"""The blockpage finder (:mod:`chokepoint.probe.detect.blockpage`)."""

from __future__ import annotations

import pytest

from chokepoint.enforce.personality import parse_personality, preset
from chokepoint.policy.verdict import Action
from tests.probe._shared import fingerprint_db
from tests.probe.detect._censored import GET, OK, SERVER_TTL, Censored, _only, _same


@pytest.mark.parametrize("mode", ["inline", "mirror"])
@pytest.mark.parametrize("name", ["linux", "packetlogic"])
def test_blockpage_is_found_and_named(tmp_path, name, mode):
    conn = Censored(preset(name), Action.BLOCKPAGE, request=GET, response=OK, mode=mode, port=80)
    finding = _only(conn.detect(tmp_path), "blockpage")
    assert {p.index for p in finding.packets} == conn.injected
    assert set(finding.candidates[0].personalities) == _same(name, lambda p: p.blockpage)
    assert finding.candidates[0].consistent
    status = preset(name).blockpage.status
    assert finding.packets[0].to_json()["status"] == status
    if mode == "mirror":  # the real 200 raced the blockpage to the same sequence number
        assert any("different bytes at the same sequence number" in e for e in finding.evidence)


def test_packetlogic_redirect_carries_its_constants_and_fin(tmp_path):
    conn = Censored(preset("packetlogic"), Action.BLOCKPAGE, request=GET, mode="inline", port=80)
    finding = _only(conn.detect(tmp_path), "blockpage")
    page = finding.packets[0]
    assert (page.flags, page.ip_id, page.window) == ("FPA", 13330, 32120)
    assert page.to_json()["location"] == preset("packetlogic").blockpage.location
    checks = {c.field: c for c in finding.candidates[0].checks}
    assert checks["close"].observed == "fin" and checks["location"].ok


@pytest.mark.shared_data
def test_blockpage_matching_a_real_fingerprint_is_named(tmp_path):
    db = fingerprint_db()
    row = next(fp for fp in db.http if fp.scope == "prod" and fp.location == "body" and fp.pattern_type == "contains")
    body = f"<html><body>{row.pattern}</body></html>".encode()
    censor = parse_personality(
        {"based_on": "linux", "blockpage": {"body": body.decode(), "ttl": SERVER_TTL, "reset_server": False}}
    )
    conn = Censored(censor, Action.BLOCKPAGE, request=GET, port=80)
    finding = _only(conn.detect(tmp_path, fingerprints=db), "blockpage")
    assert "fingerprint" in finding.packets[0].signals
    assert finding.packets[0].to_json()["fingerprint"] == row.name
    assert not conn.detect(tmp_path).findings  # same TTL as the server, no fingerprints: nothing to go on
