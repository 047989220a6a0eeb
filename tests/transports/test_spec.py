"""Transport descriptions: every bundled one loads; mistakes are reported at file:line:column."""

from __future__ import annotations

import pytest

from chokepoint import transports
from chokepoint.policy.errors import PolicyError
from chokepoint.transports.spec import SPEC_DIR, parse_spec

ISSUE_NAMES = (
    "shadowsocks-aead shadowsocks-stream obfs4 tor trojan vmess-tcp vmess-ws-tls vless-tls wireguard openvpn-udp "
    "openvpn-tcp openvpn-tls-crypt ikev2 stunnel ssh-socks http-connect socks5"
).split()

MINIMAL = """\
name: mine
title: my transport
proto: tcp
server:
  run:
    - {name: srv, argv: [my-server, --listen, "$server_ip:$port"]}
fetch: {via: socks5h, proxy: "$server_ip:$port"}
"""


def test_every_name_the_issue_lists_is_bundled_and_loads():
    assert set(ISSUE_NAMES) <= set(transports.BUNDLED)
    for spec in transports.bundled():
        assert spec.name in transports.BUNDLED and spec.title and spec.proto in ("tcp", "udp")
        assert (SPEC_DIR / f"{spec.name}.yaml").is_file()


def test_every_server_listens_on_443_unless_it_says_why():
    for spec in transports.bundled():
        assert spec.port == 443 or spec.port_note, spec.name


def test_unavailable_transports_say_why():
    snowflake = transports.get("snowflake")
    assert "broker" in snowflake.unavailable
    assert all(not s.unavailable for s in transports.bundled() if s.name != "snowflake")


def test_render_fills_placeholders_and_keeps_json_braces():
    spec = parse_spec(MINIMAL, "mine.yaml")
    assert spec.render('{"a": $port}', {"port": "443"}) == '{"a": 443}'
    with pytest.raises(KeyError, match=r"\$server_ip"):
        spec.render("$server_ip", {})


@pytest.mark.parametrize(
    "text, where, what",
    [
        (MINIMAL.replace("proto: tcp", "proto: sctp"), "3:8", "sctp"),
        (MINIMAL.replace("title: my transport\n", ""), "1:1", "title"),
        (MINIMAL.replace('"$server_ip:$port"]', '"$server_ip:$ 1"]'), "6:", "starts no $name"),
        (MINIMAL + "client:\n  ready: {log: up, process: nobody}\n", "9:", "no daemon named 'nobody'"),
        (MINIMAL + "materials: [magic]\n", "8:13", "magic"),
    ],
)
def test_mistakes_are_reported_where_they_are(text, where, what):
    with pytest.raises(PolicyError) as info:
        parse_spec(text, "mine.yaml")
    message = str(info.value)
    assert message.startswith(f"mine.yaml:{where}"), message
    assert what in message


def test_get_loads_a_file_and_refuses_unknown_names(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(MINIMAL)
    assert transports.get(str(path)).name == "mine"
    with pytest.raises(KeyError, match="no transport"):
        transports.get("teleport")
