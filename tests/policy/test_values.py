"""Values a rule may hold: the encapsulation labels of the ``encap`` field (policy/values.py), as the decoder
writes them, and their errors at file:line:column."""

import pytest

from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.policy import load_rules_text
from chokepoint.policy.errors import PolicyError
from chokepoint.policy.values import encap_label


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("vlan:100", "vlan:100"),
        ("QINQ:007", "qinq:7"),
        ("mpls:1048575", "mpls:1048575"),
        ("pppoe:0x1A2B", "pppoe:0x1a2b"),
        ("gre", "gre"),
        ("gre:4294967295", "gre:4294967295"),
        ("vxlan:5001", "vxlan:5001"),
        ("gtpu:0xDEADBEEF", "gtpu:0xdeadbeef"),
        ("6in4", "6in4"),
        ("ppp", "ppp"),
    ],
)
def test_labels_take_the_decoder_s_form(text, canonical):
    assert encap_label(text) == canonical


@pytest.mark.parametrize("text", ["vlan:4096", "vlan", "mpls:1048576", "pppoe:0x1", "vxlan:16777216", "ipip", "gtpu:1"])
def test_bad_labels(text):
    with pytest.raises(ValueError, match="bad encapsulation"):
        encap_label(text)


def test_a_bad_label_in_a_rule_is_reported_at_its_position():
    text = "rules:\n  - id: r1\n    action: drop\n    when:\n      all:\n        - encap: [vlan:100, vlan:9999]\n"
    with pytest.raises(PolicyError) as info:
        load_rules_text(text, source="customer.yaml")
    assert str(info.value).startswith("customer.yaml:6:") and "vid 9999 exceeds 4095" in str(info.value)


def test_every_label_the_decoder_writes_is_a_valid_rule_value():
    from tests.packet.test_decap import WRAPPERS, inner_packets

    decoder = Decoder()
    for linktype, wrap, _ in WRAPPERS.values():
        frame = wrap(inner_packets()[0])
        for label in decoder.decode(Frame(1.0, linktype, frame, len(frame), 1)).encap:
            assert encap_label(label) == label
