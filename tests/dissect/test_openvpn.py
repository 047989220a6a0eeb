"""OpenVPN: every packet of nDPI's OpenVPN captures, nDPI's flow labels, wrappings, TCP framing, negatives."""

import datetime
import random
import select
import shutil
import socket
import struct
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.dissect.errors import DissectError, NeedMoreData, NotThisProtocol
from chokepoint.dissect.openvpn import (
    PLAUSIBLE_TIME,
    Opcode,
    OpenVpnPacket,
    Wrapping,
    detect,
    parse_tcp,
    parse_udp,
    split_tcp,
)
from tests._corpus import TCP, UDP, all_captures, mutations, ndpi_labels, read_flows


def _detect_flow(flow):
    if flow.proto == TCP:
        return detect([flow.stream(True)], [flow.stream(False)], transport="tcp")
    return detect(flow.payloads(True), flow.payloads(False), transport="udp")


def _packets(flow, from_a):
    return split_tcp(flow.stream(from_a))[0] if flow.proto == TCP else flow.payloads(from_a)


@pytest.fixture(scope="module")
def ovpn_flows():
    return read_flows("openvpn.pcap")


def _first_client_reset(flow):
    for from_a in (True, False):
        for body in _packets(flow, from_a):
            packet = parse_udp(body)
            if packet.is_client_reset:
                return packet
    return None


def _seeds():
    try:
        flows = read_flows("openvpn.pcap")
    except pytest.skip.Exception:
        return [b"\x38" + bytes(range(1, 9)) + bytes(5)]
    return [body for f in flows for d in (True, False) for body in _packets(f, d)[:6]]


def test_every_flow_ndpi_labels_openvpn_is_detected(ovpn_flows):
    labels = ndpi_labels("openvpn.pcap")
    assert len(ovpn_flows) == len(labels) == 10
    for flow in ovpn_flows:
        assert labels[flow.key].startswith("OpenVPN")
        reason = _detect_flow(flow)
        assert reason, (flow.a, flow.b)
        # Swapping the directions (captures behind NAT may start with the server) changes nothing.
        if flow.proto == UDP:
            assert detect(flow.payloads(False), flow.payloads(True))


def test_every_packet_of_the_capture_parses(ovpn_flows):
    opcodes = set()
    count = 0
    for flow in ovpn_flows:
        for from_a in (True, False):
            packets = _packets(flow, from_a)
            for body in packets:
                packet = parse_udp(body)
                assert packet.length == len(body)
                opcodes.add(packet.opcode)
                count += 1
            if flow.proto == TCP:
                assert split_tcp(flow.stream(from_a))[1] == b""
    assert count > 650
    assert {
        Opcode.P_CONTROL_HARD_RESET_CLIENT_V2,
        Opcode.P_CONTROL_HARD_RESET_SERVER_V2,
        Opcode.P_CONTROL_V1,
        Opcode.P_ACK_V1,
        Opcode.P_DATA_V1,
        Opcode.P_DATA_V2,
    } <= opcodes


def test_wrapping_and_hmac_size_are_recognised(ovpn_flows):
    by_port = {}
    for flow in ovpn_flows:
        reset = _first_client_reset(flow)
        by_port.setdefault((flow.proto, frozenset((flow.a[1], flow.b[1]))), reset)
    guesses = {(r.wrapping, r.hmac_len_guess) for r in by_port.values() if r is not None}
    assert guesses == {(Wrapping.NONE, 0), (Wrapping.TLS_AUTH, 20), (Wrapping.TLS_AUTH, 64), (Wrapping.TLS_CRYPT, 32)}
    tls_auth_sha1 = by_port[(UDP, frozenset({41507, 13680}))]
    assert (tls_auth_sha1.wrapping, tls_auth_sha1.hmac_len_guess) == (Wrapping.TLS_AUTH, 20)
    assert tls_auth_sha1.replay_packet_id == 1 and tls_auth_sha1.net_time in PLAUSIBLE_TIME
    assert tls_auth_sha1.acks == () and tls_auth_sha1.message_packet_id == 0
    sha512 = by_port[(UDP, frozenset({41133, 443}))]
    assert sha512.hmac_len_guess == 64 and sha512.length == 1 + 8 + 64 + 8 + 1 + 4
    tls_crypt = by_port[(TCP, frozenset({36138, 443}))]
    assert tls_crypt.wrapping is Wrapping.TLS_CRYPT and tls_crypt.acks is None
    plain = by_port[(UDP, frozenset({51146, 1194}))]
    assert (plain.wrapping, plain.length, plain.message_packet_id) == (Wrapping.NONE, 14, 0)


