"""The origin application's routing, in-process (the servers' own tests drive it over the wire)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.lab.services import app


def respond(target: str, host: str = "h.test", method: str = "GET") -> app.Response:
    return asyncio.run(app.respond(app.Request(method, target, host, "HTTP/1.1")))


def body(response: app.Response) -> bytes:
    if response.stream is None:
        return response.body

    async def collect():
        return b"".join([chunk async for chunk in response.stream()])

    return asyncio.run(collect())


def test_page_is_deterministic_and_names_host_and_path():
    assert app.page_body("a.test", "/x") == app.page_body("a.test", "/x")
    assert app.page_body("a.test", "/x") != app.page_body("b.test", "/x")
    page = respond("/x?y=1", host="a.test")
    assert page.status == 200 and page.body == app.page_body("a.test", "/x?y=1") and page.length == len(page.body)
    assert ("X-Chokepoint-Lab", "origin") in page.headers


def test_absolute_form_and_asterisk():
    assert respond("http://other.test/p?q").body == app.page_body("h.test", "/p?q")
    assert respond("https://other.test").body == app.page_body("h.test", "/")
    assert respond("*", method="OPTIONS").status == 200
    for bad in ("p", "ftp://x/y", "http:///nohost", "mailto:a@b"):
        assert respond(bad).status == 400, bad


def test_large_length_and_content():
    for size in (0, 5, 64, 65536 + 3):
        response = respond(f"/large?bytes={size}")
        assert response.length == size and body(response) == app.large_body(size)
    assert respond("/large").length == app.LARGE_DEFAULT
    assert app.large_body(130)[:64] == app.LARGE_PATTERN and len(app.LARGE_PATTERN) == 64


def test_special_paths_only_match_exactly():
    assert respond("/larger?bytes=5").body == app.page_body("h.test", "/larger?bytes=5")
    assert respond("/status/").status == 400
    assert respond("/slow?delay=0").body == app.page_body("h.test", "/slow?delay=0")


@settings(max_examples=300, deadline=None)
@given(
    target=st.one_of(
        st.text(max_size=60), st.from_regex(r"/(large|slow|redirect|status/)[?/=a-z0-9%.-]{0,20}", fullmatch=True)
    ),
    host=st.text(max_size=30),
)
def test_respond_never_raises_and_always_frames_correctly(target, host):
    if urlsplit(target).path == "/slow":
        target = "/slow?delay=0"  # never actually sleep in a property test
    response = respond(target, host=host)
    assert 200 <= response.status <= 599
    if response.stream is None and response.has_body:
        assert response.length == len(response.body)
