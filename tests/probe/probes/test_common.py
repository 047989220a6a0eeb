"""Targets, addresses, tags and the probe context."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.probe.probes.common import (
    ProbeContext,
    ProbeError,
    endpoint_tags,
    parse_host_port,
    parse_target,
    tls_client_context,
)


@pytest.mark.parametrize(
    "text, url, scheme, host, port, path",
    [
        ("https://Example.COM/a?b=1", "https://example.com/a?b=1", "https", "example.com", 443, "/a?b=1"),
        ("http://example.com", "http://example.com/", "http", "example.com", 80, "/"),
        ("example.com", "https://example.com/", "https", "example.com", 443, "/"),
        ("example.com/x", "https://example.com/x", "https", "example.com", 443, "/x"),
        ("http://site.test:8080/p", "http://site.test:8080/p", "http", "site.test", 8080, "/p"),
        ("https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443/", "https", "2001:db8::1", 8443, "/"),
        ("http://198.19.0.10/", "http://198.19.0.10/", "http", "198.19.0.10", 80, "/"),
        ("https://example.com:443/", "https://example.com/", "https", "example.com", 443, "/"),
        ("http://яндекс.рф/", "http://xn--d1acpjx3f.xn--p1ai/", "http", "xn--d1acpjx3f.xn--p1ai", 80, "/"),
        ("Яндекс.РФ", "https://xn--d1acpjx3f.xn--p1ai/", "https", "xn--d1acpjx3f.xn--p1ai", 443, "/"),
    ],
)
def test_parse_target(text, url, scheme, host, port, path):
    target = parse_target(text)
    assert (target.url, target.scheme, target.host, target.port, target.path) == (url, scheme, host, port, path)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ftp://example.com/",
        "http://",
        "http://exa mple.com/",
        "http://a..b/",
        "http://example.com:0/",
        "http://example.com:99999/",
        "mailto:x@example.com",
    ],
)
def test_bad_targets_are_probe_errors(text):
    with pytest.raises(ProbeError):
        parse_target(text)


def test_redirect_resolution():
    base = parse_target("http://site.test:8080/dir/page?q=1")
    assert base.with_url("/other").url == "http://site.test:8080/other"
    assert base.with_url("next").url == "http://site.test:8080/dir/next"
    assert base.with_url("https://elsewhere.test/").url == "https://elsewhere.test/"
    assert base.with_url("//cdn.test/x").url == "http://cdn.test/x"
    assert base.authority_for("control.test") == "control.test:8080"


def test_host_port():
    assert parse_host_port("198.18.9.1", 53) == ("198.18.9.1", 53)
    assert parse_host_port("127.0.0.1:5353", 53) == ("127.0.0.1", 5353)
    assert parse_host_port("[2001:db8::53]:5300", 53) == ("2001:db8::53", 5300)
    assert parse_host_port("2001:db8::53", 53) == ("2001:db8::53", 53)
    for bad in ("resolver.example:53", "1.2.3.4:x", "1.2.3.4:70000", "[::1]x"):
        with pytest.raises(ProbeError):
            parse_host_port(bad, 53)


def test_tags_follow_ooni():
    assert endpoint_tags(0, classic=True, fetch_body=True) == (
        "classic",
        "tcptls_experiment",
        "depth=0",
        "fetch_body=true",
    )
    assert endpoint_tags(2, classic=False, fetch_body=False) == ("depth=2", "fetch_body=false")


def test_context_ids_and_validation(tmp_path):
    ctx = ProbeContext(timeout=1)
    assert [ctx.transaction_id() for _ in range(3)] == [1, 2, 3]
    assert ctx.clock.now() >= 0
    with pytest.raises(ProbeError):
        ProbeContext(timeout=0)
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("nonsense")
    with pytest.raises(ProbeError, match="CA file"):
        tls_client_context(str(bad))


_URLISH = st.builds(
    lambda scheme, host, tail: scheme + host + tail,
    st.sampled_from(["", "http://", "https://", "HTTP://", "ftp://", "//"]),
    st.one_of(st.text(max_size=30), st.from_regex(r"[a-z0-9.\-]{1,20}", fullmatch=True)),
    st.one_of(st.just(""), st.text(max_size=20), st.from_regex(r":[0-9]{0,6}/[ -~]{0,10}", fullmatch=True)),
)


@settings(max_examples=400, deadline=None)
@given(_URLISH)
def test_parse_target_only_raises_probe_error(text):
    try:
        target = parse_target(text)
    except ProbeError:
        return
    assert target.scheme in ("http", "https") and target.host and 0 < target.port < 65536
    assert target.host.isascii() and target.url.isascii() is target.path.isascii()
    assert parse_target(target.url) == target
