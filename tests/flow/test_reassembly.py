from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.flow.reassembly import StreamReassembler


def test_in_order_and_anchor_at_syn():
    r = StreamReassembler(100, 8)
    r.set_isn(1000)
    assert r.add(1001, b"hello ") == 6
    assert r.add(1007, b"world") == 5
    assert r.bytes == b"hello world"


def test_out_of_order_is_held_until_the_gap_fills():
    r = StreamReassembler(100, 8)
    r.set_isn(0)
    assert r.add(7, b"world") == 0
    assert r.bytes == b""
    assert r.add(1, b"hello ") == 11
    assert r.bytes == b"hello world"


def test_retransmission_and_overlap_keep_the_first_bytes():
    r = StreamReassembler(100, 8)
    r.set_isn(0)
    r.add(1, b"abcdef")
    assert r.add(1, b"XXXXXX") == 0  # pure retransmission
    assert r.add(4, b"XXXghi") == 3  # overlap: first wins, only the new tail is added
    assert r.bytes == b"abcdefghi"
    assert r.overlaps >= 1


def test_bound_is_enforced_and_marks_full():
    r = StreamReassembler(10, 8)
    r.set_isn(0)
    r.add(1, b"0123456789abcdef")
    assert r.bytes == b"0123456789"
    assert r.full
    assert r.add(17, b"more") == 0


def test_sequence_wraparound():
    r = StreamReassembler(100, 8)
    r.set_isn(0xFFFFFFFD)  # data starts at 0xFFFFFFFE
    r.add(0xFFFFFFFE, b"ab")
    r.add(0x00000000, b"cd")
    assert r.bytes == b"abcd"


def test_pending_segments_are_bounded():
    r = StreamReassembler(1000, 2)
    r.set_isn(0)
    r.add(11, b"x")
    r.add(21, b"y")
    r.add(31, b"z")
    assert r.gaps_dropped == 1


def test_mid_stream_pickup_uses_first_segment():
    r = StreamReassembler(100, 8)
    r.add(5000, b"GET / HTTP/1.1\r\n")
    assert r.bytes.startswith(b"GET")


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=12),
    order=st.randoms(use_true_random=False),
    isn=st.integers(0, 2**32 - 1),
)
def test_any_segmentation_in_any_order_reassembles_the_stream(data, cuts, order, isn):
    points = sorted({0, len(data), *[c for c in cuts if c < len(data)]})
    segments = [(points[i], data[points[i] : points[i + 1]]) for i in range(len(points) - 1)]
    order.shuffle(segments)
    r = StreamReassembler(1000, 64)
    r.set_isn(isn)
    for offset, seg in segments:
        r.add((isn + 1 + offset) % 2**32, seg)
    assert r.bytes == data