def test_server_reset_acknowledges_the_client_session(ovpn_flows):
    flow = next(f for f in ovpn_flows if f.proto == UDP and 51146 in (f.a[1], f.b[1]))
    client = parse_udp(flow.payloads(True)[0])
    server = parse_udp(flow.payloads(False)[0])
    assert server.opcode is Opcode.P_CONTROL_HARD_RESET_SERVER_V2
    assert server.remote_session_id == client.session_id and server.acks == (0,)
    reason = detect(flow.payloads(True)[:1], flow.payloads(False)[:1])
    assert reason and "acknowledges client session " + client.session_id.hex() in reason
    # Two packets of different sessions: no acknowledgment, no detection.
    other = next(f for f in ovpn_flows if f.proto == UDP and 41507 in (f.a[1], f.b[1]))
    assert detect(flow.payloads(True)[:1], other.payloads(False)[:1]) is None


def test_repeated_client_reset_and_one_direction_captures(ovpn_flows):
    repeated = next(f for f in ovpn_flows if f.a[1] == f.b[1] == 13680)
    resets = repeated.payloads(True)[:2]
    assert all(parse_udp(p).is_client_reset for p in resets)
    assert parse_udp(resets[0]).session_id == parse_udp(resets[1]).session_id
    assert "repeated P_CONTROL_HARD_RESET_CLIENT_V2" in detect(resets, [])
    assert detect(resets[:1], []) is None
    one_way = [f for f in ovpn_flows if not f.payloads(False)]
    assert len(one_way) == 2  # the same session seen from the client side and from the server side
    for flow in one_way:
        assert "later control packets share session" in detect(flow.payloads(True), [])
        assert detect(flow.payloads(True)[:2], []) is None  # a reset and one follower is not enough


def test_tls_crypt_over_tcp_is_detected_from_session_consistency(ovpn_flows):
    flow = next(f for f in ovpn_flows if f.proto == TCP and 36138 in (f.a[1], f.b[1]))
    reason = detect([flow.stream(True)], [flow.stream(False)], transport="tcp")
    assert reason and "(tls-crypt)" in reason
    segments = [p for p in flow.payloads(True)]
    assert detect(segments, [], transport="tcp") == detect([b"".join(segments)], [], transport="tcp")


def test_nohmac_tcp_capture():
    flows = read_flows("openvpn_nohmac_tcp.pcapng")
    labels = ndpi_labels("openvpn_nohmac_tcp.pcapng")
    (flow,) = flows
    assert labels[flow.key] == "OpenVPN"
    reason = _detect_flow(flow)
    assert reason.startswith("P_CONTROL_HARD_RESET_SERVER_V2 acknowledges client session")
    assert "(none, hmac 0)" in reason
    first = parse_tcp(flow.stream(True))
    assert first.opcode is Opcode.P_CONTROL_HARD_RESET_CLIENT_V2 and first.wrapping is Wrapping.NONE


def test_tcp_framing_prefixes_need_more_data(ovpn_flows):
    flow = next(f for f in ovpn_flows if f.proto == TCP and 60140 in (f.a[1], f.b[1]))
    stream = flow.stream(True)
    (length,) = struct.unpack_from(">H", stream)
    whole = parse_tcp(stream[: 2 + length])
    assert whole == parse_udp(stream[2 : 2 + length])
    assert whole.wrapping is Wrapping.TLS_AUTH and whole.hmac_len_guess == 20
    for cut in range(0, 2 + length):
        with pytest.raises(NeedMoreData):
            parse_tcp(stream[:cut])
    with pytest.raises(NotThisProtocol):
        parse_tcp(b"\x00\x00" + stream[2:])
    with pytest.raises(NotThisProtocol):
        parse_tcp(stream[:2] + b"\xf8" + stream[3:])  # opcode 31
    packets, rest = split_tcp(stream + stream[:5])
    assert rest == stream[:5] and b"".join(struct.pack(">H", len(p)) + p for p in packets) == stream


