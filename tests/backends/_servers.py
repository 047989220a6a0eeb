"""Tiny real servers for the backend tests, run inside the test's server namespace (dual-stack, "::").

``python tests/backends/_servers.py`` serves until SIGTERM and prints ``ready`` once every socket is bound:

- HTTP on :80 and :8081 (any Host): ``origin host=<Host> path=<path>``; ``/slow?ms=N`` answers after N ms
  (a distant server, for the on-path race); ``/large?bytes=N`` streams N bytes.
- UDP echo on :9000 and :9999.
- DNS on :53/udp (dnspython): every A query -> 198.19.0.10, AAAA -> 2001:db8:0:2::10; names starting with
  ``slow`` are answered after 100 ms (a distant resolver).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import dns.message
import dns.rdatatype
import dns.rrset

REAL_A = "198.19.0.10"
REAL_AAAA = "2001:db8:0:2::10"
SLOW_DNS_S = 0.1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/slow":
            time.sleep(int(query.get("ms", ["100"])[0]) / 1000)
        if url.path == "/large":
            size = int(query.get("bytes", ["1000000"])[0])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            chunk = b"x" * 65536
            left = size
            while left > 0:
                self.wfile.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            return
        body = f"origin host={self.headers.get('Host', '')} path={url.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(body)


class DualStackServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    return sock


def echo(sock: socket.socket) -> None:
    while True:
        data, addr = sock.recvfrom(65535)
        sock.sendto(data, addr)


def dns_answer(query: bytes) -> tuple[bytes, float]:
    message = dns.message.from_wire(query)
    response = dns.message.make_response(message)
    question = message.question[0]
    name = question.name.to_text().lower()
    if question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", REAL_A))
    elif question.rdtype == dns.rdatatype.AAAA:
        response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "AAAA", REAL_AAAA))
    return response.to_wire(), SLOW_DNS_S if name.startswith("slow") else 0.0


def dns_server(sock: socket.socket) -> None:
    while True:
        data, addr = sock.recvfrom(65535)
        try:
            answer, delay = dns_answer(data)
        except Exception as exc:  # a test server: a bad query must never stop it
            print(f"dns: {exc!r}", file=sys.stderr, flush=True)
            continue
        if delay:
            threading.Timer(delay, sock.sendto, (answer, addr)).start()
        else:
            sock.sendto(answer, addr)


def main() -> None:
    servers = [DualStackServer(("::", port), Handler) for port in (80, 8081)]
    sockets = [udp_socket(9000), udp_socket(9999)]
    dns_sock = udp_socket(53)
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    for sock in sockets:
        threading.Thread(target=echo, args=(sock,), daemon=True).start()
    threading.Thread(target=dns_server, args=(dns_sock,), daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()


if __name__ == "__main__":
    main()
