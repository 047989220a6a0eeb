"""Test-only generators of real TLS hellos (Python ssl / OpenSSL, the openssl binary, aioquic) and an
independent offsets-and-struct walk of a ClientHello, shared by the TLS, fingerprint and Tor tests."""

from __future__ import annotations

import datetime
import shutil
import socket
import ssl
import struct
import subprocess
from functools import cache

import pytest

from chokepoint.dissect import tls
from chokepoint.dissect.errors import NeedMoreData

# --- real hellos generated at test time ------------------------------------------------------------------


def python_client_hello(
    server_hostname: str | None = "example.com", alpn=("h2", "http/1.1"), max_version: ssl.TLSVersion | None = None
) -> bytes:
    """The first flight of an OpenSSL client driven by Python's ssl (the ClientHello record(s))."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version is not None:
        ctx.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@cache
def _server_cert(tmp_dir: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chokepoint.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = f"{tmp_dir}/cert.pem", f"{tmp_dir}/key.pem"
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


def python_handshake(tmp_dir: str, max_version: ssl.TLSVersion, alpn=("h2", "http/1.1")) -> tuple[bytes, bytes]:
    """(client first flight, server first flight) of a real in-memory OpenSSL handshake."""
    cert_path, key_path = _server_cert(tmp_dir)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    server_ctx.maximum_version = max_version
    server_ctx.set_alpn_protocols(["h2"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.set_alpn_protocols(list(alpn))
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="chokepoint.test")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    client_flight = c_out.read()
    s_in.write(client_flight)
    with pytest.raises(ssl.SSLWantReadError):
        server.do_handshake()
    return client_flight, s_out.read()


def openssl_fragmented_hello(max_send_frag: int = 512) -> bytes:
    """A ClientHello that ``openssl s_client -max_send_frag`` splits over several records (loopback only)."""
    binary = shutil.which("openssl")
    if binary is None:
        pytest.skip("the openssl binary is not installed")
    alpn = ",".join(f"proto-{i:02d}-" + "x" * 30 for i in range(30))  # ~1.2 KB of ALPN: > 2 records
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        proc = subprocess.Popen(
            [
                binary,
                "s_client",
                "-connect",
                f"127.0.0.1:{port}",
                "-servername",
                "Frag.Example.ORG",
                "-max_send_frag",
                str(max_send_frag),
                "-alpn",
                alpn,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            srv.settimeout(10)
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while True:  # read until the ClientHello message is complete
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    try:
                        tls.parse_client_hello_records(data)
                        break
                    except NeedMoreData:
                        continue
        finally:
            proc.kill()
            proc.wait()
    return data


def aioquic_client_hello(server_name: str = "quic.example.net") -> bytes:
    """A bare ClientHello handshake message from aioquic's TLS 1.3 stack (as in QUIC CRYPTO frames)."""
    from aioquic import tls as aiotls
    from aioquic.buffer import Buffer

    ctx = aiotls.Context(is_client=True, alpn_protocols=["h3", "h3-29"], server_name=server_name)
    ctx.handshake_extensions = [(0x39, b"\x01\x04\x80\x00\x75\x30")]  # QUIC transport parameters
    buffers = {epoch: Buffer(capacity=8192) for epoch in aiotls.Epoch}
    ctx.handle_message(b"", buffers)
    return buffers[aiotls.Epoch.INITIAL].data


def split_into_records(records_stream: bytes, sizes: list[int]) -> bytes:
    """Re-frame the handshake bytes of a single-record hello into records of the given sizes (last: rest)."""
    version = records_stream[1:3]
    body = records_stream[5:]
    out, pos = bytearray(), 0
    for size in sizes + [len(body)]:
        chunk = body[pos : pos + size]
        if not chunk:
            break
        out += bytes([22]) + version + struct.pack("!H", len(chunk)) + chunk
        pos += len(chunk)
    return bytes(out)


# --- an independent, test-only walk of the ClientHello -----------------------------------------------


def walk_client_hello(msg: bytes) -> dict:
    """Offsets-and-struct walk of a ClientHello message, written separately from the dissector."""
    assert msg[0] == 1
    body_end = 4 + int.from_bytes(msg[1:4], "big")
    off = 4 + 2 + 32
    off += 1 + msg[off]
    (n,) = struct.unpack_from("!H", msg, off)
    ciphers = list(struct.unpack_from(f"!{n // 2}H", msg, off + 2))
    off += 2 + n
    off += 1 + msg[off]
    exts = []
    if off < body_end:
        (total,) = struct.unpack_from("!H", msg, off)
        off += 2
        stop = off + total
        while off < stop:
            etype, elen = struct.unpack_from("!HH", msg, off)
            exts.append((etype, msg[off + 4 : off + 4 + elen]))
            off += 4 + elen
    return {"version": struct.unpack_from("!H", msg, 4)[0], "ciphers": ciphers, "extensions": exts}


def python_session(tmp_dir: str, max_version: ssl.TLSVersion, request: bytes, response: bytes) -> list[list[bytes]]:
    """A whole in-memory OpenSSL session as TCP turns ``[client bytes, server bytes]``: the handshake, then
    ``request`` from the client (sent with its last handshake flight) and ``response`` from the server. Every
    byte is a real TLS record; ``build.tcp_conversation(..., *zip(*turns))`` frames them."""
    cert_path, key_path = _server_cert(tmp_dir)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    server_ctx.maximum_version = max_version
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="chokepoint.test")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    turns: list[list[bytes]] = []
    client_done = server_done = False
    while not server_done or not client_done:
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
                client.write(request)
            except ssl.SSLWantReadError:
                pass
        sent = c_out.read()
        if sent:
            turns.append([sent, b""])
            s_in.write(sent)
        try:
            server.do_handshake()
            server_done = True
        except ssl.SSLWantReadError:
            pass
        answer = s_out.read()
        if answer:
            turns[-1][1] += answer
            c_in.write(answer)
    assert server.read(len(request)) == request
    server.write(response)
    turns[-1][1] += s_out.read()
    return turns