def test_field_checks_reject_corrupted_real_packets(ovpn_flows):
    flow = next(f for f in ovpn_flows if f.proto == UDP and 51146 in (f.a[1], f.b[1]))
    reset, ack = flow.payloads(True)[0], flow.payloads(True)[1]
    assert parse_udp(ack).opcode is Opcode.P_ACK_V1
    with pytest.raises(NotThisProtocol):
        parse_udp(b"\x39" + reset[1:])  # hard reset with key id 1
    with pytest.raises(NotThisProtocol):
        parse_udp(reset[:1] + bytes(8) + reset[9:])  # zero session id
    with pytest.raises(NotThisProtocol):
        parse_udp(reset[:9] + b"\x01" + reset[10:])  # a client reset acks nothing
    with pytest.raises(NotThisProtocol):
        parse_udp(reset[:10] + b"\x00\x00\x00\x07")  # resets are message 0
    with pytest.raises(NotThisProtocol):
        parse_udp(ack + b"\x00")  # P_ACK_V1 ends right after the acks
    with pytest.raises(NotThisProtocol):
        parse_udp(ack[:9] + b"\x09" + ack[10:])  # more than 8 acks
    with pytest.raises(NotThisProtocol):
        parse_udp(reset[:-1])


def test_other_captures_are_not_openvpn():
    checked = 0
    for path in all_captures():
        if path.name.startswith("openvpn"):
            continue
        labels = ndpi_labels(path.name)
        for flow in read_flows(path):
            if flow.proto not in (TCP, UDP):
                continue
            assert not labels.get(flow.key, "").startswith("OpenVPN")
            assert _detect_flow(flow) is None, (path.name, flow.a, flow.b)
            checked += 1
    assert checked > 150


def test_random_flows_are_not_openvpn():
    rng = random.Random(1194)
    for _ in range(2000):
        c2s = [bytes([rng.choice((0x38, 0x40, 0x20, 0x28))]) + rng.randbytes(rng.randrange(13, 120)) for _ in range(4)]
        s2c = [bytes([rng.choice((0x40, 0x28, 0x20))]) + rng.randbytes(rng.randrange(13, 120)) for _ in range(4)]
        assert detect(c2s, s2c) is None


@settings(max_examples=400, deadline=None)
@given(mutations(_seeds()))
def test_mutated_real_packets_raise_only_typed_errors(data):
    try:
        packet = parse_udp(data)
    except DissectError:
        return
    assert isinstance(packet, OpenVpnPacket) and packet.length == len(data)
    assert packet.opcode == data[0] >> 3


@settings(max_examples=300, deadline=None)
@given(
    st.lists(mutations(_seeds()), max_size=4),
    st.lists(mutations(_seeds()), max_size=4),
    st.sampled_from(["udp", "tcp"]),
)
def test_detect_on_mutated_flows_returns_reason_or_none(c2s, s2c, transport):
    if transport == "tcp":
        c2s = [struct.pack(">H", len(p)) + p for p in c2s]
        s2c = [struct.pack(">H", len(p)) + p for p in s2c]
    reason = detect(c2s, s2c, transport=transport)
    assert reason is None or isinstance(reason, str)
    for chunk in c2s:
        try:
            parse_tcp(chunk) if transport == "tcp" else parse_udp(chunk)
        except DissectError:
            pass


def test_detect_accepts_already_parsed_packets(ovpn_flows):
    for flow in ovpn_flows:
        transport = "tcp" if flow.proto == TCP else "udp"
        parsed_c2s = [parse_udp(b) for b in _packets(flow, True)[:8]]
        parsed_s2c = [parse_udp(b) for b in _packets(flow, False)[:8]]
        assert detect(parsed_c2s, parsed_s2c, transport=transport) == _detect_flow(flow)


# ---------------------------------------------------------------------------------------------------------
# Live OpenVPN 2.6 (the openvpn binary, Debian package "openvpn"): wrappings the captures lack (tls-auth with
# SHA256, tls-crypt-v2 with P_CONTROL_HARD_RESET_CLIENT_V3), over UDP and TCP, recorded by a relay on
# 127.0.0.1. Both peers run with --dev null (no tun device, no root needed).


