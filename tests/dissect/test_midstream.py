"""Mid-connection evidence: TLS record chains and HTTP responses without the client's opening message, on real
OpenSSL sessions (``ssl.MemoryBIO``) cut where a late capture would begin."""

import random
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.dissect.midstream import (
    MAX_RESYNC,
    find_http_response,
    find_record_chain,
    next_header_offset,
    plausible_header,
)
from tests.dissect._tls_hellos import python_session

REQUEST = b"GET /page HTTP/1.1\r\nHost: chokepoint.test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n" + bytes(range(256)) * 156 + b"0123456789" * 4


@pytest.fixture(scope="module", params=[ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2], ids=["tls13", "tls12"])
def session(request, tmp_path_factory) -> list[list[bytes]]:
    return python_session(str(tmp_path_factory.mktemp("tls")), request.param, REQUEST, RESPONSE)


def test_application_data_from_the_first_byte_chains(session):
    client, server = session[-1]
    chain = find_record_chain(server)
    assert chain is not None and chain.offset == 0 and chain.pending == 0 and 23 in chain.content_types
    assert find_record_chain(client) is not None


@pytest.mark.parametrize("cut", [1, 7, 100, 2000, 9000])
def test_a_capture_that_begins_inside_a_record_resynchronises(session, cut):
    server = session[-1][1]  # a 40 kB response: three or more records of up to 16 kB
    chain = find_record_chain(server[cut:])
    assert chain is not None and chain.headers >= 2
    assert 0 < chain.offset <= MAX_RESYNC and server[cut + chain.offset] == 23


def test_one_record_that_does_not_end_where_the_bytes_end_is_not_enough(session):
    server = session[-1][1]
    first_length = int.from_bytes(server[3:5], "big")
    assert find_record_chain(server[: 5 + first_length - 1]) is None  # one header, record cut short
    assert find_record_chain(server[: 5 + first_length]) is not None  # one whole record, ending exactly
    assert find_record_chain(server[1 : 5 + first_length + 3]) is None  # a later start with a single header


def test_random_bytes_do_not_chain():
    rng = random.Random(20240814)
    hits = sum(find_record_chain(rng.randbytes(rng.randint(5, 16384))) is not None for _ in range(2000))
    assert hits == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4000))
def test_never_raises_and_a_chain_is_consistent(data):
    chain = find_record_chain(data)
    if chain is not None:
        assert chain.headers >= 1 and chain.offset < len(data)
        assert data[chain.offset] in (20, 21, 22, 23) and data[chain.offset + 1] == 3
    find_http_response(data)


def test_an_http_response_at_the_start_of_the_server_bytes():
    response = find_http_response(RESPONSE)
    assert response is not None and response.status == 200


def test_an_http_response_after_the_end_of_a_body_picked_up_mid_way():
    second = b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n"
    response = find_http_response(RESPONSE[9000:] + second)
    assert response is not None and response.status == 304


def test_no_http_response_in_a_body_or_an_incomplete_head():
    assert find_http_response(RESPONSE[100:]) is None
    assert find_http_response(b"HTTP/1.1 200 OK\r\nContent-") is None
    assert find_http_response(b"xxHTTP/1.1 999 nope\r\n\r\n") is None


def test_a_single_header_of_a_long_record_names_where_the_next_one_starts(session):
    server = session[-1][1]
    first = 5 + int.from_bytes(server[3:5], "big")
    assert next_header_offset(server[100 : first - 50]) is None  # no whole header in these bytes
    cut = server[:16384]  # a reassembly cap that ends inside the first record
    if first > len(cut):
        assert next_header_offset(cut) == first and plausible_header(server[first : first + 5])
    late = server[10:16384]
    expected = next_header_offset(late)
    assert expected is None or plausible_header(server[10 + expected : 10 + expected + 5])
