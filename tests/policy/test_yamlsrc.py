"""YAML loading: a small, predictable set of implicit types, and the position of every node."""

from __future__ import annotations

import pytest
import yaml

from chokepoint.policy.errors import PolicyError
from chokepoint.policy.yamlsrc import load_yaml


def test_implicit_types_are_yaml_1_2_like() -> None:
    data, _ = load_yaml(
        "a: [NO, on, yes, 2023-03-07, '1:30', 1:30, 0x10, 010, 1.5, 1e3, true, False, ~, null, '', -3, +4, .5]\n",
        "f.yaml",
    )
    assert data["a"] == [
        "NO",
        "on",
        "yes",
        "2023-03-07",
        "1:30",
        "1:30",
        16,
        "010",
        1.5,
        "1e3",
        True,
        False,
        None,
        None,
        "",
        -3,
        4,
        0.5,
    ]


def test_everything_the_dumper_leaves_unquoted_reads_back_as_a_string() -> None:
    """Printed conditions round-trip because our implicit types are a subset of PyYAML's."""
    for text in ["NO", "010", "1e3", "1:30", "0o17", "2023-03-07", "yes", ".inf", "0b101", "1_000", "=", "<<"]:
        dumped = yaml.safe_dump([text])
        assert load_yaml(dumped, "f")[0] == [text], dumped


def test_positions_of_keys_and_values() -> None:
    _, marks = load_yaml("rules:\n  - id: x\n    when: {transport: tcp}\n", "p.yaml")
    assert (marks.key(("rules", 0, "id")).line, marks.key(("rules", 0, "id")).column) == (2, 5)
    assert (
        marks.value(("rules", 0, "when", "transport")).line,
        marks.value(("rules", 0, "when", "transport")).column,
    ) == (3, 23)
    assert marks.value(("rules", 0, "when", "nope", 3)) == marks.value(("rules", 0, "when"))


@pytest.mark.parametrize(
    "text,where,fragment",
    [
        ("a: 1\nb: [2\n", (3, 1), "YAML syntax error"),
        ("a: 1\na: 2\n", (2, 1), "duplicate key 'a'"),
        ("a: !!binary aGk=\n", (1, 4), "unsupported YAML tag"),
        ("a: !custom x\n", (1, 4), "unsupported YAML tag"),
        ("[1, 2]: x\n", (1, 1), "mapping keys must be strings"),
        ("3: x\n", (1, 1), "mapping keys must be strings"),
        ("a: 1\n---\nb: 2\n", (2, 1), "YAML syntax error"),
        ("# only a comment\n", (1, 1), "empty document"),
        ("a: *nothing\n", (1, 4), "YAML syntax error"),
        ("a: " + "[" * 120 + "]" * 120 + "\n", (1, 103), "nesting deeper than 100 levels"),
    ],
)
def test_errors_have_positions(text: str, where: tuple[int, int], fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_yaml(text, "f.yaml")
    assert (info.value.line, info.value.column) == where and fragment in info.value.message