def _pem_pki(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chokepoint test CA")])

    def issue(cn, key, usage, is_ca=False):
        builder = (
            x509.CertificateBuilder()
            .subject_name(ca_name if is_ca else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=is_ca,
                    crl_sign=is_ca,
                    content_commitment=False,
                    key_encipherment=not is_ca,
                    data_encipherment=False,
                    key_agreement=not is_ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    def write(name, data):
        (directory / name).write_bytes(data)
        return str(directory / name)

    def key_pem(key):
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    files = {"ca": write("ca.crt", issue("", ca_key, None, True).public_bytes(serialization.Encoding.PEM))}
    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        files[role + "_cert"] = write(role + ".crt", issue(role, key, usage).public_bytes(serialization.Encoding.PEM))
        files[role + "_key"] = write(role + ".key", key_pem(key))
    genkey = ["openvpn", "--genkey"]
    files["ta"] = str(directory / "ta.key")
    subprocess.run(genkey + ["secret", files["ta"]], check=True, capture_output=True, timeout=30)
    files["v2_server"] = str(directory / "v2-server.key")
    files["v2_client"] = str(directory / "v2-client.key")
    subprocess.run(genkey + ["tls-crypt-v2-server", files["v2_server"]], check=True, capture_output=True, timeout=30)
    subprocess.run(
        ["openvpn", "--tls-crypt-v2", files["v2_server"], "--genkey", "tls-crypt-v2-client", files["v2_client"]],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return files


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openvpn") is None:
        pytest.skip("openvpn binary not installed (Debian package 'openvpn'): live OpenVPN 2.6 tests skipped")
    return _pem_pki(tmp_path_factory.mktemp("openvpn-pki"))


def _free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay_udp(listener, server_port, deadline):
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.bind(("127.0.0.1", 0))
    c2s, s2c, client, last = [], [], None, time.monotonic()
    try:
        while time.monotonic() < deadline and not (len(c2s) + len(s2c) >= 8 and time.monotonic() - last > 1):
            for sock in select.select([listener, upstream], [], [], 0.2)[0]:
                data, address = sock.recvfrom(65535)
                last = time.monotonic()
                if sock is listener:
                    client = address
                    c2s.append(data)
                    upstream.sendto(data, ("127.0.0.1", server_port))
                elif client is not None:
                    s2c.append(data)
                    listener.sendto(data, client)
    finally:
        upstream.close()
    return c2s, s2c


def _relay_tcp(listener, server_port, deadline):
    listener.listen(1)
    listener.settimeout(max(0.1, deadline - time.monotonic()))
    client, _ = listener.accept()
    while True:
        try:
            upstream = socket.create_connection(("127.0.0.1", server_port), timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    c2s, s2c, last = [], [], time.monotonic()
    try:
        while time.monotonic() < deadline and not (len(c2s) + len(s2c) >= 8 and time.monotonic() - last > 1):
            for sock in select.select([client, upstream], [], [], 0.2)[0]:
                data = sock.recv(65535)
                if not data:
                    return c2s, s2c
                last = time.monotonic()
                (c2s if sock is client else s2c).append(data)
                (upstream if sock is client else client).sendall(data)
    finally:
        client.close()
        upstream.close()
    return c2s, s2c


def _handshake(pki, tmp_path, transport, wrapping):
    """Run an OpenVPN 2.6 server and client through a recording relay; returns (c2s, s2c, logs)."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    server_port = _free_port(kind)
    listener = socket.socket(socket.AF_INET, kind)
    listener.bind(("127.0.0.1", 0))
    relay_port = listener.getsockname()[1]
    extra = {
        "tls-auth-sha256": (
            ["--tls-auth", pki["ta"], "0", "--auth", "SHA256"],
            ["--tls-auth", pki["ta"], "1", "--auth", "SHA256"],
        ),
        "tls-crypt-v2": (["--tls-crypt-v2", pki["v2_server"]], ["--tls-crypt-v2", pki["v2_client"]]),
    }[wrapping]
    common = ["openvpn", "--dev", "null", "--verb", "3", "--ca", pki["ca"], "--ping-exit", "30"]
    proto = {"udp": ("udp4", "udp4"), "tcp": ("tcp-server", "tcp-client")}[transport]
    logs = [tmp_path / f"{transport}-{wrapping}-server.log", tmp_path / f"{transport}-{wrapping}-client.log"]
    server = subprocess.Popen(
        common
        + [
            "--proto",
            proto[0],
            "--tls-server",
            "--dh",
            "none",
            "--local",
            "127.0.0.1",
            "--lport",
            str(server_port),
            "--cert",
            pki["server_cert"],
            "--key",
            pki["server_key"],
            "--log",
            str(logs[0]),
        ]
        + extra[0]
    )
    time.sleep(0.3)
    client = subprocess.Popen(
        common
        + [
            "--proto",
            proto[1],
            "--tls-client",
            "--nobind",
            "--remote",
            "127.0.0.1",
            str(relay_port),
            "--cert",
            pki["client_cert"],
            "--key",
            pki["client_key"],
            "--remote-cert-tls",
            "server",
            "--log",
            str(logs[1]),
        ]
        + extra[1]
    )
    try:
        relay = _relay_udp if transport == "udp" else _relay_tcp
        c2s, s2c = relay(listener, server_port, time.monotonic() + 20)
    finally:
        listener.close()
        for process in (client, server):
            process.terminate()
        for process in (client, server):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    text = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs if log.exists())
    return c2s, s2c, text


@pytest.mark.parametrize(
    "transport, wrapping",
    [("udp", "tls-auth-sha256"), ("udp", "tls-crypt-v2"), ("tcp", "tls-crypt-v2"), ("tcp", "tls-auth-sha256")],
)
def test_live_openvpn_26_handshakes(pki, tmp_path, transport, wrapping):
    c2s, s2c, logs = _handshake(pki, tmp_path, transport, wrapping)
    assert len(c2s) >= 3 and len(s2c) >= 2, logs
    if transport == "tcp":
        c2s_packets, rest_c = split_tcp(b"".join(c2s))
        s2c_packets, rest_s = split_tcp(b"".join(s2c))
        assert rest_c == rest_s == b""
        assert parse_tcp(b"".join(c2s)) == parse_udp(c2s_packets[0])
    else:
        c2s_packets, s2c_packets = c2s, s2c
    client = [parse_udp(p) for p in c2s_packets]
    server = [parse_udp(p) for p in s2c_packets]
    first = client[0]
    controls = [p for p in client + server if p.is_control]
    if wrapping == "tls-auth-sha256":
        assert first.opcode is Opcode.P_CONTROL_HARD_RESET_CLIENT_V2
        assert {(p.wrapping, p.hmac_len_guess) for p in controls} == {(Wrapping.TLS_AUTH, 32)}
        reason = detect(c2s, s2c, transport=transport)
        assert reason.startswith("P_CONTROL_HARD_RESET_SERVER_V2 acknowledges client session " + first.session_id.hex())
    else:
        assert first.opcode is Opcode.P_CONTROL_HARD_RESET_CLIENT_V3
        assert first.wrapping is Wrapping.TLS_CRYPT_V2 and first.replay_packet_id >> 24 == 0x0F
        assert {p.wrapping for p in controls[1:]} == {Wrapping.TLS_CRYPT}
        assert server[0].opcode is Opcode.P_CONTROL_HARD_RESET_SERVER_V2
        reason = detect(c2s, s2c, transport=transport)
        assert reason.startswith("P_CONTROL_HARD_RESET_CLIENT_V3 and ") and "(tls-crypt-v2)" in reason
        # The wrapped client key (WKc) ends with its own length (>= 290); a shorter one is inconsistent.
        (wkc_length,) = struct.unpack(">H", c2s_packets[0][-2:])
        assert 290 <= wkc_length <= first.length - 54
        with pytest.raises(NotThisProtocol):
            parse_udp(c2s_packets[0][:-2] + struct.pack(">H", 289))
    assert all(p.net_time is None or p.net_time in PLAUSIBLE_TIME for p in controls)
    assert len({p.session_id for p in client if p.is_control}) == 1


def test_detect_accepts_split_tcp_bodies_as_packets(ovpn_flows):
    for flow in (f for f in ovpn_flows if f.proto == TCP):
        bodies_c2s, bodies_s2c = _packets(flow, True), _packets(flow, False)
        assert detect(bodies_c2s, bodies_s2c, transport="udp") == _detect_flow(flow)
        assert split_tcp(b"\x00\x00" + flow.stream(True))[1][:2] == b"\x00\x00"
