"""The TLS-in-TLS detector's parts: where the app phase starts (real OpenSSL record sequences), bursts from
segments, and the handshake-shaped 3-gram; whole captures of the real proxies are in tests/lab/test_trafficgen.py."""

import ssl

import pytest

from chokepoint.dissect import tls
from chokepoint.dissect.tlsintls import (
    CH_RANGE,
    FINISHED_RANGE,
    MAX_EVENTS,
    SERVER_FLIGHT_RANGE,
    TlsShape,
    client_app_start,
)
from tests.dissect._tls_hellos import python_session


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def test_the_app_phase_starts_after_the_client_s_finished(tmp_path, version):
    request = b"GET / HTTP/1.1\r\nHost: chokepoint.test\r\n\r\n"
    turns = python_session(str(tmp_path), version, request, b"HTTP/1.1 200 OK\r\n\r\n")
    client = b"".join(c for c, _ in turns)
    start = client_app_start(tls.tls_record_stats(client).records)
    assert start is not None and client[start] == 23 and start < len(client)
    assert len(client) - start == 5 + int.from_bytes(client[start + 3 : start + 5], "big")  # the request record
    assert client_app_start(tls.tls_record_stats(turns[0][0]).records) is None  # the ClientHello alone


def shape(*segments, start=500):
    """A TlsShape fed (direction, length) segments 1 ms apart, offsets counted per direction, the client's app
    phase starting at ``start`` (its first segment is the outer handshake)."""
    s = TlsShape(client_start=start)
    offsets = [0, 0]
    t = 0.0
    for direction, length in [(0, start), (1, 900), *segments]:
        s.add(t, direction, offsets[direction], length)
        offsets[direction] += length
        t += 0.001
    return s


def test_an_encapsulated_handshake_matches_in_the_first_window():
    s = shape((0, 619), (1, 158), (1, 900), (0, 102), (1, 596), (0, 123), (1, 236))
    found = s.evaluate()
    assert (
        s.done and found.window == 0 and (found.client_hello, found.server_flight, found.finished) == (619, 1058, 102)
    )


def test_a_proxy_request_header_sent_apart_moves_the_match_to_a_later_window():
    s = shape((0, 102), (1, 79), (0, 539), (1, 900), (0, 102), (1, 596))
    assert s.evaluate().window == 1


def test_http_requests_and_responses_do_not_match():
    assert shape((0, 101), (1, 1056), (0, 24), (1, 24)).evaluate(final=True) is None  # curl: a short request
    assert shape((0, 489), (1, 12515), (0, 31), (1, 5061)).evaluate(final=True) is None  # h2: SETTINGS ACK after
    assert shape((0, 436), (1, 315), (0, 179)).evaluate(final=True) is None  # a short answer is no server flight


def test_a_clienthello_in_more_than_three_segments_is_not_one():
    segments = [(0, 600)] * 4 + [(1, 1000), (0, 100), (1, 500)]
    assert shape(*segments).evaluate(final=True) is None


def test_retransmissions_are_not_counted():
    s = TlsShape(client_start=0)
    s.add(0.0, 0, 0, 619)
    s.add(0.001, 0, 0, 619)  # the same bytes again
    s.add(0.002, 1, 0, 900)
    s.add(0.003, 0, 619, 102)
    s.add(0.004, 1, 900, 500)
    assert [b.size for b in s.bursts()] == [619, 900, 102, 500]


def test_bytes_of_the_outer_handshake_in_the_first_app_segment_are_left_out():
    s = TlsShape(client_start=80)
    s.add(0.0, 0, 0, 80 + 619)  # Finished and the first app data in one segment
    s.add(0.001, 1, 0, 900)
    s.add(0.002, 0, 699, 102)
    s.add(0.003, 1, 900, 300)
    assert s.evaluate().client_hello == 619


def test_the_detector_stops_after_its_windows_or_its_segments():
    s = shape(*[(i % 2, 30) for i in range(20)])
    s.evaluate()
    assert s.done and s.result is None
    many = TlsShape(client_start=0)
    for i in range(MAX_EVENTS + 5):
        many.add(i * 0.001, 0, i * 10, 10)
    many.evaluate()
    assert many.done and len(many.events) == MAX_EVENTS


def test_the_ranges_hold_the_handshakes_they_are_named_after():
    assert CH_RANGE[0] <= 517 + 22 <= CH_RANGE[1] and CH_RANGE[0] <= 1850 + 22 <= CH_RANGE[1]
    assert SERVER_FLIGHT_RANGE[0] <= 900 and FINISHED_RANGE[0] <= 6 + 58 <= FINISHED_RANGE[1]
