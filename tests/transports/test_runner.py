"""The runner's pieces that need no lab: curl command lines, the expected body, refusals before starting."""

from __future__ import annotations

from pathlib import Path

import pytest

from chokepoint import transports
from chokepoint.transports.runner import Placement, TransportError, TransportRun, expected_body, missing_programs

PLACE = Placement("x-client", "x-vps", "198.19.64.10", "198.18.0.2", "198.19.0.10", lab="x")


def _run(name: str, tmp_path: Path) -> TransportRun:
    run = TransportRun(transports.get(name), PLACE, tmp_path)
    run.context = run._context()
    return run


def test_expected_body_is_the_origin_pattern():
    body = expected_body(130)
    assert len(body) == 130 and body.startswith(b"chokepoint lab large body: ") and body[64:70] == body[:6]


@pytest.mark.parametrize(
    "name, option",
    [("shadowsocks-aead", "--socks5-hostname"), ("http-connect", "-x"), ("wireguard", None), ("ikev2", "--interface")],
)
def test_curl_goes_the_way_the_description_says(name, option, tmp_path):
    argv = _run(name, tmp_path).curl_argv("http://198.19.0.10/large?bytes=1", tmp_path / "o", 5)
    assert argv[0] == "curl" and argv[-1] == "http://198.19.0.10/large?bytes=1"
    if option is None:
        assert "--socks5-hostname" not in argv and "-x" not in argv
    else:
        assert option in argv
    if name == "http-connect":
        assert "-p" in argv and "http://198.19.64.10:443" in argv
    if name == "ikev2":
        assert argv[argv.index("--interface") + 1] == "198.18.240.2"


def test_interface_names_carry_the_lab_name(tmp_path):
    ctx = _run("wireguard", tmp_path).context
    assert ctx["server_if"] == "xwgs" and ctx["client_if"] == "xwgc"


def test_an_unavailable_or_missing_transport_is_refused_before_anything_starts(tmp_path, monkeypatch):
    with pytest.raises(TransportError) as info:
        TransportRun(transports.get("snowflake"), PLACE, tmp_path).start()
    assert info.value.kind == "missing" and "broker" in info.value.message
    monkeypatch.setattr("chokepoint.transports.runner.shutil.which", lambda _: None)
    spec = transports.get("trojan")
    assert missing_programs(spec) == ["trojan"]
    with pytest.raises(TransportError, match="Debian: trojan"):
        TransportRun(spec, PLACE, tmp_path).start()
