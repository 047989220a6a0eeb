"""The lab's origin web application, shared by HTTP/1.1, HTTPS and HTTP/3.

Any Host, any path: 200 with a small deterministic HTML page naming the Host and the path, plus a
marker (``CHOKEPOINT-LAB-ORIGIN``) and a header (``X-Chokepoint-Lab: origin``) so a test can tell the
real page from a censor's block page. Special paths:

- ``/large?bytes=N``  N bytes of a fixed ASCII pattern, streamed (throttling tests);
- ``/slow?delay=S``   the normal page after S seconds (default 2, at most 120);
- ``/redirect?to=URL`` 302 to URL;
- ``/status/NNN``     that status code (200-599) with a page naming it.

Per name: a Host in ``captcha.test`` (the name or below it) gets, on any path, a 503 CDN challenge page
like Cloudflare's "Checking your browser" interstitial (a known false positive of blocking detection,
ooni/blocking-fingerprints scope ``fp``), for the validation's not-censorship scenarios.
"""

from __future__ import annotations

import asyncio
import html
import http
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

MARKER = "CHOKEPOINT-LAB-ORIGIN"
SERVER_NAME = "chokepoint-lab"
LARGE_PATTERN = b"chokepoint lab large body: 0123456789 abcdefghijklmnopqrstuvwxy\n"  # 64 bytes
LARGE_DEFAULT = 1 << 20
LARGE_MAX = 4 << 30
LARGE_CHUNK = 64 * 1024
SLOW_DEFAULT = 2.0
SLOW_MAX = 120.0
CAPTCHA_ZONE = "captcha.test"
_LARGE_BLOCK = LARGE_PATTERN * (LARGE_CHUNK // len(LARGE_PATTERN))

BodyStream = Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str  # as sent: origin-form ("/a?b"), absolute-form or "*"
    host: str  # Host header (HTTP/1.1) or :authority (HTTP/3), "" when absent
    protocol: str  # "HTTP/1.0", "HTTP/1.1" or "HTTP/3"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]  # without framing headers (Content-Length etc.)
    body: bytes = b""
    stream: BodyStream | None = None  # when set, produces exactly ``length`` bytes
    length: int = 0

    @property
    def reason(self) -> str:
        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return "Status"

    @property
    def has_body(self) -> bool:
        return self.status not in (204, 304) and not 100 <= self.status < 200


def page_body(host: str, path: str, *, status: int = 200) -> bytes:
    """The deterministic origin page for ``host`` and ``path`` (tests compare against it)."""
    status_line = "" if status == 200 else f'<p id="status">{status}</p>\n'
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>chokepoint lab origin</title></head>\n'
        "<body><h1>chokepoint lab origin server</h1>\n"
        f'<p id="host">{html.escape(host)}</p>\n'
        f'<p id="path">{html.escape(path)}</p>\n'
        f"{status_line}"
        f'<p id="marker">{MARKER}</p>\n'
        "</body></html>\n"
    ).encode()


def large_body(length: int) -> bytes:
    """The first ``length`` bytes of the /large pattern (tests compare against it)."""
    repeats = -(-length // len(LARGE_PATTERN))
    return (LARGE_PATTERN * repeats)[:length]


async def respond(request: Request) -> Response:
    """Route one request. Never raises for any method, target or host."""
    if request.target == "*":
        return _page(request, "*")
    parts = urlsplit(request.target)
    if request.target.startswith("/"):
        path = request.target
    elif parts.scheme in ("http", "https") and parts.netloc:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
    else:
        return error_response(400, "request target must be origin-form, absolute-form or *")
    if _in_zone(request.host, CAPTCHA_ZONE):
        return _captcha()
    route = urlsplit(path).path
    query = parse_qs(urlsplit(path).query, keep_blank_values=True)
    if route == "/large":
        return _large(query)
    if route == "/slow":
        delay = _number(query, "delay", SLOW_DEFAULT)
        if delay is None or not 0 <= delay <= SLOW_MAX:
            return error_response(400, f"delay must be a number of seconds between 0 and {SLOW_MAX:g}")
        await asyncio.sleep(delay)
        return _page(request, path)
    if route == "/redirect":
        return _redirect(query)
    if route.startswith("/status/"):
        code = route[len("/status/") :]
        if not (code.isascii() and code.isdigit() and len(code) == 3 and 200 <= int(code) <= 599):
            return error_response(400, "status must be a three-digit code between 200 and 599")
        return _page(request, path, status=int(code))
    return _page(request, path)


def _in_zone(host: str, zone: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]").rstrip(".").lower()
    return name == zone or name.endswith("." + zone)


def _captcha() -> Response:
    """A CDN browser-check interstitial (modelled on Cloudflare's: 503, "Just a moment...", a Ray ID)."""
    body = (
        b"<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\n<body>\n"
        b"<h1>Checking your browser before accessing the website.</h1>\n"
        b"<p>This process is automatic. Your browser will redirect to your requested content shortly.</p>\n"
        b"<p>Ray ID: 7f00000000000000 &middot; Performance &amp; security by a CDN</p>\n"
        b"</body></html>\n"
    )
    headers = (
        ("Content-Type", "text/html; charset=UTF-8"),
        ("Server", "cloudflare"),
        ("CF-RAY", "7f00000000000000-LAB"),
        ("Cache-Control", "private, max-age=0, no-store"),
    )
    return Response(503, headers, body=body, length=len(body))


def _headers(content_type: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (
        ("Content-Type", content_type),
        ("Server", SERVER_NAME),
        ("X-Chokepoint-Lab", "origin"),
        ("Cache-Control", "no-store"),
        *extra,
    )


def _page(request: Request, path: str, *, status: int = 200) -> Response:
    response = Response(status, _headers("text/html; charset=utf-8"))
    if not response.has_body:
        return response
    body = page_body(request.host, path, status=status)
    return Response(status, response.headers, body=body, length=len(body))


def error_response(status: int, message: str) -> Response:
    """A short plain-text error page (never the origin page, so tests cannot confuse them)."""
    body = f"{status} {http.HTTPStatus(status).phrase}: {message}\n".encode()
    return Response(status, _headers("text/plain; charset=utf-8"), body=body, length=len(body))


def _number(query: dict[str, list[str]], key: str, default: float) -> float | None:
    values = query.get(key)
    if not values:
        return default
    text = values[0]
    if not text.isascii() or text.lower() in ("nan", "inf", "-inf", "+inf", "infinity"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _large(query: dict[str, list[str]]) -> Response:
    text = query.get("bytes", [str(LARGE_DEFAULT)])[0]
    if not (text.isascii() and text.isdigit() and int(text) <= LARGE_MAX):
        return error_response(400, f"bytes must be an integer between 0 and {LARGE_MAX}")
    length = int(text)

    async def chunks() -> AsyncIterator[bytes]:
        remaining = length
        while remaining:
            block = _LARGE_BLOCK if remaining >= len(_LARGE_BLOCK) else _LARGE_BLOCK[:remaining]
            remaining -= len(block)
            yield block

    return Response(200, _headers("application/octet-stream"), stream=chunks, length=length)


def _redirect(query: dict[str, list[str]]) -> Response:
    target = query.get("to", [""])[0]
    if not target or not all(0x21 <= ord(ch) <= 0x7E for ch in target):
        return error_response(400, "to must be a non-empty URL of printable ASCII without spaces")
    body = f'<a href="{html.escape(target)}">moved</a>\n'.encode()
    return Response(302, (*_headers("text/html; charset=utf-8"), ("Location", target)), body=body, length=len(body))
